"""Seam discontinuity: temporal change across window boundaries relative to within windows.

A long video sampled in overlapping windows can jump where one window hands over to the
next. With d_t = mean |x_t - x_{t-1}| (over channels and pixels), the score is

    ratio = mean of d_t over boundary transitions / mean of d_t over all other transitions.

About 1 means the seams are invisible (the blending works); well above 1 means visible
jumps. A boundary `b` names the transition from frame b-1 to frame b (1 <= b < T); the
caller passes the frames where windows start or end (the windowing knows them).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchmetrics import Metric

from metrics.inputs import check_video

__all__ = ["SeamDiscontinuity", "temporal_change"]


def temporal_change(videos: Tensor) -> Tensor:
    """[B, 3, T, H, W] -> [B, T - 1]: mean absolute change from frame t-1 to frame t (index t-1)."""
    return (videos[:, :, 1:].double() - videos[:, :, :-1].double()).abs().mean(dim=(1, 3, 4))


class SeamDiscontinuity(Metric):
    """Temporal change at window boundaries over temporal change elsewhere (1 = seamless).

    `update(videos [B, 3, T, H, W], boundaries)`; `compute()` returns {"ratio",
    "boundary_change", "interior_change"}; ratio is NaN if no boundary was ever given.
    """

    higher_is_better = False
    is_differentiable = False
    full_state_update = False
    backend_name = "temporal-l1"

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        for name in ("boundary_total", "boundary_count", "interior_total", "interior_count"):
            self.add_state(name, torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def backend_info(self) -> dict:
        return {"backend": self.backend_name, "weights": {}}

    def update(self, videos: Tensor, boundaries: Sequence[int]) -> None:
        frames = check_video(videos).shape[2]
        if frames < 2:
            raise ValueError(
                f"videos need at least 2 frames to measure temporal change, got {frames}"
            )
        boundaries = sorted(set(int(b) for b in boundaries))
        outside = [b for b in boundaries if not 1 <= b < frames]
        if outside:
            raise ValueError(
                f"boundaries {outside} outside 1..{frames - 1}: boundary b is the step from frame b-1 to b"
            )
        change = temporal_change(videos).to(self.device)
        at_boundary = torch.zeros(frames - 1, dtype=torch.bool, device=self.device)
        at_boundary[[b - 1 for b in boundaries]] = True
        self.boundary_total = self.boundary_total + change[:, at_boundary].sum()
        self.boundary_count = self.boundary_count + change[:, at_boundary].numel()
        self.interior_total = self.interior_total + change[:, ~at_boundary].sum()
        self.interior_count = self.interior_count + change[:, ~at_boundary].numel()

    def compute(self) -> dict[str, Tensor]:
        if self.interior_count == 0 and self.boundary_count == 0:
            raise ValueError("SeamDiscontinuity.compute() called before update()")
        boundary = self.boundary_total / self.boundary_count
        interior = self.interior_total / self.interior_count
        return {
            "ratio": boundary / interior,
            "boundary_change": boundary,
            "interior_change": interior,
        }
