"""A small layered toy denoiser (a stand-in for a video DiT in tests and benchmarks), and the ``toy`` model.

The ``toy`` model is that denoiser, untrained, with a toy world that renders coloured discs."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from flashbench.denoiser import Cond, run_layers
from flashbench.models.base import WORLD_SPLITS, CaseInputs, CaseSpec, ModelSpec


def sigma_features(sigma: Tensor, dim: int) -> Tensor:
    """Sinusoidal features of sigma (as a DiT's timestep embedding)."""
    half = dim // 2
    freqs = torch.exp(-math.log(1000.0) * torch.arange(half, dtype=torch.float32) / half)
    angles = 1000.0 * sigma.float()[:, None] * freqs[None]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class ToyBlock(nn.Module):
    """A residual block modulated by sigma, optionally mixing neighbouring frames."""

    def __init__(self, dim: int, temporal: bool) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False)
        self.modulation = nn.Linear(dim, 2 * dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.temporal = (
            nn.Conv1d(dim, dim, 3, padding=1, padding_mode="replicate") if temporal else None
        )

    def forward(self, h: Tensor, ctx: dict) -> Tensor:
        scale, bias = self.modulation(ctx["time"]).chunk(2, dim=-1)
        y = self.norm(h) * (1 + scale[:, None, None, None]) + bias[:, None, None, None]
        h = h + self.mlp(y)
        if self.temporal is not None:
            b, t, hh, ww, d = h.shape
            seq = h.permute(0, 2, 3, 4, 1).reshape(b * hh * ww, d, t)
            mixed = self.temporal(seq).reshape(b, hh, ww, d, t).permute(0, 4, 1, 2, 3)
            h = h + 0.1 * mixed
        return h


class ToyDenoiser(nn.Module):
    """Layered denoiser on ``[B, C, T, H, W]``: per-pixel embedding, residual blocks, linear head.

    ``temporal=False`` makes it frame-local (each frame's velocity depends on that frame alone),
    which the windowing property tests rely on. An optional temporal condition ``"motion"``
    (``[B, T, motion_dim]``) is added per frame.
    """

    flops_follow_shapes = True  # its passes cost what their inputs' shapes say (flashbench.flops)

    def __init__(
        self,
        channels: int = 4,
        dim: int = 32,
        depth: int = 4,
        temporal: bool = True,
        motion_dim: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        self.time = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.proj_in = nn.Linear(channels, dim)
        self.motion = nn.Linear(motion_dim, dim) if motion_dim else None
        self.blocks = nn.ModuleList(ToyBlock(dim, temporal) for _ in range(depth))
        self.proj_out = nn.Linear(dim, channels)
        torch.random.set_rng_state(generator_state)
        self.dim = dim

    def embed(self, x: Tensor, sigma: Tensor, cond: Cond) -> tuple[Tensor, dict]:
        h = self.proj_in(x.permute(0, 2, 3, 4, 1))
        if self.motion is not None and "motion" in cond.temporal:
            h = h + self.motion(cond.temporal["motion"])[:, :, None, None]
        return h, {"time": self.time(sigma_features(sigma, self.dim))}

    def head(self, h: Tensor, ctx: dict) -> Tensor:
        return self.proj_out(h).permute(0, 4, 1, 2, 3)

    def forward(self, x: Tensor, sigma: Tensor, cond: Cond) -> Tensor:
        return run_layers(self, x, sigma, cond)


# ---- the toy portrait model (registry entry ``toy``) --------------------------------------

TOY_MAX_DIM = 1024
TOY_MAX_DEPTH = 64


class ToyPortraitDenoiser(ToyDenoiser):
    """The toy denoiser conditioned on a reference latent (static) and expression (temporal)."""

    def embed(self, x: Tensor, sigma: Tensor, cond: Cond) -> tuple[Tensor, dict]:
        reference = cond.static.get("reference")
        if reference is not None:
            x = x + 0.5 * reference[:, :, None]
        h = self.proj_in(x.permute(0, 2, 3, 4, 1))
        if self.motion is not None and "expression" in cond.temporal:
            h = h + self.motion(cond.temporal["expression"])[:, :, None, None]
        return h, {"time": self.time(sigma_features(sigma, self.dim))}


def _uniform(seed: int, *shape: int) -> Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


class ToyModel:
    """A toy world (a disc of the identity's colour on its background, moved by the driving motion) and an untrained denoiser."""

    name = "toy"
    fps = 8
    splits = WORLD_SPLITS
    downsample = 4
    cond_keys = ("reference", "expression")

    def __init__(self, dim: int = 32, depth: int = 3) -> None:
        check_toy_args(dim, depth)
        self.denoiser = ToyPortraitDenoiser(
            channels=3, dim=dim, depth=depth, temporal=True, motion_dim=3, seed=0
        ).eval()

    def render(self, identity: int, motion: Tensor, resolution: int) -> Tensor:
        """Frames ``[T, 3, R, R]``: the identity's disc displaced by motion[:, :2], radius by motion[:, 2]."""
        colours = _uniform(identity, 2, 3)
        grid = (torch.arange(resolution, dtype=torch.float64) + 0.5) / resolution - 0.5
        yy, xx = torch.meshgrid(grid, grid, indexing="ij")
        dx, dy, mouth = (motion[:, i, None, None] for i in range(3))
        inside = ((xx - 0.2 * dx) ** 2 + (yy - 0.2 * dy) ** 2 < (0.25 + 0.05 * mouth) ** 2).double()
        return (
            colours[1, None, :, None, None] * (1 - inside[:, None])
            + colours[0, None, :, None, None] * inside[:, None]
        ).float()

    def motion(self, driving_seed: int, frames: int) -> Tensor:
        """Smooth driving motion ``[T, 3]`` in [-1, 1]: sinusoids with seeded frequencies and phases."""
        params = _uniform(1_000_003 + driving_seed, 2, 3)
        t = torch.arange(frames, dtype=torch.float64)[:, None] / self.fps
        return torch.sin(2 * torch.pi * (0.2 + 0.8 * params[0]) * t + 2 * torch.pi * params[1])

    def latent_shape(self, case: CaseSpec) -> tuple[int, ...]:
        """The latent ``case`` samples, without preparing it (the memory planner's input)."""
        if case.resolution % self.downsample:
            raise ValueError(
                f"resolution={case.resolution} must be a multiple of {self.downsample} for the toy model"
            )
        size = case.resolution // self.downsample
        return (1, 3, case.frames, size, size)

    def prepare(self, case: CaseSpec) -> CaseInputs:
        shape = self.latent_shape(case)
        motion = self.motion(case.driving_seed, case.frames)
        still = torch.zeros(1, 3, dtype=torch.float64)
        reference = self.render(case.identity, still, case.resolution)[0]
        truth = self.render(case.identity, motion, case.resolution)
        driving = (
            truth
            if case.driving_identity == case.identity
            else self.render(case.driving_identity, motion, case.resolution)
        )
        reference_latent = nn.functional.avg_pool2d(reference[None] * 2 - 1, self.downsample)
        cond = Cond(
            static={"reference": reference_latent},
            temporal={"expression": motion.float()[None]},
            frames_per_latent=1,
        )
        return CaseInputs(cond, shape, reference, truth, driving)

    def decode(self, latents: Tensor) -> Tensor:
        video = latents[0].permute(1, 0, 2, 3).float()
        video = nn.functional.interpolate(video, scale_factor=self.downsample, mode="nearest")
        return ((video + 1) / 2).clamp(0, 1)

    def identity_encoder(self) -> Callable[[Tensor], Tensor]:
        """Pooled colours centred per frame: a stand-in identity embedding for the toy world."""

        def encode(frames: Tensor) -> Tensor:
            pooled = nn.functional.adaptive_avg_pool2d(frames, 4).flatten(1)
            return pooled - pooled.mean(dim=1, keepdim=True)

        return encode

    @staticmethod
    def _disc(frames: Tensor) -> Tensor:
        """Per frame: disc centre (x, y, in units of the motion) and radius, from pixels unlike the corner's."""
        background = frames[:, :, :1, :1]
        mask = ((frames - background).abs().sum(1) > 0.1).double()
        size = frames.shape[-1]
        grid = (torch.arange(size, dtype=torch.float64) + 0.5) / size - 0.5
        area = mask.sum((1, 2)).clamp(min=1)
        cx = (mask * grid[None, None, :]).sum((1, 2)) / area
        cy = (mask * grid[None, :, None]).sum((1, 2)) / area
        return torch.stack([cx * 5, cy * 5, (area / size**2).sqrt()], dim=1)

    def expression_extractor(self) -> Callable[[Tensor], Tensor]:
        """The toy world's expression: the disc's radius (its "mouth")."""
        return lambda frames: self._disc(frames)[:, 2:]

    def pose_extractor(self) -> Callable[[Tensor], Tensor]:
        """The toy world's head pose: the disc's centre."""
        return lambda frames: self._disc(frames)[:, :2]

    def weights(self) -> dict[str, str]:
        state = self.denoiser.state_dict()
        digest = hashlib.sha256()
        for key in sorted(state):
            digest.update(key.encode())
            digest.update(state[key].detach().contiguous().numpy().tobytes())
        return {"toy-denoiser(seed=0)": digest.hexdigest()}


def check_toy_args(dim: int = 32, depth: int = 3) -> ModelSpec:
    """The toy model's spec, or a ValueError if ``dim``/``depth`` cannot build it."""
    for name, value, high in (("dim", dim, TOY_MAX_DIM), ("depth", depth, TOY_MAX_DEPTH)):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
            raise ValueError(
                f"{name}={value!r} must be an integer in [1, {high}] for the toy model"
            )
    if dim % 2:
        # sigma features are sin/cos pairs: an odd width would not match the time embedding.
        raise ValueError(f"dim={dim} must be even for the toy model; use {dim + 1}")
    return ModelSpec(
        ToyModel.splits,
        ToyModel.fps,
        ToyModel.cond_keys,
        resolution_step=ToyModel.downsample,
        provides=("identity_encoder", "expression_extractor", "pose_extractor"),
    )
