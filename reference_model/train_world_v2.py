"""Train world v2's networks and write them to ``reference_model/weights_v2/``.

    python -m reference_model.train_world_v2 autoencoder|expression|identity [--minutes M] [--init PATH]

The same networks, losses and loop as ``train_world`` (world v1, whose weights stay as they
are), on frames of world v2: random training identities, uniformly random expression and pose,
and a random hidden scene (seed and frame index) every step. By default each network starts
from v1's shipped weights (``--init v1``; ``--init none`` trains from scratch): the faces are
v1's, only the scene around them is new. Held-out figures are on test identities and held-out
hidden seeds; ``weights_v2/weights.json`` records sha256, size, time and figures.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch
from torch import Tensor

from reference_model.shipped_weights import WEIGHTS_DIR, checkpoint_of
from reference_model.testbed_v2 import WEIGHTS_V2, random_frames_v2
from reference_model.train_world import (
    TrainConfig,
    _loop,
    _save,
    autoencoder_loss,
    expression_loss,
)


def _init(model: torch.nn.Module, init: Path | None) -> None:
    if init is not None:
        model.load_state_dict(torch.load(init, map_location="cpu", weights_only=True)["state_dict"])


def _retrain(name: str, args: argparse.Namespace) -> str:
    return f"python -m reference_model.train_world_v2 {name} " + " ".join(args.argv)


def train_autoencoder(config: TrainConfig, weights_dir: Path, retrain: str) -> dict:
    from reference_model.autoencoder import Autoencoder, psnr
    from reference_model.world import identity_params
    from reference_model.world.renderer_v2 import expression_regions_v2

    model = Autoencoder()
    _init(model, config.init)
    crop = config.size // 2

    def loss_fn(generator: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        frames, ids, expression, hidden, index = random_frames_v2(
            "train", config.batch, config.size, generator
        )
        weight = 1.0 + config.region_weight * expression_regions_v2(
            identity_params(ids), expression, hidden, index, config.size
        )
        return autoencoder_loss(model, frames, weight, crop, generator)

    seconds, steps = _loop(model, config, loss_fn, "autoencoder v2")
    model.eval()
    generator = torch.Generator().manual_seed(12345)
    with torch.no_grad():
        val = random_frames_v2("val", 512, config.size, generator)[0]
        model.latent_scale.fill_(1.0 / model.encoder(val * 2.0 - 1.0).std().item())
        test, ids, expression, hidden, index = random_frames_v2("test", 512, config.size, generator)
        latents = model.encode(test)
        recon = model.decode(latents)
        scores = psnr(recon, test)
        masks = expression_regions_v2(identity_params(ids), expression, hidden, index, config.size)
        inside = ((recon - test).square() * masks).sum() / (3 * masks.sum())
    details = {
        "world": "v2",
        "retrain": retrain,
        "params": sum(p.numel() for p in model.parameters()),
        "init": str(config.init) if config.init else "from scratch",
        "train_steps": steps,
        "train_batch": config.batch,
        "train_seconds": round(seconds, 1),
        "region_weight": config.region_weight,
        "test_psnr_db_mean": round(scores.mean().item(), 2),
        "test_psnr_db_min": round(scores.min().item(), 2),
        "test_psnr_db_face_parts": round(-10.0 * math.log10(inside.item()), 2),
        "latent_std": round(latents.std().item(), 3),
        "latent_scale": round(model.latent_scale.item(), 5),
    }
    _save("autoencoder", checkpoint_of("autoencoder", model), details, weights_dir)
    return details


def train_expression(config: TrainConfig, weights_dir: Path, retrain: str) -> dict:
    from reference_model.autoencoder import load_autoencoder
    from reference_model.expression import ExpressionExtractor, r2_per_part

    model = ExpressionExtractor()
    _init(model, config.init)
    codec = load_autoencoder(weights_dir) if config.codec_fraction > 0 else None
    degraded = round(config.batch * config.codec_fraction)

    def loss_fn(generator: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        frames, _, expression, _, _ = random_frames_v2(
            "train", config.batch, config.size, generator
        )
        return expression_loss(model, frames, expression, codec, degraded, generator)

    seconds, steps = _loop(model, config, loss_fn, "expression v2")
    model.eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        frames, _, expression, _, _ = random_frames_v2("test", 1024, config.size, generator)
        report = {
            f"test_r2_{k}": round(v, 4) for k, v in r2_per_part(model(frames), expression).items()
        }
        if codec is not None:
            report.update(
                {
                    f"test_r2_codec_{k}": round(v, 4)
                    for k, v in r2_per_part(model(codec(frames)), expression).items()
                }
            )
    details = {
        "world": "v2",
        "retrain": retrain,
        "params": sum(p.numel() for p in model.parameters()),
        "init": str(config.init) if config.init else "from scratch",
        "codec_fraction": config.codec_fraction,
        "train_steps": steps,
        "train_batch": config.batch,
        "train_seconds": round(seconds, 1),
        **report,
    }
    _save("expression", checkpoint_of("expression", model), details, weights_dir)
    return details


def train_identity(
    config: TrainConfig, weights_dir: Path, retrain: str, classes: int = 2000
) -> dict:
    from reference_model.identity import ArcFaceHead, IdentityEncoder, roc_auc
    from reference_model.world import identity_params, random_expression, split_ids
    from reference_model.world.renderer_v2 import render_v2

    model = IdentityEncoder()
    _init(model, config.init)
    head = ArcFaceHead(model.config.embedding_dim, classes)
    train_ids = split_ids("train")

    def loss_fn(generator: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        labels = torch.randint(0, classes, (config.batch,), generator=generator)
        expression = random_expression(config.batch, generator)
        hidden = torch.randint(0, 1_000_000, (config.batch,), generator=generator)
        index = torch.randint(0, 10_000, (config.batch,), generator=generator)
        frames = render_v2(
            identity_params(labels + train_ids.start), expression, hidden, index, config.size
        )
        loss, accuracy = head(model(frames), labels)
        return loss, {"loss": loss.item(), "acc": accuracy}

    seconds, steps = _loop(
        model, config, loss_fn, "identity v2", extra_params=list(head.parameters())
    )
    model.eval()
    with torch.no_grad():
        generator = torch.Generator().manual_seed(0)
        ids = torch.tensor(list(split_ids("test"))[:100]).repeat_interleave(4)
        expression = random_expression(len(ids), generator)
        hidden = torch.randint(0, 1_000_000, (len(ids),), generator=generator) + 1_000_000
        index = torch.randint(0, 10_000, (len(ids),), generator=generator)
        embeddings = model(render_v2(identity_params(ids), expression, hidden, index, config.size))
        similarity = embeddings @ embeddings.T
        upper = torch.triu(torch.ones_like(similarity, dtype=torch.bool), diagonal=1)
        auc = roc_auc(similarity[upper], (ids[:, None] == ids[None, :])[upper])
    details = {
        "world": "v2",
        "retrain": retrain,
        "params": sum(p.numel() for p in model.parameters()),
        "init": str(config.init) if config.init else "from scratch",
        "train_identities": classes,
        "train_steps": steps,
        "train_batch": config.batch,
        "train_seconds": round(seconds, 1),
        "test_verification_auc": round(auc, 5),
    }
    _save("identity", checkpoint_of("identity", model), details, weights_dir)
    return details


DEFAULTS: dict[str, TrainConfig] = {
    "autoencoder": TrainConfig(steps=6000, batch=32, lr=1e-3, region_weight=10.0),
    "expression": TrainConfig(steps=3000, batch=32, lr=5e-4, codec_fraction=0.5),
    "identity": TrainConfig(steps=800, batch=64, lr=1e-3),
}
TRAINERS = {
    "autoencoder": train_autoencoder,
    "expression": train_expression,
    "identity": train_identity,
}


def main(argv: list[str] | None = None) -> None:
    import sys

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("network", choices=sorted(TRAINERS))
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--minutes", type=float, default=None, help="wall-clock budget")
    parser.add_argument(
        "--init",
        default="v1",
        help="v1 (the shipped v1 network, the default), none (from scratch), or a checkpoint path",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the CPU is shared)")
    parser.add_argument("--weights-dir", type=Path, default=WEIGHTS_V2)
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[2:] if argv is None else argv[1:])
    torch.set_num_threads(args.threads)
    defaults = DEFAULTS[args.network]
    init = {"v1": WEIGHTS_DIR / f"{args.network}.pt", "none": None}.get(args.init, Path(args.init))
    config = TrainConfig(
        steps=args.steps or defaults.steps,
        batch=args.batch or defaults.batch,
        lr=args.lr or defaults.lr,
        seed=args.seed,
        minutes=args.minutes,
        init=init,
        region_weight=defaults.region_weight,
        codec_fraction=defaults.codec_fraction,
    )
    TRAINERS[args.network](config, args.weights_dir, _retrain(args.network, args))


if __name__ == "__main__":
    main()
