"""How hard acceleration is on a model: the per-step change of its velocity along a sampling path.

TeaCache (Liu et al. 2024, arXiv 2411.19108) skips steps where the model output changes
little from the previous step; MagCache (Ma et al. 2025, arXiv 2506.09045) watches the ratio
of successive output magnitudes. Along a straight, nearly deterministic path both stay flat
and any accelerator looks free; the profiles say which regime a testbed is in. They are
measured on the velocity ``sample`` integrates (the guided one under CFG), not tuned.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from flashbench.denoiser import Cond, Denoiser
from flashbench.sampling import Guidance, StepEnd, sample


@dataclass(frozen=True)
class VelocityProfile:
    """Per step i >= 1 of an Euler path: ``sigmas[i]``, the relative L1 change of v from step i-1,
    and the magnitude ratio mean over tokens of ||v_i|| / ||v_(i-1)|| (channel norms per position)."""

    sigmas: np.ndarray
    relative_change: np.ndarray
    magnitude_ratio: np.ndarray


class VelocityRecorder:
    """A ``sample`` callback that measures each step's velocity change; ``profile()`` reads it.

    Only the previous step's velocity is kept, so recording costs one latent of memory.
    Sliding windows' velocities are concatenated along the frames (an overlap counts in each
    window that holds it), so the profile covers the whole video.
    """

    def __init__(self) -> None:
        self.sigmas: list[float] = []
        self.changes: list[float] = []
        self.ratios: list[float] = []
        self.previous: Tensor | None = None

    def __call__(self, end: StepEnd) -> None:
        v = torch.cat([v.double() for v in end.velocities.values()], dim=2)
        if self.previous is not None:
            previous, dims = self.previous, tuple(range(1, v.ndim))
            change = (v - previous).abs().mean(dims) / previous.abs().mean(dims).clamp_min(1e-12)
            norms = v.norm(dim=1) / previous.norm(dim=1).clamp_min(1e-12)
            self.sigmas.append(end.sigma)
            self.changes.append(float(change.mean()))
            self.ratios.append(float(norms.mean()))
        self.previous = v

    def profile(self) -> VelocityProfile:
        """Per step i >= 1: relative L1 change and magnitude ratio, averaged over the batch."""
        return VelocityProfile(
            np.asarray(self.sigmas), np.asarray(self.changes), np.asarray(self.ratios)
        )

    def records(self) -> list[dict[str, float | int]]:
        """The profile as JSON records, one per step i >= 1 (a run directory's ``regime/`` files)."""
        return [
            {"step": i + 1, "sigma": sigma, "relative_change": change, "magnitude_ratio": ratio}
            for i, (sigma, change, ratio) in enumerate(
                zip(self.sigmas, self.changes, self.ratios, strict=True)
            )
        ]


@torch.no_grad()
def velocity_profile(
    model: Denoiser,
    noise: Tensor,
    sigmas: Tensor,
    cond: Cond | None = None,
    guidance: Guidance | None = None,
) -> VelocityProfile:
    """The velocity change profile of one full-window Euler path, averaged over the batch."""
    recorder = VelocityRecorder()
    sample(model, noise, sigmas, cond, guidance=guidance, callback=recorder)
    return recorder.profile()
