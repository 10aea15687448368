"""A small layered toy denoiser: a stand-in for a video DiT in tests and benchmarks."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from flashbench.denoiser import Cond, run_layers


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
