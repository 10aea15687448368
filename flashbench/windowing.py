"""Windowings: how a long latent video is split into windows and how overlaps are blended.

Every windowing gives, at each denoising step, a list of windows ``(start, stop)`` in latent
frames and one weight per window frame; the weights of each frame sum to one. Convention: where
two windows overlap by a single frame, FlashPortrait's linear blend j/(L-1) is 0/0, so that
frame takes weight 0.5 from each window (``Sliding.weights``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

Window = tuple[int, int]


@dataclass(frozen=True)
class Full:
    """One window over the whole video (the baseline)."""

    name = "full"

    def windows(self, frames: int, step: int) -> list[Window]:
        return [(0, frames)]

    def weights(self, frames: int, step: int) -> list[Tensor]:
        return [torch.ones(frames, dtype=torch.float64)]


@dataclass(frozen=True)
class Sliding:
    """Overlapping windows with weighted blending.

    ``weighting="linear"``: FlashPortrait (Ma et al. 2025, arXiv 2512.16900, Sec. 3.3) blends the
    L overlapping frames of window i against window i-1 with j/(L-1), j = 0..L-1, except at
    step 0 where the later window overwrites. An overlap of one frame (L = 1, where j/(L-1) is
    0/0) blends the two windows with weight 0.5 each, the midpoint of the ramp it would be part
    of. ``weighting="uniform"``: count-average
    (Gen-L-Video, Wang et al. 2023, arXiv 2305.18264). ``shift`` moves the window grid by that
    many frames each step (time-aware position shift, Sonic, Ji et al. 2024, arXiv 2411.16331);
    the first window stays at 0 and the last is re-anchored to ``[N - window, N)``.
    """

    window: int = 16
    overlap: int = 4
    weighting: Literal["linear", "uniform"] = "linear"
    shift: int = 0

    name = "sliding"

    def __post_init__(self) -> None:
        if not isinstance(self.window, int) or self.window < 1:
            raise ValueError(f"window={self.window!r} must be a positive number of latent frames")
        if not isinstance(self.overlap, int) or self.overlap < 0:
            raise ValueError(f"overlap={self.overlap!r} must be >= 0 latent frames")
        if self.overlap >= self.window:
            raise ValueError(
                f"overlap={self.overlap} must be smaller than window={self.window}; "
                f"use overlap <= {self.window - 1}"
            )
        if self.weighting not in ("linear", "uniform"):
            raise ValueError(f"weighting={self.weighting!r} must be 'linear' or 'uniform'")
        if not isinstance(self.shift, int) or self.shift < 0:
            raise ValueError(f"shift={self.shift!r} must be a non-negative number of latent frames")

    @property
    def stride(self) -> int:
        return self.window - self.overlap

    def windows(self, frames: int, step: int) -> list[Window]:
        if frames <= self.window:
            return [(0, frames)]
        last = frames - self.window
        offset = (step * self.shift) % self.stride
        starts = {0, last, *range(offset, last, self.stride)}
        return [(s, s + self.window) for s in sorted(starts)]

    def weights(self, frames: int, step: int) -> list[Tensor]:
        windows = self.windows(frames, step)
        if self.weighting == "uniform":
            count = torch.zeros(frames, dtype=torch.float64)
            for start, stop in windows:
                count[start:stop] += 1
            return [1.0 / count[start:stop] for start, stop in windows]
        weights: list[Tensor] = []
        covered = 0
        for start, stop in windows:
            w = torch.ones(stop - start, dtype=torch.float64)
            overlap = max(0, covered - start)
            if overlap and step > 0:
                ramp = (
                    torch.arange(overlap, dtype=torch.float64) / (overlap - 1)
                    if overlap > 1
                    else torch.full((1,), 0.5, dtype=torch.float64)
                )
            else:
                ramp = torch.ones(overlap, dtype=torch.float64)
            w[:overlap] = ramp
            for (s, _), prev in zip(windows, weights, strict=False):
                lo, hi = max(start, s), min(covered, s + len(prev))
                if lo < hi:
                    prev[lo - s : hi - s] *= 1 - ramp[lo - start : hi - start]
            weights.append(w)
            covered = max(covered, stop)
        return weights


def blend(
    outputs: list[Tensor], windows: list[Window], weights: list[Tensor], like: Tensor
) -> Tensor:
    """Sum of each window's output times its per-frame weights."""
    if len(windows) == 1 and windows[0] == (0, like.shape[2]):
        return outputs[0]
    out = torch.zeros_like(like)
    for x, (start, stop), w in zip(outputs, windows, weights, strict=True):
        out[:, :, start:stop] += x * w.to(x.dtype).view(1, 1, -1, 1, 1)
    return out
