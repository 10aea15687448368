"""An early look at testbed v2's regime: ``python -m reference_model.regime_v2 --weights OUT/dit_small.pt --cases 8``.

On held-out world v2 clips (test identities, held-out driving and hidden seeds), the v2 DiT
animates each clip's first frame with the clip's own motion (self-reenactment) under the
baseline sampler (30 Euler steps, emotion CFG at ``--guidance``), and is compared with itself:
- the seed floor: the baseline under another noise seed, PSNR against the baseline, on full
  frames and on frames low-passed to a quarter of their size (issue 27's bars: <= 28 dB and
  <= 34 dB);
- Euler at 10 of 30 steps against the truth beside the baseline against the truth, and the
  ratio of each one's high-frequency energy to the truth's (lost detail shows as a ratio below
  the baseline's);
- MagCache's magnitude ratio averaged over the last fifth of the steps (issue 27's bar: < 0.97);
- per frame, the seed floor and the baseline against the truth: a model that samples the hidden
  scene's spread parts from itself under another seed as fast as the truth parts from it.
Measured with the baseline sampler only; nothing here is tuned toward a sampler. The full
regime measurement of issue 27 (24+ clips, FVD, LPIPS, bootstrap intervals) is still to come.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from flashbench.sampling import Guidance
from reference_model.testbed_v2 import WEIGHTS_V2, render_clips_v2


def psnr_db(a: Tensor, b: Tensor) -> float:
    """Mean over clips of the PSNR (dB) of videos ``[B, 3, T, H, W]`` in [0, 1]."""
    mse = (a - b).square().flatten(1).mean(1).clamp_min(1e-10)
    return float((-10 * mse.log10()).mean())


def psnr_db_by_frame(a: Tensor, b: Tensor) -> list[float]:
    """``psnr_db`` of each frame index of videos ``[B, 3, T, H, W]``: how fast two videos part."""
    return [psnr_db(a[:, :, t : t + 1], b[:, :, t : t + 1]) for t in range(a.shape[2])]


def quarter(video: Tensor) -> Tensor:
    """Frames low-passed to a quarter of their size (4x4 box average)."""
    b, c, t, h, w = video.shape
    small = F.avg_pool2d(video.transpose(1, 2).reshape(b * t, c, h, w), 4)
    return small.view(b, t, c, h // 4, w // 4).transpose(1, 2)


def high_frequency_energy(video: Tensor) -> Tensor:
    """Per-clip energy of what a 4x4 box blur removes, ``[B]``."""
    b, c, t, h, w = video.shape
    frames = video.transpose(1, 2).reshape(b * t, c, h, w)
    blurred = F.interpolate(F.avg_pool2d(frames, 4), scale_factor=4, mode="nearest")
    return (frames - blurred).square().reshape(b, -1).mean(1)


def main(argv: list[str] | None = None) -> None:
    from flashbench.planning.regime import velocity_profile
    from flashbench.schedule import flow_match_sigmas
    from reference_model.autoencoder import load_autoencoder
    from reference_model.dit import make_cond
    from reference_model.pipeline import (
        animate,
        encode_video,
        extract_video,
        load_reference_model,
    )

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--world-weights", type=Path, default=WEIGHTS_V2)
    parser.add_argument("--cases", type=int, default=8)
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--guidance", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--grid", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from reference_model.expression import load_expression_extractor

    autoencoder = load_autoencoder(args.world_weights)
    manifest = json.loads((args.world_weights / "weights.json").read_text())
    extractor = load_expression_extractor(
        args.world_weights if "expression.pt" in manifest else None
    )
    model = load_reference_model(args.weights, check_sha256=False)
    guidance = Guidance(args.guidance) if args.guidance > 0 else None
    clips = render_clips_v2(
        args.cases, args.frames, seed=args.seed + 777, split="test", references=1, held_out=True
    )
    truth = clips["videos"].float() / 255
    with torch.no_grad():

        def run(steps: int, seed: int) -> Tensor:
            return animate(
                model,
                truth[:, :, 0],
                truth,
                autoencoder,
                extractor,
                steps=steps,
                seed=seed,
                guidance=guidance,
            )

        baseline, reseeded, euler10 = run(30, args.seed), run(30, args.seed + 1), run(10, args.seed)
        reference = model.normalize_latent(encode_video(autoencoder, truth[:, :, :1]))[:, :, 0]
        cond = make_cond(reference, extract_video(extractor, truth), model.config.frames_per_latent)
        noise = torch.randn(
            (
                args.cases,
                model.config.latent_channels,
                args.frames,
                model.config.latent_size,
                model.config.latent_size,
            ),
            generator=torch.Generator().manual_seed(args.seed),
        )
        profile = velocity_profile(model, noise, flow_match_sigmas(30), cond, guidance)
    ratios = torch.tensor(profile.magnitude_ratio, dtype=torch.float64)
    last_fifth = ratios[-max(1, len(ratios) // 5) :]
    hf_truth = high_frequency_energy(truth)
    report = {
        "cases": args.cases,
        "frames": args.frames,
        "guidance": args.guidance,
        "seed_floor_psnr_db": round(psnr_db(reseeded, baseline), 2),
        "seed_floor_psnr_db_quarter_size": round(psnr_db(quarter(reseeded), quarter(baseline)), 2),
        "baseline_vs_truth_psnr_db": round(psnr_db(baseline, truth), 2),
        "reseeded_vs_truth_psnr_db": round(psnr_db(reseeded, truth), 2),
        "euler10_vs_truth_psnr_db": round(psnr_db(euler10, truth), 2),
        "euler10_vs_baseline_psnr_db": round(psnr_db(euler10, baseline), 2),
        "high_frequency_ratio_baseline": round(
            float((high_frequency_energy(baseline) / hf_truth).mean()), 4
        ),
        "high_frequency_ratio_euler10": round(
            float((high_frequency_energy(euler10) / hf_truth).mean()), 4
        ),
        "magnitude_ratio_last_fifth": round(float(last_fifth.mean()), 4),
        "seed_floor_psnr_db_by_frame": [round(v, 2) for v in psnr_db_by_frame(reseeded, baseline)],
        "baseline_vs_truth_psnr_db_by_frame": [
            round(v, 2) for v in psnr_db_by_frame(baseline, truth)
        ],
        "magnitude_ratio_by_step": [round(float(r), 4) for r in ratios],
        "relative_change_by_step": [round(float(r), 4) for r in profile.relative_change],
    }
    text = json.dumps(report, indent=1)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
    if args.grid is not None:
        import torchvision

        tiles = []
        for i in range(min(3, args.cases)):
            for video in (truth, baseline, reseeded, euler10):
                idx = torch.linspace(0, args.frames - 1, 8).round().long()
                tiles.extend(video[i, :, idx].transpose(0, 1))
        torchvision.utils.save_image(torch.stack(tiles), args.grid, nrow=8, padding=1)


if __name__ == "__main__":
    main()
