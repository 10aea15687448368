"""Flow-matching sigma schedules (Esser et al. 2024, arXiv 2403.03206, Sec. 5.3.2: timestep shift)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

# More steps than any schedule needs: a typo (10**12) is refused, not sampled for ever.
MAX_STEPS = 10_000


def shift_sigmas(sigmas: Tensor, shift: float) -> Tensor:
    """Resolution-dependent shift sigma' = s * sigma / (1 + (s - 1) * sigma) (SD3, Eq. 23)."""
    return shift * sigmas / (1 + (shift - 1) * sigmas)


def flow_match_sigmas(steps: int = 30, shift: float = 5.0, train_timesteps: int = 1000) -> Tensor:
    """The sigmas of Wan / FlashPortrait sampling: ``steps + 1`` values from 1 down to 0.

    Follows diffusers' ``FlowMatchEulerDiscreteScheduler.set_timesteps`` exactly, including its
    quirk that the smallest training sigma is shifted before the inference sigmas are shifted
    again, so that a sampler here and a diffusers pipeline walk the same noise levels.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_STEPS:
        raise ValueError(f"steps={steps!r} must be an integer in [1, {MAX_STEPS}]; Wan uses 30")
    if not math.isfinite(shift) or shift <= 0:
        raise ValueError(
            f"shift={shift!r} must be a positive finite number; Wan/FlashPortrait use 5.0"
        )
    if train_timesteps < 1:
        raise ValueError(f"train_timesteps={train_timesteps!r} must be >= 1; Wan uses 1000")
    train = torch.linspace(1, train_timesteps, train_timesteps, dtype=torch.float64).flip(0)
    train_sigmas = shift_sigmas(train / train_timesteps, shift)
    t_max, t_min = train_sigmas[0] * train_timesteps, train_sigmas[-1] * train_timesteps
    timesteps = torch.linspace(float(t_max), float(t_min), steps, dtype=torch.float64)
    sigmas = shift_sigmas(timesteps / train_timesteps, shift)
    return torch.cat([sigmas, sigmas.new_zeros(1)]).to(torch.float32)


def check_sigmas(sigmas: Tensor) -> None:
    if not isinstance(sigmas, Tensor) or sigmas.ndim != 1 or sigmas.numel() < 2:
        raise ValueError(
            "sigmas must be a 1-D tensor of at least 2 noise levels (steps + 1), got "
            f"{getattr(sigmas, 'shape', type(sigmas).__name__)}; build one with flow_match_sigmas(steps)"
        )
    if not torch.isfinite(sigmas).all():
        raise ValueError(
            f"sigmas contain NaN or Inf: {sigmas.tolist()}; rebuild them with flow_match_sigmas"
        )
    if (sigmas[1:] > sigmas[:-1]).any():
        raise ValueError("sigmas must be non-increasing (from noise to data)")
