"""Do the world's networks read world v2 as they read v1? Extractor, identity encoder, autoencoder, and the hidden freedom.

    python -m reference_model.validate_world_v2 [--frames 1024] [--v2-weights reference_model/weights_v2]

On the same test identities, expressions and poses rendered in v1 and in v2 (held-out hidden
seeds), prints as JSON:
- the expression extractor's R^2 and mean absolute error per part, on clean frames and through
  each world's autoencoder (v1's network on v1 frames; on v2 frames v1's and, where
  ``weights_v2`` holds them, v2's networks);
- the identity encoder's verification ROC AUC and an identity ladder: the distance of each rung
  of a blend from identity A to B to A's reference, which must grow with the blend;
- the autoencoder's PSNR, overall and inside the face-part masks;
- how much world v2 leaves open: PSNR between two clips that differ only in the hidden seed,
  on full frames and on frames low-passed to a quarter of their size (the regime bars' scales).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from reference_model.testbed_v2 import HELD_OUT_OFFSET, WEIGHTS_V2


def _psnr(a: Tensor, b: Tensor) -> float:
    mse = (a - b).square().flatten(1).mean(1).clamp_min(1e-10)
    return float((-10 * mse.log10()).mean())


def _parts_report(prediction: Tensor, truth: Tensor) -> dict[str, float]:
    from reference_model.expression import PARTS, r2_per_part

    report = {f"r2_{k}": round(v, 4) for k, v in r2_per_part(prediction, truth).items()}
    error = (prediction - truth).abs()
    report.update({f"mae_{k}": round(float(error[:, s].mean()), 4) for k, s in PARTS.items()})
    return report


@torch.no_grad()
def expression_and_codec(frames_n: int, weights_v2: Path) -> dict[str, dict[str, float]]:
    from reference_model.autoencoder import load_autoencoder, psnr
    from reference_model.expression import load_expression_extractor
    from reference_model.world import identity_params, random_expression, render, split_ids
    from reference_model.world.renderer_v2 import expression_regions_v2, render_v2

    generator = torch.Generator().manual_seed(0)
    test = split_ids("test")
    ids = torch.randint(test.start, test.stop, (frames_n,), generator=generator)
    expression = random_expression(frames_n, generator)
    hidden = torch.randint(0, HELD_OUT_OFFSET, (frames_n,), generator=generator) + HELD_OUT_OFFSET
    index = torch.randint(0, 10_000, (frames_n,), generator=generator)
    identity = identity_params(ids)
    v1 = render(identity, expression, 64)
    v2 = render_v2(identity, expression, hidden, index, 64)
    masks = expression_regions_v2(identity, expression, hidden, index, 64)
    nets = {"v1": (load_expression_extractor(), load_autoencoder())}
    if (weights_v2 / "weights.json").exists():
        manifest = json.loads((weights_v2 / "weights.json").read_text())
        extractor = (
            load_expression_extractor(weights_v2) if "expression.pt" in manifest else nets["v1"][0]
        )
        codec = load_autoencoder(weights_v2) if "autoencoder.pt" in manifest else nets["v1"][1]
        nets["v2"] = (extractor, codec)
    out: dict[str, dict[str, float]] = {}

    def run(name: str, extractor, codec, frames: Tensor) -> None:
        chunks = frames.split(256)
        recon = torch.cat([codec(f) for f in chunks])
        out[name] = {
            **_parts_report(torch.cat([extractor(f) for f in chunks]), expression),
            **{
                f"codec_{k}": v
                for k, v in _parts_report(
                    torch.cat([extractor(f) for f in recon.split(256)]), expression
                ).items()
            },
            "codec_psnr_db": round(float(psnr(recon, frames).mean()), 2),
            "codec_psnr_db_face_parts": round(
                -10
                * math.log10(float(((recon - frames).square() * masks).sum() / (3 * masks.sum()))),
                2,
            ),
        }

    run("v1 frames, v1 networks", *nets["v1"], v1)
    run("v2 frames, v1 networks", *nets["v1"], v2)
    if "v2" in nets:
        run("v2 frames, v2 networks", *nets["v2"], v2)
    return out


@torch.no_grad()
def identity_checks(
    weights_v2: Path, identities: int = 100, frames_per_identity: int = 4
) -> dict[str, dict[str, float]]:
    from reference_model.identity import load_identity_encoder, roc_auc
    from reference_model.world import (
        blend_identities,
        driving_frames,
        identity_params,
        random_expression,
        split_ids,
    )
    from reference_model.world.versions import world

    runs = {"v1 frames, v1 encoder": ("v1", load_identity_encoder())}
    runs["v2 frames, v1 encoder"] = ("v2", runs["v1 frames, v1 encoder"][1])
    manifest = weights_v2 / "weights.json"
    if manifest.exists() and "identity.pt" in json.loads(manifest.read_text()):
        runs["v2 frames, v2 encoder"] = ("v2", load_identity_encoder(weights_v2))
    out: dict[str, dict[str, float]] = {}
    for label, (name, encoder) in runs.items():
        generator = torch.Generator().manual_seed(0)
        ids = torch.tensor(list(split_ids("test"))[:identities]).repeat_interleave(
            frames_per_identity
        )
        expression = random_expression(len(ids), generator)
        hidden = (
            torch.randint(0, HELD_OUT_OFFSET, (len(ids),), generator=generator) + HELD_OUT_OFFSET
        )
        index = torch.randint(0, 10_000, (len(ids),), generator=generator)
        frames = world(name).render(identity_params(ids), expression, hidden, index, 64)
        embeddings = encoder(frames)
        similarity = embeddings @ embeddings.T
        upper = torch.triu(torch.ones_like(similarity, dtype=torch.bool), diagonal=1)
        same = ids[:, None] == ids[None, :]
        report = {"verification_auc": round(roc_auc(similarity[upper], same[upper]), 5)}
        same_sim = similarity[upper & same].mean()
        other_sim = similarity[upper & ~same].mean()
        report.update(
            {
                "same_identity_cos": round(float(same_sim), 4),
                "other_identity_cos": round(float(other_sim), 4),
            }
        )
        # Ladders: 16 pairs, five rungs each, 12 frames of one motion, one hidden scene per pair.
        rungs = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0])
        monotone, distances = 0, torch.zeros(len(rungs))
        test = list(split_ids("test"))
        for pair in range(16):
            first, second = identity_params([test[2 * pair + 200], test[2 * pair + 201]])
            blend = blend_identities(first[None], second[None], rungs[:, None])
            motion = driving_frames(HELD_OUT_OFFSET + pair, 0, 12)
            video = world(name).render_video(
                blend, motion[None].expand(len(rungs), -1, -1), HELD_OUT_OFFSET + pair, 0, 64
            )
            # The reference: rung 0 at frame 0; each rung's distance is the mean over its frames.
            ref = encoder(video[0, :, 0][None])
            emb = encoder(video.transpose(1, 2).reshape(-1, 3, 64, 64)).view(len(rungs), 12, -1)
            d = 1 - (emb * ref[:, None]).sum(-1).mean(1)
            distances += d / 16
            monotone += int(bool((d.diff() > 0).all()))
        report["ladder_distance_by_rung"] = [round(float(v), 4) for v in distances]
        report["ladder_monotone_pairs_of_16"] = monotone
        out[label] = report
    return out


@torch.no_grad()
def hidden_freedom(clips: int = 24, frames: int = 24) -> dict[str, float]:
    """PSNR between clips that differ only in the hidden seed (identity, motion and frame indices shared)."""
    from reference_model.world import driving_frames, identity_params, split_ids
    from reference_model.world.versions import world

    test = list(split_ids("test"))
    identity = identity_params(test[:clips])
    motion = torch.stack([driving_frames(HELD_OUT_OFFSET + k, 0, frames) for k in range(clips)])
    seeds = torch.arange(clips) + HELD_OUT_OFFSET
    a = world("v2").render_video(identity, motion, seeds, 0, 64)
    b = world("v2").render_video(identity, motion, seeds + 5000, 0, 64)

    def flat(video: Tensor) -> Tensor:
        return video.transpose(1, 2).reshape(-1, 3, 64, 64)

    low_a, low_b = F.avg_pool2d(flat(a), 4), F.avg_pool2d(flat(b), 4)
    per_clip = lambda x: x.reshape(clips, -1)  # noqa: E731
    return {
        "psnr_db_other_hidden_seed": round(_psnr(per_clip(a), per_clip(b)), 2),
        "psnr_db_other_hidden_seed_quarter_size": round(_psnr(per_clip(low_a), per_clip(low_b)), 2),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1024)
    parser.add_argument("--v2-weights", type=Path, default=WEIGHTS_V2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="also write the report here (JSON)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    report = {
        "expression_and_codec": expression_and_codec(args.frames, args.v2_weights),
        "identity": identity_checks(args.v2_weights),
        "hidden_freedom": hidden_freedom(),
    }
    text = json.dumps(report, indent=1)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
