"""FORA: reuse the blocks' outputs on a fixed interval."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from flashbench.denoiser import Cond, Denoiser
from flashbench.steppers.base import CacheLayout, Facts, Features, Stepper, sigma_batch
from flashbench.steppers.layered import check_positive_int, require_layered, run_blocks


@dataclass(frozen=True)
class FORA(Stepper):
    """Fast-forward caching (Selvaraju et al. 2024, arXiv 2407.01425): full pass every ``interval`` steps, cached block outputs between.

    Every block's residual is reused unchanged, so their sum, the block stack's residual, is
    all that needs keeping: one tensor instead of one per layer, same result.
    """

    interval: int = 3
    warmup: int = 1

    name = "fora"

    @classmethod
    def facts(cls, steps: int) -> Facts:
        return Facts(never_skip=({"interval": 1},))

    def __post_init__(self) -> None:
        check_positive_int(self.interval, "interval", "use interval=1 for a full pass every step")
        check_positive_int(
            self.warmup, "warmup", "use warmup >= 1 (the first step must be a full pass)"
        )

    def cache_layout(self, features: Features) -> CacheLayout:
        return CacheLayout(features.hidden, 1, 1)

    def velocity(
        self, model: Denoiser, x: Tensor, sigmas: Tensor, step: int, cond: Cond, cache: dict
    ) -> tuple[Tensor, str]:
        model = require_layered(
            model,
            self.name,
            "FORA reuses block outputs; for a black-box denoiser use alp or taylorseer with level='output'",
        )
        h, ctx = model.embed(x, sigma_batch(sigmas, step, x), cond)
        full = step < self.warmup or (step - self.warmup + 1) % self.interval == 0
        if full or "residual" not in cache:
            out = run_blocks(model, h, ctx)
            cache["residual"] = out - h
            return model.head(out, ctx), "compute"
        return model.head(h + cache["residual"], ctx), "reuse"
