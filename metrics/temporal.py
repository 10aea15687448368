"""Temporal stability: a video's frame-to-frame change relative to its reference video's.

With c_t = mean over channels and pixels of (x_t - x_{t-1})^2, the mean squared change from
frame t-1 to frame t, a clip scores

    ratio = sum_t c_t(generated) / sum_t c_t(reference)

against the video it should move like: the ground truth in self-reenactment, the driving
render in cross reenactment. 1: it changes as much as the reference; 0: frozen; above 1:
flicker or jitter. The change is squared, not absolute, because then per-frame i.i.d. noise
of standard deviation sigma added to the reference adds exactly 2 sigma^2 to E[c_t] (the
cross term has mean zero): ratio - 1 = 2 sigma^2 / mean_t c_t(reference) in expectation, and

    noise_std = sqrt(max(c(generated) - c(reference), 0) / 2)

recovers sigma, an excess flicker in pixel units (of [0, 1]). Mean absolute change (as in
metrics/seams.py) has no such closed form: E|d + n| is a folded normal.

On the static background (a mask of the pixels where the head never is; the caller knows
where) the reference hardly changes at all, so a ratio there is undefined: the background
figure is its `noise_std`, the flicker on pixels that should be still.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from metrics.inputs import check_video

__all__ = ["TemporalStability", "squared_change"]

_TRANSITION_STATES = (
    "frame_index",
    "generated",
    "reference",
    "background_generated",
    "background_reference",
    "background_weight",
)


def squared_change(videos: Tensor, weight: Tensor | None = None) -> Tensor:
    """[B, 3, T, H, W] -> [B, T - 1]: squared change from frame t-1 to t summed over channels and pixels.

    With `weight` [B, T - 1, H, W] each pixel's change is weighted (a background mask).
    """
    change = (videos[:, :, 1:].double() - videos[:, :, :-1].double()).square().sum(dim=1)
    if weight is not None:
        change = change * weight
    return change.sum(dim=(2, 3))


class TemporalStability(Metric):
    """Mean squared frame-to-frame change of generated videos over that of their reference videos (1 = as stable).

    `update(generated, reference [B, 3, T, H, W], background=None)`; `background` is a mask
    [B, H, W] or [B, T, H, W] (bool, or weights in [0, 1]) of the static background. A
    transition t-1 -> t counts a pixel as background with weight mask_{t-1} * mask_t.

    `compute()` returns, over every clip given, {"ratio", "change", "reference_change",
    "noise_std"} for the whole frame and {"background_change", "background_reference_change",
    "background_noise_std"} on the background (NaN if no mask was given); per clip
    "per_clip_ratio" and "per_clip_background_noise_std" [N]; per transition index
    "per_frame_ratio" and "per_frame_background_noise_std" [T_max - 1] (index t-1 is the
    step from frame t-1 to t). Changes are per channel and pixel, in squared [0, 1] units.
    """

    higher_is_better = None  # 1 is best: below is frozen, above is flicker
    is_differentiable = False
    full_state_update = False
    backend_name = "temporal-l2"

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        # Per-transition sums (cat states) keep per-clip and per-frame figures exact under DDP.
        for name in _TRANSITION_STATES:
            self.add_state(name, default=[], dist_reduce_fx="cat")
        self.add_state("clip_transitions", default=[], dist_reduce_fx="cat")

    def backend_info(self) -> dict:
        return {"backend": self.backend_name, "weights": {}}

    def update(
        self, generated: Tensor, reference: Tensor, background: Tensor | None = None
    ) -> None:
        check_video(generated, "generated")
        check_video(reference, "reference")
        if generated.shape != reference.shape:
            raise ValueError(
                f"generated {tuple(generated.shape)} and reference {tuple(reference.shape)} must have one shape; "
                "resize the reference video to the generated one"
            )
        batch, _, frames, height, width = generated.shape
        if frames < 2:
            raise ValueError(f"videos need at least 2 frames to measure change, got {frames}")
        pixels = 3 * height * width
        weight = None if background is None else self._transition_weight(background, generated)
        values = {
            "generated": squared_change(generated) / pixels,
            "reference": squared_change(reference) / pixels,
        }
        if weight is None:
            nothing = torch.zeros(batch, frames - 1, dtype=torch.float64)
            values.update(
                background_generated=nothing,
                background_reference=nothing,
                background_weight=nothing,
            )
        else:
            values.update(
                background_generated=squared_change(generated, weight),
                background_reference=squared_change(reference, weight),
                background_weight=3 * weight.sum(dim=(2, 3)),
            )
        values["frame_index"] = torch.arange(frames - 1).repeat(batch, 1)
        for name, value in values.items():
            getattr(self, name).append(value.flatten().to(self.device))
        self.clip_transitions.append(torch.full((batch,), frames - 1, device=self.device))

    @staticmethod
    def _transition_weight(background: Tensor, videos: Tensor) -> Tensor:
        batch, _, frames, height, width = videos.shape
        mask = torch.as_tensor(background).double()
        if mask.ndim == 3:
            mask = mask[:, None].expand(-1, frames, -1, -1)
        if mask.shape != (batch, frames, height, width):
            raise ValueError(
                f"background must be [B, H, W] or [B, T, H, W] = [{batch}, {height}, {width}] or "
                f"[{batch}, {frames}, {height}, {width}], got {tuple(background.shape)}"
            )
        if mask.min() < 0 or mask.max() > 1:
            raise ValueError(
                f"background weights must lie in [0, 1], got {mask.min():.3g}..{mask.max():.3g}"
            )
        return (mask[:, 1:] * mask[:, :-1]).to(videos.device)

    def compute(self) -> dict[str, Tensor]:
        if isinstance(self.clip_transitions, list) and not self.clip_transitions:
            raise ValueError("TemporalStability.compute() called before update()")
        s = {name: dim_zero_cat(getattr(self, name)).double() for name in _TRANSITION_STATES}
        lengths = dim_zero_cat(self.clip_transitions).long().tolist()
        index = s.pop("frame_index").long()
        per_frame = {
            name: torch.zeros(
                int(index.max()) + 1, dtype=torch.float64, device=value.device
            ).index_add_(0, index, value)
            for name, value in s.items()
        }
        per_clip = {
            name: torch.stack([part.sum() for part in value.split(lengths)])
            for name, value in s.items()
        }
        total = {name: value.sum() for name, value in s.items()}
        background_change = total["background_generated"] / total["background_weight"]
        background_reference = total["background_reference"] / total["background_weight"]
        return {
            "ratio": total["generated"] / total["reference"],
            "change": total["generated"] / len(index),
            "reference_change": total["reference"] / len(index),
            "noise_std": _noise_std(total["generated"] - total["reference"], len(index)),
            "background_change": background_change,
            "background_reference_change": background_reference,
            "background_noise_std": _noise_std(
                total["background_generated"] - total["background_reference"],
                total["background_weight"],
            ),
            "per_clip_ratio": per_clip["generated"] / per_clip["reference"],
            "per_clip_background_noise_std": _noise_std(
                per_clip["background_generated"] - per_clip["background_reference"],
                per_clip["background_weight"],
            ),
            "per_frame_ratio": per_frame["generated"] / per_frame["reference"],
            "per_frame_background_noise_std": _noise_std(
                per_frame["background_generated"] - per_frame["background_reference"],
                per_frame["background_weight"],
            ),
        }


def _noise_std(excess: Tensor, count: Tensor | int) -> Tensor:
    """sqrt(max(excess / count, 0) / 2): the i.i.d. per-frame noise std that adds this much change."""
    return (torch.as_tensor(excess) / count).clamp(min=0.0).div(2.0).sqrt()
