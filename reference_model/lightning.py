"""Lightning packaging of the portrait DiT: flow-matching training and sampling under any setting.

Training follows FlashPortrait (Ma et al. 2025, arXiv 2512.16900): MSE on the velocity target
``noise - x0`` plus a motion MSE on temporal differences (ratio 0.25), with the expression
condition dropped for 10% of the samples so that emotion guidance has an unconditional branch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, IterableDataset

from flashbench.denoiser import Cond
from flashbench.sampling import Guidance, sample

if TYPE_CHECKING:
    from reference_model.world import MotionConfig
from flashbench.schedule import flow_match_sigmas, shift_sigmas
from flashbench.settings import settings
from reference_model.dit import CONFIGS, PortraitDiT, make_cond


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and loss settings."""

    lr: float = 3e-4
    weight_decay: float = 0.0
    warmup_steps: int = 200
    decay_steps: int = 0  # cosine decay to 0 over this many steps; 0 = constant
    # The step the decay starts at (after warmup when 0): a cooldown phase of a resumed run.
    decay_start: int = 0
    # Steps the initial weights already trained (a run continued from an export): the decay and
    # the EMA count from there; the warmup counts this optimiser's own steps, which start afresh.
    init_step: int = 0
    motion_loss_ratio: float = 0.25
    expression_drop: float = 0.1
    # Share of clips with a random subset of expression parts dropped (part dropout).
    part_drop: float = 0.0
    train_shift: float = 3.0
    ema_decay: float = 0.999
    expression_noise: float = 0.05  # in units of each feature's std: robustness to extractor error
    region_weight: float = 0.0  # extra velocity-loss weight on the face parts expression moves
    eye_weight: float = 0.0  # further weight on the eyes alone: blinks are few, small pixels


