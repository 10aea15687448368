"""Baseline Euler stepper."""

from __future__ import annotations

from dataclasses import dataclass

from flashbench.steppers.base import Facts, Stepper


@dataclass(frozen=True)
class Euler(Stepper):
    """Euler on the flow-matching ODE dx/dsigma = v (Lipman et al. 2023, arXiv 2210.02747); one full pass a step."""

    name = "euler"

    @classmethod
    def facts(cls, steps: int) -> Facts:
        return Facts(never_skip=({},), accelerates=False, caches=False, layered=False)
