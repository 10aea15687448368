"""How hard acceleration is on a model: the per-step change of its velocity along a sampling path.

TeaCache (Liu et al. 2024, arXiv 2411.19108) skips steps where the model output changes
little from the previous step; MagCache (Ma et al. 2025, arXiv 2506.09045) watches the ratio
of successive output magnitudes. Along a straight, nearly deterministic path both stay flat
and any accelerator looks free; the profiles say which regime a testbed is in. They are
measured on the velocity ``sample`` integrates (the guided one under CFG), not tuned.
"""

from __future__ import annotations

import itertools
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
    """A ``sample`` callback that keeps each step's velocity; ``profile()`` then reads the path.

    Sliding windows' velocities are concatenated along the frames (an overlap counts in each
    window that holds it), so the profile covers the whole video.
    """

    def __init__(self) -> None:
        self.sigmas: list[float] = []
        self.velocities: list[Tensor] = []

    def __call__(self, end: StepEnd) -> None:
        self.sigmas.append(end.sigma)
        self.velocities.append(torch.cat([v.double() for v in end.velocities.values()], dim=2))

    def profile(self) -> VelocityProfile:
        """Per step i >= 1: relative L1 change and magnitude ratio, averaged over the batch."""
        changes, ratios = [], []
        for previous, v in itertools.pairwise(self.velocities):
            dims = tuple(range(1, v.ndim))
            change = (v - previous).abs().mean(dims) / previous.abs().mean(dims).clamp_min(1e-12)
            norms = v.norm(dim=1) / previous.norm(dim=1).clamp_min(1e-12)
            changes.append(float(change.mean()))
            ratios.append(float(norms.mean()))
        return VelocityProfile(np.asarray(self.sigmas[1:]), np.asarray(changes), np.asarray(ratios))


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
