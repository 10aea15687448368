"""MagCache: skip the block stack while the accumulated residual-magnitude drift stays small."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from torch import Tensor

from flashbench.denoiser import Cond, Denoiser
from flashbench.steppers.base import CacheLayout, Facts, Features, Stepper, sigma_batch
from flashbench.steppers.calibration import (
    Calibration,
    check_loaded,
    open_cached_layers,
    resolve_calibration,
)
from flashbench.steppers.layered import (
    check_positive_int,
    check_threshold,
    run_blocks,
    token_norms,
)


@dataclass(frozen=True)
class MagCache(Stepper):
    """MagCache (Ma et al. 2025, arXiv 2506.09045): Gamma *= gamma_t, E += |1 - Gamma|; reuse the residual while E < threshold and skips <= max_skip.

    gamma_t = mean over tokens of ||r_t|| / ||r_(t-1)|| (r: the block stack's residual, feature
    dim last) comes from a ``calibration`` file (``flashbench calibrate magcache``; read by
    ``magcache(...)``, the registry's entry, before the stepper is built; ratios are
    interpolated in step fraction when the step count differs) or ``ratios``. Without either,
    gamma is estimated online from the last two full passes (an approximation, documented as
    such). The first ``retention`` fraction of steps always runs. Defaults: the paper's Wan-14B
    setting (threshold 0.24, max_skip 6, retention 0.2).
    """

    threshold: float = 0.24
    max_skip: int = 6
    retention: float = 0.2
    ratios: tuple[float, ...] | None = None
    calibration: str | None = None
    # The file's contents (``magcache`` reads them); checked against the model on first use.
    loaded: Calibration | None = field(default=None, compare=False, repr=False)

    name = "magcache"

    @classmethod
    def facts(cls, steps: int) -> Facts:
        return Facts(
            never_skip=({"threshold": 0.0}, {"threshold": 0.0, "ratios": (1.0, 0.9, 1.1)}),
            examples={"default": {"threshold": 0.5, "retention": 0.1}},
        )

    def __post_init__(self) -> None:
        check_threshold(
            self.threshold, "threshold", "MagCache uses 0.12-0.24; threshold=0 never skips"
        )
        check_positive_int(
            self.max_skip, "max_skip", "MagCache uses K = 2-6 consecutive skips at most", minimum=0
        )
        if (
            isinstance(self.retention, bool)
            or not isinstance(self.retention, int | float)
            or not 0 <= self.retention <= 1
        ):
            raise ValueError(
                f"retention={self.retention!r} must be a fraction of steps in [0, 1]; MagCache uses 0.2"
            )
        check_loaded(self)
        if self.ratios is not None and (
            len(self.ratios) < 2
            or not all(isinstance(r, int | float) and r > 0 for r in self.ratios)
        ):
            raise ValueError(f"ratios={self.ratios!r} must be >= 2 positive numbers, one per step")

    def ratio(self, step: int, steps: int, cache: dict) -> float:
        if self.ratios is None:
            return cache.get("online_ratio", 1.0)
        if len(self.ratios) == steps:
            return self.ratios[step]
        fractions = np.linspace(0.0, 1.0, len(self.ratios))
        return float(np.interp(step / max(steps - 1, 1), fractions, self.ratios))

    def cache_layout(self, features: Features) -> CacheLayout:
        # The block stack's residual; without ratios, its per-token norms in float32 too.
        norms = 4 * features.tokens if self.ratios is None else 0
        return CacheLayout(features.hidden, 1, 1, other=norms)

    def velocity(
        self, model: Denoiser, x: Tensor, sigmas: Tensor, step: int, cond: Cond, cache: dict
    ) -> tuple[Tensor, str]:
        model = open_cached_layers(self, model, cache)
        steps = len(sigmas) - 1
        h, ctx = model.embed(x, sigma_batch(sigmas, step, x), cond)
        if (
            step >= self.retention * steps
            and "residual" in cache
            and (self.ratios is not None or "online_ratio" in cache)
        ):
            gain = cache["gain"] * self.ratio(step, steps, cache)
            error = cache["error"] + abs(1.0 - gain)
            if error < self.threshold and cache["skips"] + 1 <= self.max_skip:
                cache.update(gain=gain, error=error, skips=cache["skips"] + 1)
                return model.head(h + cache["residual"], ctx), "reuse"
        out = run_blocks(model, h, ctx)
        residual = out - h
        if self.ratios is None:
            norms = token_norms(residual)
            if "norms" in cache:
                per_step = float((norms / cache["norms"].clamp_min(1e-12)).mean())
                cache["online_ratio"] = per_step ** (1.0 / max(step - cache["norm_step"], 1))
            cache.update(norms=norms, norm_step=step)
        cache.update(residual=residual, gain=1.0, error=0.0, skips=0)
        return model.head(out, ctx), "compute"


def magcache(
    threshold: float = 0.24,
    max_skip: int = 6,
    retention: float = 0.2,
    ratios: tuple[float, ...] | None = None,
    calibration: str | None = None,
) -> MagCache:
    """MagCache (Ma et al. 2025, arXiv 2506.09045): Gamma *= gamma_t, E += |1 - Gamma|; reuse the residual while E < threshold and skips <= max_skip.

    The registry's entry: reads ``ratios`` from the ``calibration`` file, if one is named, before
    the frozen ``MagCache`` is built.
    """
    ratios, loaded = resolve_calibration(calibration, ratios, "ratios", "magcache")
    return MagCache(
        threshold=threshold,
        max_skip=max_skip,
        retention=retention,
        ratios=ratios,
        calibration=calibration,
        loaded=loaded,
    )
