"""Train the synthetic world's networks from scratch and ship their weights.

    python -m reference_model.train_world autoencoder|expression|identity [--steps N]

Each run renders fresh frames of training identities every step, shows a tqdm bar,
evaluates on held-out (test) identities, writes ``reference_model/weights/<name>.pt`` and
records its sha256, size, training time and held-out figures in ``weights.json``.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor
from tqdm import tqdm

from reference_model.shipped_weights import WEIGHTS_DIR, checkpoint_of, record
from reference_model.world import (
    expression_regions,
    identity_params,
    random_expression,
    render,
    sample_ids,
    split_ids,
)

if TYPE_CHECKING:
    from reference_model.autoencoder import Autoencoder
    from reference_model.expression import ExpressionExtractor


@dataclass(frozen=True)
class TrainConfig:
    """One training run."""

    steps: int
    batch: int
    lr: float
    seed: int = 0
    size: int = 64
    minutes: float | None = None  # a wall-clock budget: the schedule ends at whichever comes first
    init: Path | None = None  # start from this checkpoint instead of from scratch
    decoder_only: bool = False  # autoencoder: fine-tune the decoder, keeping the latents fixed
    codec_fraction: float = 0.0  # expression: share of each batch seen through the autoencoder
    region_weight: float = 0.0  # autoencoder: extra loss weight on the face parts expression moves


def _batch(
    split: str, n: int, size: int, generator: torch.Generator
) -> tuple[Tensor, Tensor, Tensor]:
    """Frames, identity ids and expression parameters of ``n`` random renders of ``split``."""
    ids = sample_ids(split, n, generator)
    expression = random_expression(n, generator)
    return render(identity_params(ids), expression, size), ids, expression


def _cosine_lr(step: int, progress: float, lr: float, warmup: int = 100) -> float:
    if step < warmup:
        return lr * (step + 1) / warmup
    return lr * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def _loop(
    model: torch.nn.Module,
    config: TrainConfig,
    loss_fn: Callable[[torch.Generator], tuple[Tensor, dict[str, float]]],
    desc: str,
    extra_params: list[torch.nn.Parameter] | None = None,
) -> tuple[float, int]:
    """Run AdamW with warmup + cosine decay; return (seconds spent, steps taken)."""
    params = [p for p in model.parameters() if p.requires_grad] + list(extra_params or [])
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=1e-4)
    generator = torch.Generator().manual_seed(config.seed)
    start = time.perf_counter()
    budget = config.minutes * 60.0 if config.minutes else math.inf
    bar = tqdm(range(config.steps), desc=desc, dynamic_ncols=True, disable=None)  # a terminal only
    step = 0
    for step in bar:
        # On a shared CPU the step rate varies; the decay follows whichever budget runs out first.
        progress = max(step / config.steps, (time.perf_counter() - start) / budget)
        if progress >= 1.0:
            break
        for group in optimizer.param_groups:
            group["lr"] = _cosine_lr(step, progress, config.lr)
        loss, shown = loss_fn(generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        if step % 10 == 0:
            bar.set_postfix({k: f"{v:.4g}" for k, v in shown.items()})
    bar.close()
    return time.perf_counter() - start, step + 1


def _save(name: str, checkpoint: dict, details: dict, weights_dir: Path) -> None:
    weights_dir.mkdir(parents=True, exist_ok=True)
    path = weights_dir / f"{name}.pt"
    torch.save(checkpoint, path)
    entry = record(name, path, details, weights_dir)
    print(f"wrote {path} ({entry['bytes']} bytes, sha256 {entry['sha256'][:12]}...)")
    for key, value in details.items():
        print(f"  {key}: {value}")


# --- autoencoder ------------------------------------------------------------------------


def autoencoder_loss(
    model: Autoencoder, frames: Tensor, weight: Tensor, crop: int, generator: torch.Generator
) -> tuple[Tensor, dict[str, float]]:
    """Pixel-weighted reconstruction loss of a random ``crop`` of ``frames``, and its PSNR."""
    # Random crops (multiples of 4, so latents stay aligned) cost a quarter of full frames;
    # the network is fully convolutional and is evaluated on full frames.
    size = frames.shape[-1]
    top, left = (
        int(v) * 4 for v in torch.randint(0, (size - crop) // 4 + 1, (2,), generator=generator)
    )
    frames = frames[:, :, top : top + crop, left : left + crop]
    weight = weight[:, :, top : top + crop, left : left + crop]
    latents = model.encoder(frames * 2.0 - 1.0)
    recon = model.decoder(latents) * 0.5 + 0.5
    error = (recon - frames).square()
    mse = error.mean()
    # Eyes, brows and mouth are a tenth of the pixels but carry the expression that
    # expression error measures; plain MSE blurs them first.
    weighted = (weight * error).mean() / weight.mean()
    # A light pull on the latents keeps their scale bounded for the diffusion model.
    loss = weighted + 1e-5 * latents.square().mean()
    return loss, {"psnr": -10.0 * math.log10(max(mse.item(), 1e-10))}


def train_autoencoder(config: TrainConfig, weights_dir: Path) -> None:
    from reference_model.autoencoder import Autoencoder, psnr

    model = Autoencoder()
    if config.init is not None:
        model.load_state_dict(
            torch.load(config.init, map_location="cpu", weights_only=True)["state_dict"]
        )
    if config.decoder_only:
        # A second stage that improves decoding while every latent stays bit-identical, so
        # models already trained on these latents remain valid.
        model.encoder.requires_grad_(False)
    crop = config.size // 2

    def loss_fn(generator: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        frames, ids, expression = _batch("train", config.batch, config.size, generator)
        weight = 1.0 + config.region_weight * (
            expression_regions(identity_params(ids), expression, config.size)
            if config.region_weight > 0
            else torch.zeros_like(frames[:, :1])
        )
        return autoencoder_loss(model, frames, weight, crop, generator)

    seconds, steps = _loop(model, config, loss_fn, "autoencoder")
    model.eval()
    generator = torch.Generator().manual_seed(12345)
    with torch.no_grad():
        val, _, _ = _batch("val", 512, config.size, generator)
        if not config.decoder_only:
            model.latent_scale.fill_(1.0 / model.encoder(val * 2.0 - 1.0).std().item())
        test, _, _ = _batch("test", 512, config.size, generator)
        latents = model.encode(test)
        scores = psnr(model.decode(latents), test)
    details = {
        "params": sum(p.numel() for p in model.parameters()),
        "train_steps": steps,
        "train_batch": config.batch,
        "train_seconds": round(seconds, 1),
        "stage": "decoder fine-tune" if config.decoder_only else "from scratch",
        "region_weight": config.region_weight,
        "test_psnr_db_mean": round(scores.mean().item(), 2),
        "test_psnr_db_min": round(scores.min().item(), 2),
        "latent_std": round(latents.std().item(), 3),
        "latent_scale": round(model.latent_scale.item(), 5),
    }
    _save("autoencoder", checkpoint_of("autoencoder", model), details, weights_dir)


# --- expression extractor -----------------------------------------------------------------


def expression_loss(
    model: ExpressionExtractor,
    frames: Tensor,
    expression: Tensor,
    codec: Autoencoder | None,
    degraded: int,
    generator: torch.Generator,
) -> tuple[Tensor, dict[str, float]]:
    """Smooth-L1 error of the extracted parameters, the first ``degraded`` frames seen through ``codec``."""
    if codec is not None and degraded > 0:
        # Generated videos reach the extractor through the autoencoder (and some sampling
        # grain); an extractor that only saw clean renders misreads eyes and brows there.
        with torch.no_grad():
            head = codec(frames[:degraded])
            noise = torch.rand(degraded, 1, 1, 1, generator=generator) * 0.03
            head = head + noise * torch.randn(head.shape, generator=generator)
        frames = torch.cat([head.clamp(0, 1), frames[degraded:]])
    error = (model(frames) - expression) / model.param_scale
    loss = torch.nn.functional.smooth_l1_loss(error, torch.zeros_like(error), beta=0.1)
    return loss, {"loss": loss.item()}


def train_expression(config: TrainConfig, weights_dir: Path) -> None:
    from reference_model.autoencoder import load_autoencoder
    from reference_model.expression import ExpressionExtractor, evaluate_expression

    model = ExpressionExtractor()
    if config.init is not None:
        model.load_state_dict(
            torch.load(config.init, map_location="cpu", weights_only=True)["state_dict"]
        )
    codec = load_autoencoder(weights_dir) if config.codec_fraction > 0 else None
    degraded = round(config.batch * config.codec_fraction)

    def loss_fn(generator: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        frames, _, expression = _batch("train", config.batch, config.size, generator)
        return expression_loss(model, frames, expression, codec, degraded, generator)

    seconds, steps = _loop(model, config, loss_fn, "expression")
    model.eval()
    report = evaluate_expression(model, split="test", size=config.size, codec=codec)
    details = {
        "params": sum(p.numel() for p in model.parameters()),
        "stage": f"continued from {config.init.name}" if config.init else "from scratch",
        "codec_fraction": config.codec_fraction,
        "train_steps": steps,
        "train_batch": config.batch,
        "train_seconds": round(seconds, 1),
        **{f"test_{k}": round(v, 4) for k, v in report.items()},
    }
    _save("expression", checkpoint_of("expression", model), details, weights_dir)


# --- identity encoder ---------------------------------------------------------------------


def train_identity(config: TrainConfig, weights_dir: Path, classes: int = 2000) -> None:
    from reference_model.identity import ArcFaceHead, IdentityEncoder, verification_auc

    model = IdentityEncoder()
    if config.init is not None:
        model.load_state_dict(
            torch.load(config.init, map_location="cpu", weights_only=True)["state_dict"]
        )
    head = ArcFaceHead(model.config.embedding_dim, classes)
    train_ids = split_ids("train")

    def loss_fn(generator: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        labels = torch.randint(0, classes, (config.batch,), generator=generator)
        expression = random_expression(config.batch, generator)
        frames = render(identity_params(labels + train_ids.start), expression, config.size)
        loss, accuracy = head(model(frames), labels)
        return loss, {"loss": loss.item(), "acc": accuracy}

    seconds, steps = _loop(model, config, loss_fn, "identity", extra_params=list(head.parameters()))
    model.eval()
    auc = verification_auc(model, split="test", size=config.size)
    details = {
        "params": sum(p.numel() for p in model.parameters()),
        "train_identities": classes,
        "train_steps": steps,
        "train_batch": config.batch,
        "train_seconds": round(seconds, 1),
        "test_verification_auc": round(auc, 5),
    }
    _save("identity", checkpoint_of("identity", model), details, weights_dir)


TRAINERS: dict[str, tuple[Callable[[TrainConfig, Path], None], TrainConfig]] = {
    "autoencoder": (
        train_autoencoder,
        TrainConfig(steps=6000, batch=32, lr=2e-3, region_weight=10.0),
    ),
    "expression": (
        train_expression,
        TrainConfig(steps=6000, batch=32, lr=2e-3, codec_fraction=0.5),
    ),
    "identity": (train_identity, TrainConfig(steps=500, batch=64, lr=2e-3)),
}


def parser() -> argparse.ArgumentParser:
    """The command line of ``python -m reference_model.train_world``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("network", choices=sorted(TRAINERS))
    parser.add_argument("--steps", type=int, default=None, help="override the number of steps")
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--minutes", type=float, default=None, help="wall-clock budget (schedule ends early)"
    )
    parser.add_argument("--init", type=Path, default=None, help="start from this checkpoint")
    parser.add_argument(
        "--decoder-only", action="store_true", help="autoencoder: fine-tune the decoder only"
    )
    parser.add_argument(
        "--codec-fraction",
        type=float,
        default=None,
        help="expression: share of each batch passed through the autoencoder (default 0.5)",
    )
    parser.add_argument(
        "--region-weight",
        type=float,
        default=None,
        help="autoencoder: extra loss weight on eyes, brows and mouth (default 10; 0 = plain MSE)",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the CPU is shared)")
    parser.add_argument("--weights-dir", type=Path, default=WEIGHTS_DIR)
    return parser


def config_of(args: argparse.Namespace) -> TrainConfig:
    """The run that ``args`` asks for: the network's defaults in ``TRAINERS``, overridden by the options given."""
    _, defaults = TRAINERS[args.network]
    return TrainConfig(
        steps=args.steps or defaults.steps,
        batch=args.batch or defaults.batch,
        lr=args.lr or defaults.lr,
        seed=args.seed,
        minutes=args.minutes,
        init=args.init,
        decoder_only=args.decoder_only,
        region_weight=defaults.region_weight if args.region_weight is None else args.region_weight,
        codec_fraction=defaults.codec_fraction
        if args.codec_fraction is None
        else args.codec_fraction,
    )


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    # The networks' initial weights come from the global generator: --seed fixes them too.
    torch.manual_seed(args.seed)
    trainer, _ = TRAINERS[args.network]
    trainer(config_of(args), args.weights_dir)


if __name__ == "__main__":
    main()
