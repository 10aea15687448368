"""The brightness metric: the mean pixel value of each generated frame."""

from __future__ import annotations

from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat


class MeanBrightness(Metric):
    """Mean pixel value of each frame of videos ``[B, 3, T, H, W]`` in [0, 1]; float64 per-frame states."""

    is_differentiable = False
    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("scores", default=[], dist_reduce_fx="cat")

    def backend_info(self) -> dict:
        return {"backend": "mean-pixel", "weights": {}}

    def update(self, generated: Tensor) -> None:
        self.scores.append(generated.double().mean(dim=(1, 3, 4)).flatten())

    def compute(self) -> dict[str, Tensor]:
        scores = dim_zero_cat(self.scores)
        return {"mean": scores.mean(), "per_frame": scores}
