"""Steppers: walk the sigmas, deciding at each step (and layer) whether to compute or predict."""

from flashbench.steppers.base import Stepper, euler_step
from flashbench.steppers.euler import Euler

__all__ = ["Euler", "Stepper", "euler_step"]
