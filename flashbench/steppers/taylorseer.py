"""TaylorSeer: Taylor-series forecasting of per-layer features between full passes."""

from __future__ import annotations

from dataclasses import dataclass

from flashbench.steppers.base import Facts
from flashbench.steppers.forecast import Forecaster


@dataclass(frozen=True)
class TaylorSeer(Forecaster):
    """TaylorSeer (Liu et al. 2025, arXiv 2503.06923): f(t + k) = sum_i F(i) k^i / i! from recursive differences.

    ``interval`` N (a full pass every N steps), ``order`` O, ``warmup`` first full steps (3, as
    diffusers' ``disable_cache_before_step``). ALP with its dynamic functions off (s = w = 1).
    Spacing, Newton form and output level as in ``flashbench.steppers.forecast.Forecaster``.
    """

    interval: int = 5
    order: int = 1
    warmup: int | None = 3

    name = "taylorseer"

    @classmethod
    def facts(cls, steps: int) -> Facts:
        return Facts(
            never_skip=({"interval": 1, "order": 2},),
            black_box={"level": "output"},
            # Newton's form on equal spacing interpolates the last order + 1 full passes exactly.
            exact={"interval": 3, "order": 2, "warmup": 1, "form": "newton"},
            exact_degree=2,
        )
