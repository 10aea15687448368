"""Self-reenactment check of the portrait DiT against the issue's trivial answers, with a PNG grid.

``python -m reference_model.evaluate_dit --cases 16 --frames 16 --grid dit_grid.png``

Trivial answers: (a) the reference frame repeated; (b) the ground truth of another identity
driven by the same motion. Metrics: PSNR against the ground truth, expression error (mean
absolute difference of the extractor's features, generated vs ground truth; overall and per
part) and identity
similarity to the reference (cosine of the identity encoder's embeddings), as a fraction of the
ground truth's own.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from flashbench.guidance import parse_rule
from flashbench.sampling import Guidance
from metrics.expression import track_correlation
from reference_model.dit import PortraitDiT
from reference_model.lightning import driving_motion, with_random_face
from reference_model.pipeline import (
    animate,
    decode_video,
    encode_video,
    extract_video,
    load_reference_model,
)
from reference_model.world import EXPRESSION_NAMES


def psnr(a: Tensor, b: Tensor) -> float:
    """Mean over clips of the PSNR (dB) of frames in [0, 1]."""
    mse = (a - b).square().flatten(1).mean(dim=1).clamp_min(1e-10)
    return float((-10 * mse.log10()).mean())


def part_correlation(features: Tensor, truth: Tensor, part: slice) -> float:
    """Each clip's temporal correlation with the truth's features of one part, averaged over clips."""
    per_clip = [
        track_correlation(f[:, part], t[:, part]) for f, t in zip(features, truth, strict=True)
    ]
    return float(torch.stack(per_clip).nanmean())


def saturation(video: Tensor) -> float:
    """Mean colour saturation (max - min over RGB): CFG's over-saturation shows as a ratio above 1."""
    return float((video.amax(dim=1) - video.amin(dim=1)).mean())


def identity_similarity(encoder, video: Tensor, reference: Tensor) -> float:
    """Mean cosine similarity of every frame's identity embedding to the reference's."""
    b, c, t, h, w = video.shape
    frames = encoder(video.transpose(1, 2).reshape(b * t, c, h, w)).reshape(b, t, -1)
    ref = encoder(reference).reshape(b, 1, -1)
    return float(F.cosine_similarity(frames, ref, dim=-1).mean())


def write_grid(rows: dict[str, Tensor], path: Path, clips: int = 3, frames: int = 8) -> None:
    """A PNG: for each of the first ``clips`` clips (fewer if fewer were sampled), one row per
    entry of ``rows``, ``frames`` frames wide."""
    import torchvision

    tiles = []
    for i in range(min(clips, rows["truth"].shape[0])):
        for video in rows.values():
            t = video.shape[2]
            idx = torch.linspace(0, t - 1, min(frames, t)).round().long()
            tiles.extend(video[i, :, idx].transpose(0, 1))
    torchvision.utils.save_image(
        torch.stack(tiles), path, nrow=min(frames, rows["truth"].shape[2]), padding=1
    )


def guidance_of(scale: float, args: argparse.Namespace) -> Guidance | None:
    """Emotion guidance at ``scale`` (0: none) by ``--guidance-rule``, in ``--guidance-interval`` if given, keeping ``--guidance-keep``."""
    interval = tuple(args.guidance_interval) if args.guidance_interval else None
    rule = parse_rule(args.guidance_rule)
    keep = tuple(args.guidance_keep)
    return Guidance(scale, interval=interval, rule=rule, keep=keep) if scale > 0 else None


