"""A windowing: the video's two halves, sampled side by side."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from flashbench.windowing import Window


@dataclass(frozen=True)
class Halves:
    """Two windows, the first and the second half of the video, side by side (no overlap, no blending)."""

    name = "halves"

    def windows(self, frames: int, step: int) -> list[Window]:
        return [(0, frames)] if frames < 2 else [(0, frames // 2), (frames // 2, frames)]

    def weights(self, frames: int, step: int) -> list[Tensor]:
        return [
            torch.ones(stop - start, dtype=torch.float64)
            for start, stop in self.windows(frames, step)
        ]
