"""A stepper: Euler that reuses its last computed velocity between full passes."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from flashbench.denoiser import Cond, Denoiser
from flashbench.steppers import Stepper
from flashbench.steppers.base import CacheLayout, Facts, Features, sigma_batch


@dataclass(frozen=True)
class SkipEuler(Stepper):
    """Euler (Lipman et al. 2023, arXiv 2210.02747) with a full pass every ``every`` steps, the last velocity reused between."""

    every: int = 2

    name = "skip_euler"

    def __post_init__(self) -> None:
        if isinstance(self.every, bool) or not isinstance(self.every, int) or self.every < 1:
            raise ValueError(
                f"every={self.every!r} must be a positive number of steps; every=1 is Euler"
            )

    @classmethod
    def facts(cls, steps: int) -> Facts:
        return Facts(never_skip=({"every": 1},), examples={"every_2": {"every": 2}}, layered=False)

    def velocity(
        self, model: Denoiser, x: Tensor, sigmas: Tensor, step: int, cond: Cond, cache: dict
    ) -> tuple[Tensor, str]:
        if step % self.every and "velocity" in cache:
            return cache["velocity"], "reuse"
        cache["velocity"] = model(x, sigma_batch(sigmas, step, x), cond)
        return cache["velocity"], "compute"

    def cache_layout(self, features: Features) -> CacheLayout:
        return CacheLayout(other=features.velocity if self.every > 1 else 0)
