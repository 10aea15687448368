"""Euler with fewer steps: the honest floor every accelerator must beat at equal NFE."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from flashbench.schedule import shift_sigmas
from flashbench.steppers.base import Facts, Stepper
from flashbench.steppers.layered import check_positive_int


def unshift_sigmas(sigmas: Tensor, shift: float) -> Tensor:
    """Inverse of ``shift_sigmas``: t = sigma / (s - (s - 1) sigma)."""
    return sigmas / (shift - (shift - 1) * sigmas)


def resample_sigmas(sigmas: Tensor, steps: int, shift: float | None = None) -> Tensor:
    """The schedule at ``steps`` steps: its ``len - 1`` noise levels re-spaced in step fraction, then its last sigma.

    The noise levels before the final one are interpolated linearly in step fraction, after
    undoing ``shift`` when it is given (flow-matching schedules are linear in the unshifted
    timestep, so ``shift`` reproduces ``flow_match_sigmas(steps, shift)`` exactly); without
    ``shift`` the shifted sigmas themselves are interpolated (same start, end and overall
    density, but piecewise linear between the given points).
    """
    check_positive_int(steps, "steps", "use steps >= 1 (e.g. 6 to match an accelerator's NFE)")
    if shift is not None and (not math.isfinite(shift) or shift <= 0):
        raise ValueError(
            f"shift={shift!r} must be a positive finite number (Wan/FlashPortrait use 5.0) or None"
        )
    given = len(sigmas) - 1
    if steps == given:
        return sigmas
    if given < 2:
        raise ValueError(
            f"cannot resample a schedule of {given} step to steps={steps}; give at least 2 steps"
        )
    levels = sigmas[:-1].double()
    if shift is not None:
        levels = unshift_sigmas(levels, shift)
    position = torch.linspace(0, given - 1, steps, dtype=torch.float64)
    lower = position.floor().long().clamp(max=given - 2)
    fraction = position - lower
    resampled = levels[lower] * (1 - fraction) + levels[lower + 1] * fraction
    if shift is not None:
        resampled = shift_sigmas(resampled, shift)
    return torch.cat([resampled.to(sigmas.dtype), sigmas[-1:]])


def check_shift(shift: float | None) -> None:
    """A resampling shift is a positive finite number, or None to keep the schedule's own."""
    if shift is not None and (
        isinstance(shift, bool)
        or not isinstance(shift, int | float)
        or not math.isfinite(shift)
        or shift <= 0
    ):
        raise ValueError(
            f"shift={shift!r} must be a positive finite number (Wan/FlashPortrait use 5.0) or None"
        )


@dataclass(frozen=True)
class FewerSteps(Stepper):
    """Euler (Lipman et al. 2023, arXiv 2210.02747) on the schedule resampled to ``steps`` steps; see ``resample_sigmas``."""

    steps: int = 6
    shift: float | None = None

    name = "fewer_steps"

    @classmethod
    def facts(cls, steps: int) -> Facts:
        # The schedule's own step count resamples nothing: plain Euler.
        return Facts(
            never_skip=({"steps": steps},),
            examples={"default": {"steps": 5}},
            caches=False,
            layered=False,
        )

    def __post_init__(self) -> None:
        check_positive_int(
            self.steps, "steps", "use steps >= 1 (e.g. 6 to match an accelerator's NFE)"
        )
        check_shift(self.shift)

    def plan(self, sigmas: Tensor) -> Tensor:
        return resample_sigmas(sigmas, self.steps, self.shift)
