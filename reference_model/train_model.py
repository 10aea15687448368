"""Train the portrait DiT on the synthetic world: ``python -m reference_model.train_model --config small --minutes 60 --out runs/dit``.

Resumable: rerunning with the same ``--out`` continues from ``last.ckpt`` (``--minutes`` is the
total budget, counted across resumes); a run whose export already reached ``--max-steps`` is
left as it is. Every checkpoint also exports the EMA weights to ``OUT/dit_<config>.pt``,
loadable with ``load_reference_model(path)``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger

from reference_model.dit import CONFIGS, NFEB_VARIANTS, reset_expression_branch
from reference_model.lightning import (
    PortraitModule,
    WorldDataModule,
    encode_world_clips,
    render_world_clips,
)
from reference_model.pipeline import encode_video, export_weights, extract_video

if TYPE_CHECKING:
    from reference_model.world import MotionConfig

log = logging.getLogger(__name__)
NORMALISATION_BUFFERS = ("latent_mean", "latent_std", "expr_mean", "expr_std")


class ExportEMA(Callback):
    """Writes the EMA weights next to every checkpoint, so the best-so-far model can be shipped at any time."""

    def __init__(self, path: Path, every_steps: int) -> None:
        self.path, self.every_steps = path, every_steps

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if module.trained_steps % self.every_steps == 0:
            export_weights(module.ema, self.path, module.trained_steps)

    def on_train_end(self, trainer, module) -> None:
        export_weights(module.ema, self.path, module.trained_steps)


def reached_max_steps(export: Path, max_steps: int) -> bool:
    """Whether ``export`` holds weights trained to ``max_steps`` (False with no step cap)."""
    if max_steps < 0 or not export.is_file():
        return False
    return torch.load(export, map_location="cpu", weights_only=True)["step"] >= max_steps


def pca_encoder(videos: torch.Tensor, channels: int = 4, patch: int = 4) -> Callable:
    """A linear stand-in autoencoder: the top principal components of ``patch`` x ``patch`` RGB patches.

    Used only to pretrain while the world's autoencoder is not yet available (``--latent pca``);
    the weights are then fine-tuned on the real latents with ``--init``.
    """
    sample = videos[:: max(1, videos.shape[0] // 200)].float() / 255
    patches = F.pixel_unshuffle(sample.transpose(1, 2).flatten(0, 1), patch)
    flat = patches.permute(0, 2, 3, 1).reshape(-1, patches.shape[1])
    mean = flat.mean(0)
    basis = torch.linalg.svd(flat - mean, full_matrices=False).Vh[:channels]  # [C, 3 p p]

    def encode(video: torch.Tensor) -> torch.Tensor:
        b, _, t, h, w = video.shape
        x = F.pixel_unshuffle(video.transpose(1, 2).reshape(b * t, 3, h, w), patch)
        z = torch.einsum("nkhw,ck->nchw", x - mean[:, None, None], basis)
        return z.reshape(b, t, channels, h // patch, w // patch).transpose(1, 2)

    return encode


def check_pool_motion(out: Path, motion: MotionConfig) -> None:
    """Records the pool's motion statistics in ``out/pool_motion.json``; a resume that asks for others stops.

    A run directory made before the record existed holds the world's default motion.
    """
    from reference_model.world import MotionConfig

    record = out / "pool_motion.json"
    wanted = dataclasses.asdict(motion)
    if record.exists():
        held = json.loads(record.read_text())
    elif (out / "rendered.pt").exists() or (out / "pool.pt").exists():
        held = dataclasses.asdict(MotionConfig())
    else:
        record.write_text(json.dumps(wanted, indent=1) + "\n")
        return
    changed = sorted(k for k in wanted if held.get(k) != wanted[k])
    if changed:
        raise SystemExit(
            f"{out} holds a pool rendered with "
            + ", ".join(f"{k}={held.get(k)}" for k in changed)
            + "; this command asks for "
            + ", ".join(f"{k}={wanted[k]}" for k in changed)
            + ". Resume with the pool's options, or use a fresh --out"
        )
    if not record.exists():
        record.write_text(json.dumps(held, indent=1) + "\n")


def load_pool(
    out: Path,
    clips: int,
    frames: int,
    seed: int,
    use_extractor: bool,
    render_only: bool = False,
    latent: str = "world",
    world_weights: Path | None = None,
    device: torch.device | str = "cpu",
    blink_slot_frames: int | None = None,
) -> dict[str, torch.Tensor] | None:
    """The encoded training pool, cached in ``out`` (rendered clips, then latents) so a resume reuses it.

    The world networks encode on ``device``; the pool comes back on the CPU. ``blink_slot_frames``
    overrides the world's blink spacing (``MotionConfig``) for a blink-richer pool.
    """
    from reference_model.world import MotionConfig

    motion = MotionConfig()
    if blink_slot_frames is not None:
        motion = dataclasses.replace(motion, blink_slot_frames=blink_slot_frames)
    check_pool_motion(out, motion)
    rendered_path, cache = out / "rendered.pt", out / "pool.pt"
    if cache.exists() and not render_only:
        return torch.load(cache, weights_only=True)
    if rendered_path.exists():
        rendered = torch.load(rendered_path, weights_only=True)
        rendered = {k: v[:clips] for k, v in rendered.items()}
    else:
        log.info("rendering %d clips of %d frames", clips, frames)
        rendered = render_world_clips(clips, frames, seed, motion_config=motion)
        torch.save(rendered, rendered_path)
    if render_only:
        return None
    if latent == "pca":
        encode = pca_encoder(rendered["videos"])
    else:
        from reference_model.autoencoder import load_autoencoder

        autoencoder = load_autoencoder(world_weights).to(device)

        def encode(video: torch.Tensor) -> torch.Tensor:
            return encode_video(autoencoder, video.to(device)).cpu()

    extract = None
    if use_extractor:
        from reference_model.expression import load_expression_extractor

        extractor = load_expression_extractor(world_weights).to(device)

        def extract(video: torch.Tensor) -> torch.Tensor:
            return extract_video(extractor, video.to(device)).cpu()

    log.info("encoding %d clips", rendered["videos"].shape[0])
    pool = encode_world_clips(rendered, encode, extract)
    torch.save(pool, cache)
    return pool


def parser() -> argparse.ArgumentParser:
    """The command line of ``python -m reference_model.train_model``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="small", choices=sorted(CONFIGS))
    parser.add_argument(
        "--minutes", type=float, default=60.0, help="total training budget across resumes"
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--clips", type=int, default=1000, help="world clips in the training pool")
    parser.add_argument(
        "--pool-frames",
        type=int,
        default=48,
        help="frames per pool clip (references come from any)",
    )
    parser.add_argument("--clip-frames", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument(
        "--max-steps", type=int, default=-1, help="stop at this global step (-1: time budget only)"
    )
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument(
        "--decay-steps",
        type=int,
        default=0,
        help="cosine learning-rate decay to 0 over this many steps (0 = constant)",
    )
    parser.add_argument(
        "--decay-start",
        type=int,
        default=0,
        help="the step the decay starts at (0: after warmup); a later one cools down a resumed run",
    )
    parser.add_argument(
        "--init-step",
        type=int,
        default=0,
        help="steps --init's weights already trained: steps, the decay and exports count on from "
        "there (a run continued from an export; the optimiser starts afresh, with its warmup)",
    )
    parser.add_argument(
        "--reference-gap",
        type=float,
        default=0.5,
        help="share of clips whose reference is another frame of the pool clip, not the first",
    )
    parser.add_argument(
        "--reference-expression",
        type=float,
        default=0.0,
        help="share of clips whose reference shows the same face with an unrelated expression "
        "(eyes, brows, mouth drawn at random), so that expression can only come from the features",
    )
    parser.add_argument(
        "--region-weight",
        type=float,
        default=4.0,
        help="extra velocity-loss weight on eyes, brows and mouth (needs a pool rendered with regions)",
    )
    parser.add_argument(
        "--eye-weight",
        type=float,
        default=0.0,
        help="further velocity-loss weight on the eyes alone (needs a pool rendered with eye masks)",
    )
    parser.add_argument(
        "--expression-drop",
        type=float,
        default=0.1,
        help="share of clips trained without expression: the unconditional branch of emotion CFG",
    )
    parser.add_argument(
        "--part-drop",
        type=float,
        default=0.0,
        help="share of clips with a random subset of expression parts dropped (the encoder told which), "
        "so that guidance may keep some parts (Guidance(keep=...)) in its unconditional branch",
    )
    parser.add_argument("--checkpoint-minutes", type=float, default=3.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--accelerator",
        default="cpu",
        choices=["cpu", "gpu", "auto"],
        help="where the DiT trains (and the pool encodes); gpu resumes the same run on CUDA",
    )
    parser.add_argument(
        "--latent",
        default="world",
        choices=["world", "pca"],
        help="world: the shipped autoencoder; pca: a linear stand-in for pretraining",
    )
    parser.add_argument(
        "--world-weights", type=Path, default=None, help="weights dir of the world's nets"
    )
    parser.add_argument(
        "--nfeb",
        default="paper",
        choices=NFEB_VARIANTS,
        help="Normalized Facial Expression Block variant (the paper's ablation switch)",
    )
    parser.add_argument("--init", type=Path, default=None, help="start from these exported weights")
    parser.add_argument(
        "--reset-expression-branch",
        action="store_true",
        help="re-initialise --init's portrait encoder and NFEB expression projections (seeded by "
        "--seed): a pretrained backbone with a new expression branch, as the NFEB ablation trains",
    )
    parser.add_argument(
        "--blink-slot-frames",
        type=int,
        default=None,
        help="render the pool with at most one blink per this many frames (the world's: 60)",
    )
    parser.add_argument(
        "--render-only", action="store_true", help="render and cache the pool's clips, then stop"
    )
    parser.add_argument(
        "--extractor-features",
        action="store_true",
        help="condition on the expression extractor's output instead of the world's true parameters",
    )
    return parser


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Stop with a usage error naming the flag for options that cannot train, before any work."""
    if not 0.0 <= args.reference_gap <= 1.0:
        parser.error(
            f"--reference-gap {args.reference_gap} is a share of clips: give one in [0, 1]"
        )
    if not 0.0 <= args.reference_expression <= 1.0:
        parser.error(
            f"--reference-expression {args.reference_expression} is a share of clips: give one in [0, 1]"
        )
    if not 0.0 <= args.expression_drop < 1.0:
        parser.error(
            f"--expression-drop {args.expression_drop} is a share of clips: give one in [0, 1)"
        )
    if not (args.part_drop >= 0.0 and args.expression_drop + args.part_drop < 1.0):
        parser.error(
            f"--part-drop {args.part_drop} is a share of clips beside --expression-drop "
            f"{args.expression_drop}: give one >= 0 with both summing below 1"
        )
    if args.reset_expression_branch and args.init is None:
        parser.error(
            "--reset-expression-branch re-initialises the expression branch of --init's weights: give --init"
        )
    if args.accelerator == "gpu" and not torch.cuda.is_available():
        parser.error("--accelerator gpu: no CUDA device is visible; use --accelerator cpu")
    if args.blink_slot_frames is not None and args.blink_slot_frames < 8:
        parser.error(
            f"--blink-slot-frames {args.blink_slot_frames}: a blink is about 5 frames wide; give 8 or more"
        )
    if args.init_step and args.init is None:
        parser.error(
            f"--init-step {args.init_step} counts the steps of --init's weights: give --init"
        )
    if args.max_steps >= 0 and args.init_step >= args.max_steps:
        parser.error(
            f"--init-step {args.init_step} is not below --max-steps {args.max_steps}: nothing is "
            "left to train; raise --max-steps"
        )
    for flag, value in (
        ("--decay-steps", args.decay_steps),
        ("--decay-start", args.decay_start),
        ("--init-step", args.init_step),
    ):
        if value < 0:
            parser.error(f"{flag} {value} is a step count: give one >= 0")
    for flag, value in (("--region-weight", args.region_weight), ("--eye-weight", args.eye_weight)):
        if value < 0:
            parser.error(f"{flag} {value} must be >= 0 (0 turns weighting off)")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The checked options of ``argv`` (``sys.argv[1:]`` when None)."""
    cli = parser()
    args = cli.parse_args(argv)
    check_args(cli, args)
    return args


def training_device(accelerator: str) -> torch.device:
    """Where the DiT trains and the pool encodes for ``--accelerator``; CUDA matmuls in TF32."""
    on_gpu = accelerator == "gpu" or (accelerator == "auto" and torch.cuda.is_available())
    if on_gpu:
        torch.set_float32_matmul_precision("high")
    return torch.device("cuda" if on_gpu else "cpu")


def check_pool(pool: dict[str, torch.Tensor], args: argparse.Namespace) -> None:
    """Stop unless the cached pool holds the masks and renders that the loss options need."""
    for flag, weight, key in (
        ("--region-weight", args.region_weight, "regions"),
        ("--eye-weight", args.eye_weight, "eye_regions"),
    ):
        if weight > 0 and key not in pool:
            raise SystemExit(
                f"{flag} {weight} needs {key} masks, but {args.out}/pool.pt was rendered without "
                f"them; use a fresh --out, or pass {flag} 0"
            )
    if args.reference_expression > 0 and "reference_latents" not in pool:
        raise SystemExit(
            f"--reference-expression {args.reference_expression} needs reference renders, but "
            f"{args.out}/pool.pt was rendered without them; use a fresh --out, or pass "
            "--reference-expression 0"
        )


def build_module(args: argparse.Namespace, expr_dim: int) -> PortraitModule:
    """A fresh portrait DiT and its EMA, with the optimisation and loss options of ``args``."""
    return PortraitModule(
        args.config,
        {
            "lr": args.lr,
            "region_weight": args.region_weight,
            "eye_weight": args.eye_weight,
            "decay_steps": args.decay_steps,
            "decay_start": args.decay_start,
            "init_step": args.init_step,
            "expression_drop": args.expression_drop,
            "part_drop": args.part_drop,
        },
        expr_dim=expr_dim,
        part_dropout=args.part_drop > 0,
        variant=args.nfeb,
        train_frames=args.clip_frames,
    )


def load_init(module: PortraitModule, init: Path, reset_branch: bool, seed: int) -> None:
    """Start the model and its EMA from ``init``'s weights (its normalisation aside), with a new expression branch if asked."""
    state = torch.load(init, map_location="cpu", weights_only=True)["state_dict"]
    state = {k: v for k, v in state.items() if k not in NORMALISATION_BUFFERS}
    for net in (module.model, module.ema):
        net.load_state_dict(state, strict=False)
        if reset_branch:
            reset_expression_branch(net, seed)


def normalise_pool(
    module: PortraitModule,
    pool: dict[str, torch.Tensor],
    args: argparse.Namespace,
    device: torch.device,
) -> dict[str, torch.Tensor]:
    """Fit the model's normalisation to the pool; return the pool normalised, trimmed to what the loss reads, on ``device``."""
    latents, expression = pool["latents"], pool["expression"]
    for net in (module.model, module.ema):
        net.latent_mean.copy_(latents.mean(dim=(0, 2, 3, 4)))
        net.latent_std.copy_(latents.std(dim=(0, 2, 3, 4)))
        net.expr_mean.copy_(expression.mean(dim=(0, 1)))
        net.expr_std.copy_(expression.std(dim=(0, 1)).clamp_min(1e-4))
    pool["latents"] = module.model.normalize_latent(latents)
    if args.reference_expression > 0:
        pool["reference_latents"] = module.model.normalize_latent(pool["reference_latents"])
    else:
        pool.pop("reference_latents", None)
    if args.region_weight == 0:
        pool.pop("regions", None)
    if args.eye_weight == 0:
        pool.pop("eye_regions", None)
    # Crops are gathered where the model trains: no host-to-device copy per step.
    return {k: v.to(device) for k, v in pool.items()}


def build_data(
    pool: dict[str, torch.Tensor], args: argparse.Namespace, last: Path
) -> WorldDataModule:
    """The crop stream over ``pool``, continued past the crops that ``last`` has already trained on."""
    # A resumed run continues the crop stream instead of replaying the crops it has already seen.
    resumed_step = (
        torch.load(last, map_location="cpu", weights_only=True)["global_step"]
        if last.exists()
        else 0
    )
    return WorldDataModule(
        lambda: pool,
        args.clip_frames,
        args.batch_size,
        args.seed + args.init_step + resumed_step,
        args.reference_gap,
        args.reference_expression,
    )


def build_trainer(args: argparse.Namespace, device: torch.device) -> L.Trainer:
    """A Lightning trainer under the time and step budgets, checkpointing to and exporting into ``--out``."""
    return L.Trainer(
        max_time=datetime.timedelta(minutes=args.minutes),
        # Lightning counts this run's steps; --max-steps counts those of --init's weights too.
        max_steps=args.max_steps - args.init_step if args.max_steps >= 0 else -1,
        accelerator="gpu" if device.type == "cuda" else "cpu",
        devices=1,
        logger=CSVLogger(args.out, name="logs"),
        log_every_n_steps=25,
        gradient_clip_val=1.0,
        callbacks=[
            ModelCheckpoint(
                dirpath=args.out,
                save_last=True,
                save_top_k=0,
                # a resumed run must overwrite last.ckpt, not start last-v1.ckpt beside it
                enable_version_counter=False,
                train_time_interval=datetime.timedelta(minutes=args.checkpoint_minutes),
            ),
            ExportEMA(args.out / f"dit_{args.config}.pt", every_steps=100),
            TQDMProgressBar(refresh_rate=10),
        ],
        enable_model_summary=False,
    )


def train(
    trainer: L.Trainer,
    module: PortraitModule,
    data: WorldDataModule,
    last: Path,
    export: Path,
) -> None:
    """Fit from ``last`` if it exists; save the final checkpoint and export the EMA weights."""
    trainer.fit(module, datamodule=data, ckpt_path=str(last) if last.exists() else None)
    # Checkpoints are timed, so the last one can lag the end: save it, so a resume starts here.
    trainer.save_checkpoint(last)
    export_weights(module.ema, export, module.trained_steps)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO)
    export, last = args.out / f"dit_{args.config}.pt", args.out / "last.ckpt"
    if reached_max_steps(export, args.max_steps):
        # Re-running a finished run must leave its export as it is: a resume from an earlier
        # checkpoint would retrain the tail on another crop stream and replace the weights.
        log.info("%s is already trained to --max-steps %d; nothing to do", export, args.max_steps)
        return
    args.out.mkdir(parents=True, exist_ok=True)
    L.seed_everything(args.seed)
    device = training_device(args.accelerator)
    pool = load_pool(
        args.out,
        args.clips,
        args.pool_frames,
        args.seed,
        args.extractor_features,
        args.render_only,
        args.latent,
        args.world_weights,
        device,
        args.blink_slot_frames,
    )
    if pool is None:
        return
    check_pool(pool, args)
    module = build_module(args, expr_dim=pool["expression"].shape[-1])
    if args.init is not None and not last.exists():
        load_init(module, args.init, args.reset_expression_branch, args.seed)
    pool = normalise_pool(module, pool, args, device)
    data = build_data(pool, args, last)
    train(build_trainer(args, device), module, data, last, export)


if __name__ == "__main__":
    main()