def flow_matching_loss(
    model: PortraitDiT,
    latents: Tensor,
    expression: Tensor,
    generator: torch.Generator | None = None,
    motion_loss_ratio: float = 0.25,
    expression_drop: float = 0.1,
    train_shift: float = 3.0,
    part_drop: float = 0.0,
    reference: Tensor | None = None,
    weight: Tensor | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Velocity MSE + ``motion_loss_ratio`` x MSE of temporal differences (FlashPortrait, arXiv 2512.16900, training loss).

    ``latents`` ``[B, C, T, H, W]`` are normalised clips; ``reference`` ``[B, C, H, W]`` is the
    reference latent (default: the clip's frame 0). ``weight`` ``[B, 1, T, H, W]`` weights the
    velocity error per latent pixel, as the paper weights face and lip regions. A share
    ``expression_drop`` of clips drops the whole expression; a further share ``part_drop`` drops
    a random subset of its parts (models built with ``part_dropout``).
    """
    b = latents.shape[0]
    device = latents.device
    u = torch.rand(b, generator=generator, device=device)
    # Half of the batch at shifted sigmas (where shift-5 sampling spends its steps), half uniform.
    shifted = torch.rand(b, generator=generator, device=device) < 0.5
    sigma = torch.where(shifted, shift_sigmas(u, train_shift), u)
    noise = torch.randn(latents.shape, generator=generator, device=device)
    s = sigma[:, None, None, None, None]
    x_t = (1 - s) * latents + s * noise
    target = noise - latents
    u = torch.rand(b, generator=generator, device=device)
    keep = (u >= expression_drop).float()
    cond = make_cond(latents[:, :, 0] if reference is None else reference, expression)
    static = {**cond.static, "expression_keep": keep}
    if part_drop > 0:
        # Each part of a part-dropped clip is kept with probability 1/2, so every subset that
        # an unconditional branch may keep is trained.
        partial = (u >= expression_drop) & (u < expression_drop + part_drop)
        coin = torch.rand(b, len(model.config.parts), generator=generator, device=device) < 0.5
        static["part_keep"] = coin | ~partial[:, None]
    cond = Cond(static=static, temporal=cond.temporal)
    v = model(x_t, sigma, cond)
    error = (v - target).square()
    velocity = error.mean() if weight is None else (weight * error).mean() / weight.mean()
    motion = (v.diff(dim=2) - target.diff(dim=2)).square().mean()
    loss = velocity + motion_loss_ratio * motion
    return loss, {"velocity": velocity.detach(), "motion": motion.detach()}


def lr_factor(step: int, config: TrainConfig) -> float:
    """Linear warmup over this optimiser's steps, times a cosine decay to zero from ``decay_start`` (``decay_steps`` > 0)."""
    warm = (step + 1) / config.warmup_steps if step < config.warmup_steps else 1.0
    step += config.init_step
    start = max(config.warmup_steps, config.decay_start)
    if config.decay_steps <= 0 or step < start:
        return warm
    progress = min(1.0, (step - start) / config.decay_steps)
    return warm * 0.5 * (1.0 + math.cos(math.pi * progress))


class PortraitModule(L.LightningModule):
    """LightningModule around ``PortraitDiT``; an EMA copy of the weights is kept for sampling."""

    def __init__(self, config_name: str = "small", train: dict | None = None, **overrides) -> None:
        super().__init__()
        # Plain dicts only, so that checkpoints load under torch.load(weights_only=True).
        self.save_hyperparameters()
        self.train_config = TrainConfig(**(train or {}))
        self.model = PortraitDiT(CONFIGS[config_name](**overrides))
        self.ema = PortraitDiT(self.model.config)
        self.ema.load_state_dict(self.model.state_dict())
        self.ema.requires_grad_(False)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        cfg = self.train_config
        expression = batch["expression"]
        if cfg.expression_noise > 0:
            expression = expression + cfg.expression_noise * self.model.expr_std * torch.randn_like(
                expression
            )
        loss, parts = flow_matching_loss(
            self.model,
            batch["latents"],
            expression,
            motion_loss_ratio=cfg.motion_loss_ratio,
            expression_drop=cfg.expression_drop,
            train_shift=cfg.train_shift,
            part_drop=cfg.part_drop,
            reference=batch.get("reference"),
            weight=loss_weight(batch, cfg),
        )
        self.log("loss", loss, prog_bar=True)
        self.log("velocity", parts["velocity"])
        self.log("motion", parts["motion"])
        return loss

    @property
    def trained_steps(self) -> int:
        """Optimiser steps behind the weights: this run's and those of the weights it started from."""
        return self.global_step + self.train_config.init_step

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        step = self.trained_steps
        decay = min(self.train_config.ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for e, p in zip(self.ema.parameters(), self.model.parameters(), strict=True):
                e.lerp_(p, 1 - decay)

    def configure_optimizers(self):
        cfg = self.train_config
        opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: lr_factor(step, cfg))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def predict_step(
        self,
        batch: dict[str, Tensor],
        batch_idx: int = 0,
        setting: str = "baseline",
        steps: int = 30,
        seed: int = 0,
    ) -> Tensor:
        """Sampled normalised latents ``[B, C, T, H, W]`` for ``batch["reference_latent"]`` and ``batch["expression"]``."""
        return generate(
            self.ema,
            batch["reference_latent"],
            batch["expression"],
            setting=setting,
            steps=steps,
            seed=seed,
        )


def generate(
    model: PortraitDiT,
    reference_latent: Tensor,
    expression: Tensor,
    setting: str = "baseline",
    steps: int = 30,
    seed: int = 0,
    guidance: Guidance | None = None,
) -> Tensor:
    """Sample normalised latents for a reference latent ``[B, C, H, W]`` and expression features ``[B, T, E]``.

    ``guidance``, when given, replaces the setting's.
    """
    stepper, windowing, setting_guidance = settings.get(setting).build()
    guidance = guidance if guidance is not None else setting_guidance
    cfg = model.config
    frames = expression.shape[1] // cfg.frames_per_latent
    b = reference_latent.shape[0]
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(
        b, cfg.latent_channels, frames, cfg.latent_size, cfg.latent_size, generator=generator
    )
    cond = make_cond(reference_latent, expression, cfg.frames_per_latent)
    out = sample(
        model,
        noise.to(reference_latent),
        flow_match_sigmas(steps),
        cond,
        stepper=stepper,
        windowing=windowing,
        guidance=guidance,
    )
    return out.latents


# ----------------------------------------------------------------------------------- data


def loss_weight(batch: dict[str, Tensor], cfg: TrainConfig) -> Tensor | None:
    """Per-latent-pixel velocity-loss weight from the batch's face-part masks; None without masks."""
    if "regions" not in batch and "eye_regions" not in batch:
        return None
    weight = torch.ones_like(batch["latents"][:, :1])
    if "regions" in batch:
        weight = weight + cfg.region_weight * batch["regions"]
    if "eye_regions" in batch:
        weight = weight + cfg.eye_weight * batch["eye_regions"]
    return weight


class ClipStream(IterableDataset):
    """An endless stream of random ``clip_frames``-frame crops of a pool of world clips (self-reenactment).

    The reference is the crop's first frame, or, for a ``reference_gap`` share of the crops, any
    frame of the same pool clip: sliding windows and long full windows ask the model for
    expressions and poses far from the reference's, which first-frame references never show.
    For a ``reference_expression`` share, it is one of the clip's ``reference_latents``
    ``[N, C, R, h, w]`` instead: the same face showing an unrelated expression, so that the
    crop's eyes, brows and mouth can only come from its expression features.
    ``regions`` and ``eye_regions`` ``[N, 1, T, h, w]`` (face-part masks at latent resolution)
    are cropped alongside.
    """

    def __init__(
        self,
        latents: Tensor,
        expression: Tensor,
        clip_frames: int,
        batch_size: int,
        seed: int,
        regions: Tensor | None = None,
        reference_gap: float = 0.0,
        eye_regions: Tensor | None = None,
        reference_latents: Tensor | None = None,
        reference_expression: float = 0.0,
    ) -> None:
        super().__init__()
        if reference_expression > 0 and reference_latents is None:
            raise ValueError(
                f"reference_expression={reference_expression} needs the pool's reference_latents"
            )
        self.latents, self.expression, self.regions = latents, expression, regions
        self.eye_regions = eye_regions
        self.clip_frames, self.batch_size, self.seed = clip_frames, batch_size, seed
        self.reference_gap = reference_gap
        self.reference_latents, self.reference_expression = reference_latents, reference_expression

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        generator = torch.Generator().manual_seed(self.seed)
        n, _, length = self.latents.shape[:3]
        while True:
            idx = torch.randint(0, n, (self.batch_size,), generator=generator)
            start = torch.randint(
                0, length - self.clip_frames + 1, (self.batch_size,), generator=generator
            )
            frames = start[:, None] + torch.arange(self.clip_frames)
            lat = self.latents[idx[:, None], :, frames].permute(0, 2, 1, 3, 4)
            expr = self.expression[idx[:, None], frames]
            anywhere = torch.randint(0, length, (self.batch_size,), generator=generator)
            gap = torch.rand(self.batch_size, generator=generator) < self.reference_gap
            ref = self.latents[idx, :, torch.where(gap, anywhere, start)]
            if self.reference_expression > 0:
                which = torch.randint(
                    0, self.reference_latents.shape[2], (self.batch_size,), generator=generator
                )
                other = torch.rand(self.batch_size, generator=generator) < self.reference_expression
                ref = torch.where(
                    other[:, None, None, None], self.reference_latents[idx, :, which], ref
                )
            batch = {"latents": lat.float(), "expression": expr.float(), "reference": ref.float()}
            for key, masks in (("regions", self.regions), ("eye_regions", self.eye_regions)):
                if masks is not None:
                    batch[key] = masks[idx[:, None], :, frames].permute(0, 2, 1, 3, 4)
            yield batch


class WorldDataModule(L.LightningDataModule):
    """World clips encoded once into a pool (``latents``, ``expression``, optional ``regions``), then streamed as random crops."""

    def __init__(
        self,
        build_pool: Callable[[], dict[str, Tensor]],
        clip_frames: int = 8,
        batch_size: int = 16,
        seed: int = 0,
        reference_gap: float = 0.0,
        reference_expression: float = 0.0,
    ) -> None:
        super().__init__()
        self.build_pool, self.clip_frames, self.batch_size, self.seed = (
            build_pool,
            clip_frames,
            batch_size,
            seed,
        )
        self.reference_gap, self.reference_expression = reference_gap, reference_expression
        self.pool: dict[str, Tensor] | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.pool is None:
            self.pool = self.build_pool()

    def train_dataloader(self) -> DataLoader:
        pool = self.pool
        stream = ClipStream(
            pool["latents"],
            pool["expression"],
            self.clip_frames,
            self.batch_size,
            self.seed,
            regions=pool.get("regions"),
            reference_gap=self.reference_gap,
            eye_regions=pool.get("eye_regions"),
            reference_latents=pool.get("reference_latents"),
            reference_expression=self.reference_expression,
        )
        return DataLoader(stream, batch_size=None, num_workers=0)


def driving_motion(
    n: int,
    frames: int,
    generator: torch.Generator,
    held_out: bool = False,
    config: MotionConfig | None = None,
) -> Tensor:
    """``n`` driving clips ``[n, frames, 7]``: random stretches of the world's motion sequences.

    Training draws sequence seeds below 10^6; ``held_out`` draws from seeds at or above it.
    ``config`` changes the motion's statistics (the world's default when None).
    """
    from reference_model.world import MotionConfig, driving_frames

    config = config or MotionConfig()

    offset = 1_000_000 if held_out else 0
    seeds = torch.randint(0, 1_000_000, (n,), generator=generator) + offset
    starts = torch.randint(0, 10_000, (n,), generator=generator)
    return torch.stack(
        [
            driving_frames(int(s), int(t), int(t) + frames, config)
            for s, t in zip(seeds, starts, strict=True)
        ]
    )


def with_random_face(expression: Tensor, generator: torch.Generator) -> Tensor:
    """``expression`` ``[N, 7]`` with eyes, brows and mouth drawn uniformly over their ranges; the head pose kept."""
    from reference_model.world import EXPRESSION_NAMES, FACE_PARAMS, random_expression

    face = [EXPRESSION_NAMES.index(name) for name in FACE_PARAMS]
    out = expression.clone()
    out[:, face] = random_expression(len(expression), generator)[:, face]
    return out


def render_world_clips(
    clips: int,
    frames: int,
    seed: int = 0,
    split: str = "train",
    size: int = 64,
    chunk: int = 64,
    motion_config: MotionConfig | None = None,
    references: int = 4,
) -> dict[str, Tensor]:
    """``clips`` self-reenactment clips of ``split`` identities, driven by ``motion_config``'s motion.

    ``videos`` uint8 ``[N, 3, T, size, size]``, ``motion`` ``[N, T, 7]``, and ``regions`` and
    ``eye_regions`` uint8 ``[N, 1, T, size, size]``: the masks of ``world.expression_regions``
    for every expression part, and for the eyes alone. ``reference_videos`` uint8
    ``[N, 3, references, size, size]``: each clip's face at the head pose of random frames of
    the clip, with eyes, brows and mouth drawn uniformly (``world.random_expression``),
    from a generator of their own, so the clips are the same whatever ``references`` is.
    """
    from reference_model.world import (
        expression_regions,
        identity_params,
        render,
        render_video,
        sample_ids,
    )

    generator = torch.Generator().manual_seed(seed)
    other = torch.Generator().manual_seed(seed + 1_000_003)
    videos, motions, regions, eye_regions, refs = [], [], [], [], []
    for start in range(0, clips, chunk):
        n = min(chunk, clips - start)
        identity = identity_params(sample_ids(split, n, generator))
        motion = driving_motion(n, frames, generator, config=motion_config)
        video = render_video(identity, motion, size)
        per_frame = identity.repeat_interleave(frames, dim=0), motion.reshape(n * frames, -1)
        videos.append((video * 255).round().to(torch.uint8))
        motions.append(motion)
        for masks, params in ((regions, {}), (eye_regions, {"params": ("eye_open",)})):
            mask = expression_regions(*per_frame, size, **params)
            masks.append(mask.view(n, frames, 1, size, size).transpose(1, 2).to(torch.uint8))
        at = torch.randint(0, frames, (n, references), generator=other)
        expression = motion[torch.arange(n)[:, None], at].reshape(n * references, -1)
        frame = render(
            identity.repeat_interleave(references, dim=0),
            with_random_face(expression, other),
            size,
        )
        frame = frame.view(n, references, 3, size, size).transpose(1, 2)
        refs.append((frame * 255).round().to(torch.uint8))
    return {
        "videos": torch.cat(videos),
        "motion": torch.cat(motions),
        "regions": torch.cat(regions),
        "eye_regions": torch.cat(eye_regions),
        "reference_videos": torch.cat(refs),
    }


def encode_world_clips(
    rendered: dict[str, Tensor],
    encode: Callable[[Tensor], Tensor],
    extract: Callable[[Tensor], Tensor] | None = None,
    chunk: int = 32,
) -> dict[str, Tensor]:
    """The training pool of ``render_world_clips``' output: ``latents`` ``[N, C, T, h, w]``,
    ``expression`` features ``[N, T, E]`` and, when rendered, ``regions`` and ``eye_regions``
    ``[N, 1, T, h, w]`` (the share of each latent pixel's footprint that expression, or the eyes
    alone, move) and ``reference_latents`` ``[N, C, R, h, w]``.

    ``extract=None`` uses the world's true expression/pose parameters as features: the
    expression extractor is trained to regress exactly these, so this trains the DiT as if
    with a perfect extractor and keeps the extractor out of the training loop.
    """
    videos, motion = rendered["videos"], rendered["motion"]
    latents, features = [], []
    with torch.no_grad():
        for start in range(0, videos.shape[0], chunk):
            video = videos[start : start + chunk].float() / 255
            latents.append(encode(video))
            features.append(motion[start : start + chunk] if extract is None else extract(video))
    pool = {"latents": torch.cat(latents), "expression": torch.cat(features)}
    if "reference_videos" in rendered:
        with torch.no_grad():
            pool["reference_latents"] = torch.cat(
                [encode(refs.float() / 255) for refs in rendered["reference_videos"].split(chunk)]
            )
    size = pool["latents"].shape[-1]
    for key in ("regions", "eye_regions"):
        if key in rendered:
            pool[key] = torch.nn.functional.adaptive_avg_pool3d(
                rendered[key].float(), (videos.shape[2], size, size)
            )
    return pool