def print_regime(model, truth, baseline, autoencoder, extractor, scale, args) -> None:
    """How hard acceleration is at this guidance: the seed floor, the fewer-step penalty and the velocity profile."""
    from flashbench.planning.regime import velocity_profile
    from flashbench.schedule import flow_match_sigmas
    from reference_model.dit import make_cond

    def run(**kwargs) -> Tensor:
        options = {"steps": args.steps, "seed": args.seed, "guidance": guidance_of(scale, args)}
        options |= kwargs
        return animate(model, truth[:, :, 0], truth, autoencoder, extractor, **options)

    expression = extract_video(extractor, baseline)
    print(
        f"\nregime at cfg {scale:g} (against the {args.steps}-step baseline of the same guidance):"
    )
    print("| answer | PSNR vs baseline (dB) | expression change vs baseline |\n|---|---|---|")
    rows = {"same setting, another noise seed (the seed floor)": run(seed=args.seed + 1)}
    rows |= {f"Euler, {n} steps": run(steps=n) for n in (6, 9, 15)}
    for name, video in rows.items():
        change = float((extract_video(extractor, video) - expression).abs().mean())
        print(f"| {name} | {psnr(video, baseline):.2f} | {change:.4f} |")
    cfg = model.config
    reference = model.normalize_latent(encode_video(autoencoder, truth[:, :, :1]))[:, :, 0]
    cond = make_cond(reference, extract_video(extractor, truth), cfg.frames_per_latent)
    noise = torch.randn(
        truth.shape[0],
        cfg.latent_channels,
        truth.shape[2] // cfg.frames_per_latent,
        cfg.latent_size,
        cfg.latent_size,
        generator=torch.Generator().manual_seed(args.seed),
    )
    profile = velocity_profile(
        model, noise, flow_match_sigmas(args.steps), cond, guidance_of(scale, args)
    )
    print("| step | sigma | relative velocity change | magnitude ratio |\n|---|---|---|---|")
    for i, (sigma, change, ratio) in enumerate(
        zip(profile.sigmas, profile.relative_change, profile.magnitude_ratio, strict=True)
    ):
        print(f"| {i + 1} | {sigma:.3f} | {change:.4f} | {ratio:.4f} |")


# The world's eye-openness parameter (0 = closed), and the probe's reference.
EYE_OPEN = EXPRESSION_NAMES.index("eye_open")
CLOSED_REFERENCE = "reference with the eyes closed"


def parser() -> argparse.ArgumentParser:
    """The command line of ``python -m reference_model.evaluate_dit``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--cases", type=int, default=16)
    parser.add_argument("--frames", type=int, default=50, help="50 = 2 s at the world's 25 fps")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--setting", default="baseline")
    parser.add_argument("--guidance", type=float, nargs="*", default=[0.0, 4.0])
    parser.add_argument(
        "--guidance-interval",
        type=float,
        nargs=2,
        metavar=("LOW", "HIGH"),
        default=None,
        help="guide only the steps whose sigma is in [LOW, HIGH]",
    )
    parser.add_argument(
        "--guidance-rule",
        default="cfg",
        help="how branches combine: NAME[:KEY=VALUE,...] of flashbench.guidance.RULES, "
        "e.g. apg:eta=0,norm_threshold=2 or cfg_zero_star:zero_init_steps=1",
    )
    parser.add_argument(
        "--guidance-keep",
        nargs="+",
        default=[],
        metavar="PART",
        help="expression parts the unguided branch keeps (e.g. pose; weights trained with --part-drop)",
    )
    parser.add_argument(
        "--other-reference",
        action="store_true",
        help="also animate, per guidance scale, from a reference of the same face showing another "
        "expression (eyes, brows, mouth at random): how much of the reference's expression is copied",
    )
    parser.add_argument(
        "--closed-eye-probe",
        action="store_true",
        help="also animate, per guidance scale, from the truth's first frame re-rendered with the "
        "eyes closed, and print the generated eyes' openness over the truth's (issue 27's bar: 0.9)",
    )
    parser.add_argument("--split", default="test")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--grid", type=Path, default=None)
    parser.add_argument(
        "--regime",
        action="store_true",
        help="also print, per guidance scale: the seed floor, fewer-step penalties, velocity profile",
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--world-weights",
        type=Path,
        default=None,
        help="weights dir of the world nets (default: the world's own, weights/ or weights_v2/)",
    )
    parser.add_argument(
        "--world",
        default="v1",
        choices=["v1", "v2"],
        help="v2: clips of world v2 (held-out hidden seeds) and, by default, its networks "
        "(reference_model/weights_v2); give the v2 DiT with --weights",
    )
    return parser


@dataclass(frozen=True)
class Networks:
    """The DiT under test and the world's networks that encode, read and identify its frames."""

    model: PortraitDiT
    autoencoder: torch.nn.Module
    extractor: torch.nn.Module
    id_encoder: torch.nn.Module


