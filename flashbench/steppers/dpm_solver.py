"""DPM-Solver++(2M) for flow matching: a second-order multistep solver at one pass per step."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from flashbench.steppers.base import Facts, Stepper
from flashbench.steppers.fewer_steps import check_shift, resample_sigmas
from flashbench.steppers.layered import check_positive_int


def half_log_snr(sigma: float) -> float:
    """lambda = log(alpha / sigma) with alpha = 1 - sigma (rectified flow); -inf at sigma = 1, +inf at 0."""
    if sigma >= 1:
        return -math.inf
    if sigma <= 0:
        return math.inf
    return math.log((1 - sigma) / sigma)


@dataclass(frozen=True)
class DPMSolver(Stepper):
    """DPM-Solver++(2M) (Lu et al. 2022, arXiv 2211.01095, Alg. 2) on data predictions x0 = x - sigma v.

    x' = (sigma'/sigma) x + (alpha' - alpha sigma'/sigma) D (the algorithm's update, written
    without exponentials of lambda so that sigma = 1, alpha = 0, needs no special case); D = x0 on the first step,
    after sigma = 1 and on the final step to sigma = 0 (where the 2M correction's 1/(2r) blows
    up), else D = (1 + 1/(2r)) x0 - x0_prev / (2r), r = h_prev / h. The first-order update is
    exactly Euler in flow matching. ``steps``/``shift`` resample the schedule as ``fewer_steps``.
    """

    steps: int | None = None
    shift: float | None = None

    name = "dpmpp_2m"

    @classmethod
    def facts(cls, steps: int) -> Facts:
        # A second-order solver is never Euler, whatever its parameters.
        return Facts(never_skip=(), examples={"default": {"steps": 6}}, caches=False, layered=False)

    def __post_init__(self) -> None:
        if self.steps is not None:
            check_positive_int(
                self.steps, "steps", "use steps >= 1, or steps=None to walk the given schedule"
            )
        check_shift(self.shift)

    def plan(self, sigmas: Tensor) -> Tensor:
        return sigmas if self.steps is None else resample_sigmas(sigmas, self.steps, self.shift)

    def advance(self, x: Tensor, v: Tensor, sigmas: Tensor, step: int, history: dict) -> Tensor:
        sigma, sigma_next = float(sigmas[step]), float(sigmas[step + 1])
        precision = torch.promote_types(x.dtype, torch.float32)
        x32 = x.to(precision)
        data = x32 - sigma * v.to(precision)
        lam, lam_next = half_log_snr(sigma), half_log_snr(sigma_next)
        estimate = data
        previous = history.get("data")
        if (
            previous is not None
            and history.get("step") == step - 1
            and math.isfinite(lam_next)
            and lam_next > lam
        ):
            h_previous = lam - history["lambda"]
            if math.isfinite(h_previous) and h_previous > 0:
                r = h_previous / (lam_next - lam)
                estimate = data + (data - previous) / (2 * r)
        history.update(data=data, step=step, **{"lambda": lam})
        if sigma <= 0:
            return x
        ratio = sigma_next / sigma
        return (ratio * x32 + ((1 - sigma_next) - (1 - sigma) * ratio) * estimate).to(x.dtype)