def load_networks(weights: Path | None, world_weights: Path | None) -> Networks:
    """The DiT of ``weights`` (the shipped one, sha256-checked, when None) and the world's networks of ``world_weights``."""
    from reference_model.autoencoder import load_autoencoder
    from reference_model.expression import load_expression_extractor
    from reference_model.identity import load_identity_encoder

    autoencoder, extractor, id_encoder = (
        load_autoencoder(world_weights),
        load_expression_extractor(world_weights),
        load_identity_encoder(world_weights),
    )
    model = load_reference_model(weights, check_sha256=weights is None)
    return Networks(model, autoencoder, extractor, id_encoder)


def draw_cases(split: str, cases: int, frames: int, seed: int) -> tuple[Tensor, Tensor, Tensor]:
    """Identities of ``split``, other identities to drive by the same motion, and held-out driving motion."""
    from reference_model.world import sample_ids

    g = torch.Generator().manual_seed(seed + 12345)
    ids = sample_ids(split, cases, g)
    other = sample_ids(split, cases, g)
    motion = driving_motion(cases, frames, g, held_out=True)
    return ids, other, motion


@dataclass(frozen=True)
class Clips:
    """How the evaluated world renders the clips: world v1, or v2 with held-out hidden seeds."""

    world: str
    hidden: Tensor  # [cases] hidden seeds (world v2)

    @classmethod
    def of(cls, world: str, cases: int, seed: int) -> Clips:
        # World v2's hidden seeds come from a generator of their own, so v1's clips stay as they were.
        hidden = torch.randint(
            1_000_000, 2_000_000, (cases,), generator=torch.Generator().manual_seed(seed)
        )
        return cls(world, hidden)

    def video(self, ids: Tensor, motion: Tensor) -> Tensor:
        """Clips ``[B, 3, T, H, W]`` of identities ``ids`` driven by ``motion``."""
        from reference_model.world import identity_params, render_video
        from reference_model.world.versions import world

        if self.world == "v1":
            return render_video(identity_params(ids), motion)
        return world(self.world).render_video(identity_params(ids), motion, self.hidden, 0)

    def frame(self, ids: Tensor, face: Tensor) -> Tensor:
        """First frames ``[B, 3, H, W]`` of identities ``ids`` showing ``face``."""
        from reference_model.world import identity_params, render
        from reference_model.world.versions import world

        if self.world == "v1":
            return render(identity_params(ids), face)
        zero = torch.zeros_like(self.hidden)
        return world(self.world).render(identity_params(ids), face, self.hidden, zero, 64)


def trivial_answers(
    truth: Tensor, other: Tensor, motion: Tensor, autoencoder: torch.nn.Module, clips: Clips
) -> dict[str, Tensor]:
    """The answers any model must beat, and the autoencoder's ceiling."""
    return {
        "reference repeated": truth[:, :, :1].expand_as(truth),
        "other identity, same motion": clips.video(other, motion),
        # Not a trivial answer but the ceiling of any model in this latent space.
        "autoencoder round trip of the truth": decode_video(
            autoencoder, encode_video(autoencoder, truth)
        ),
    }


def animate_from(
    nets: Networks, reference: Tensor, truth: Tensor, scale: float, args: argparse.Namespace
) -> Tensor:
    """The model's video from ``reference`` driven by ``truth``'s expression, at guidance ``scale``."""
    return animate(
        nets.model,
        reference,
        truth,
        nets.autoencoder,
        nets.extractor,
        setting=args.setting,
        steps=args.steps,
        seed=args.seed,
        guidance=guidance_of(scale, args),
    )


def model_answers(
    nets: Networks,
    truth: Tensor,
    ids: Tensor,
    motion: Tensor,
    clips: Clips,
    args: argparse.Namespace,
) -> dict[str, Tensor]:
    """The model's videos per guidance scale (timed), and with ``--other-reference`` those from a reference showing another expression."""
    answers = {}
    for scale in args.guidance:
        tic = time.perf_counter()
        answers[f"model (cfg {scale:g})"] = animate_from(nets, truth[:, :, 0], truth, scale, args)
        seconds = (time.perf_counter() - tic) / args.cases
        print(f"sampling, cfg {scale:g}: {seconds:.2f} s per {args.frames}-frame clip")
    if args.closed_eye_probe:
        closed = motion[:, 0].clone()
        closed[:, EYE_OPEN] = 0.0
        reference = clips.frame(ids, closed)
        answers[CLOSED_REFERENCE] = reference[:, :, None].expand_as(truth)
        for scale in args.guidance:
            answers[f"model (cfg {scale:g}), {CLOSED_REFERENCE}"] = animate_from(
                nets, reference, truth, scale, args
            )
    if args.other_reference:
        face = with_random_face(motion[:, 0], torch.Generator().manual_seed(args.seed + 54321))
        other_reference = clips.frame(ids, face)
        answers["reference showing another expression"] = other_reference[:, :, None].expand_as(
            truth
        )
        for scale in args.guidance:
            name = f"model (cfg {scale:g}), reference showing another expression"
            answers[name] = animate_from(nets, other_reference, truth, scale, args)
    return answers


def print_closed_eye_probe(
    answers: dict[str, Tensor], truth: Tensor, nets: Networks, scales: list[float]
) -> None:
    """The generated eyes' mean openness (the extractor's eye feature) over the truth's, per guidance scale."""
    from reference_model.expression import PARTS

    def openness(video: Tensor) -> float:
        return float(extract_video(nets.extractor, video)[..., PARTS["eyes"]].mean())

    truth_eyes = openness(truth)
    print(f"closed-eye probe (the truth's eyes read {truth_eyes:.3f}):")
    for scale in scales:
        eyes = openness(answers[f"model (cfg {scale:g}), {CLOSED_REFERENCE}"])
        print(f"  cfg {scale:g}: generated eyes {eyes:.3f}, {eyes / truth_eyes:.2f} of the truth's")


def print_measures(answers: dict[str, Tensor], truth: Tensor, nets: Networks) -> None:
    """One table row per answer: PSNR, expression error and correlation per part, saturation and identity, against the truth."""
    from reference_model.expression import PARTS

    expr_truth = extract_video(nets.extractor, truth)
    truth_id = identity_similarity(nets.id_encoder, truth, truth[:, :, 0])
    parts = " | ".join(PARTS)
    corr_parts = " | ".join(f"r {p}" for p in PARTS)
    print(
        f"| answer | PSNR (dB) | PSNR frames 1.. (dB) | expression error | {parts} "
        f"| {corr_parts} | saturation / truth's | identity sim. / truth's ({truth_id:.3f}) |"
    )
    print("|---" * (6 + 2 * len(PARTS)) + "|")
    for name, video in answers.items():
        features = extract_video(nets.extractor, video)
        error = (features - expr_truth).abs()
        per_part = " | ".join(f"{float(error[..., p].mean()):.4f}" for p in PARTS.values())
        r_part = " | ".join(
            f"{part_correlation(features, expr_truth, p):.2f}" for p in PARTS.values()
        )
        sim = identity_similarity(nets.id_encoder, video, truth[:, :, 0])
        print(
            f"| {name} | {psnr(video, truth):.2f} | {psnr(video[:, :, 1:], truth[:, :, 1:]):.2f} "
            f"| {float(error.mean()):.4f} | {per_part} | {r_part} "
            f"| {saturation(video) / saturation(truth):.3f} | {sim / truth_id:.3f} |"
        )


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    world_weights = args.world_weights
    if world_weights is None and args.world == "v2":
        from reference_model.testbed_v2 import WEIGHTS_V2

        world_weights = WEIGHTS_V2
    nets = load_networks(args.weights, world_weights)
    ids, other, motion = draw_cases(args.split, args.cases, args.frames, args.seed)
    clips = Clips.of(args.world, args.cases, args.seed)
    with torch.no_grad():
        truth = clips.video(ids, motion)
        answers = trivial_answers(truth, other, motion, nets.autoencoder, clips)
        answers |= model_answers(nets, truth, ids, motion, clips, args)
        print_measures(answers, truth, nets)
        if args.closed_eye_probe:
            print_closed_eye_probe(answers, truth, nets, args.guidance)
        if args.regime:
            for scale in args.guidance:
                baseline = answers[f"model (cfg {scale:g})"]
                print_regime(
                    nets.model, truth, baseline, nets.autoencoder, nets.extractor, scale, args
                )
    if args.grid is not None:
        write_grid({"truth": truth, **answers}, args.grid)
        print(f"grid: {args.grid} (rows per clip: truth, {', '.join(answers)})")


if __name__ == "__main__":
    main()
