"""TeaCache: skip the block stack while the accumulated, rescaled input change stays small."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

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
    change_indicator,
    check_choice,
    check_threshold,
    relative_l1,
    run_blocks,
)


@dataclass(frozen=True)
class TeaCache(Stepper):
    """TeaCache (Liu et al. 2024, arXiv 2411.19108): acc += poly(mean|m_t - m_(t-1)| / mean|m_(t-1)|); reuse the residual while acc < threshold.

    ``m`` is the time embedding (``indicator="time"``, TeaCache's choice for Wan) or the embedded
    input (``"embed"``); ``"auto"`` takes the time embedding when the block context has one.
    ``coefficients`` (highest degree first, as numpy.polyfit) or a ``calibration`` file from
    ``flashbench calibrate teacache``, read by ``teacache(...)`` (the registry's entry) before
    the stepper is built; neither means poly(d) = d. First and last steps always
    run; guidance branches keep separate accumulators (one cache each).
    """

    threshold: float = 0.2
    coefficients: tuple[float, ...] | None = None
    calibration: str | None = None
    indicator: Literal["auto", "time", "embed"] = "auto"
    # The file's contents (``teacache`` reads them); checked against the model on first use.
    loaded: Calibration | None = field(default=None, compare=False, repr=False)

    name = "teacache"

    @classmethod
    def facts(cls, steps: int) -> Facts:
        return Facts(never_skip=({"threshold": 0.0},), examples={"default": {"threshold": 3.0}})

    def __post_init__(self) -> None:
        check_threshold(
            self.threshold, "threshold", "TeaCache uses 0.13-0.26 on Wan; threshold=0 never skips"
        )
        check_choice(self.indicator, "indicator", ("auto", "time", "embed"))
        check_loaded(self)
        if self.coefficients is not None and (
            len(self.coefficients) == 0
            or not all(isinstance(c, int | float) for c in self.coefficients)
        ):
            raise ValueError(
                f"coefficients={self.coefficients!r} must be numbers, highest degree first (numpy.polyfit order)"
            )

    def rescale(self, change: float) -> float:
        if self.coefficients is None:
            return change
        value = 0.0
        for c in self.coefficients:
            value = value * change + c
        return value

    def cache_layout(self, features: Features) -> CacheLayout:
        # The block stack's residual, and the indicator it watches (see ``change_indicator``).
        watches_time = self.indicator != "embed" and features.time is not None
        return CacheLayout(
            features.hidden, 1, 1, other=features.time if watches_time else features.hidden
        )

    def velocity(
        self, model: Denoiser, x: Tensor, sigmas: Tensor, step: int, cond: Cond, cache: dict
    ) -> tuple[Tensor, str]:
        model = open_cached_layers(self, model, cache)
        h, ctx = model.embed(x, sigma_batch(sigmas, step, x), cond)
        indicator = change_indicator(h, ctx, self.indicator)
        previous = cache.get("indicator")
        cache["indicator"] = indicator.clone()
        edge = step == 0 or step == len(sigmas) - 2
        if not edge and previous is not None and "residual" in cache:
            accumulated = cache["accumulated"] + self.rescale(relative_l1(indicator, previous))
            if accumulated < self.threshold:
                cache["accumulated"] = accumulated
                return model.head(h + cache["residual"], ctx), "reuse"
        out = run_blocks(model, h, ctx)
        cache["residual"] = out - h
        cache["accumulated"] = 0.0
        return model.head(out, ctx), "compute"


def teacache(
    threshold: float = 0.2,
    coefficients: tuple[float, ...] | None = None,
    calibration: str | None = None,
    indicator: Literal["auto", "time", "embed"] = "auto",
) -> TeaCache:
    """TeaCache (Liu et al. 2024, arXiv 2411.19108): acc += poly(mean|m_t - m_(t-1)| / mean|m_(t-1)|); reuse the residual while acc < threshold.

    The registry's entry: reads ``coefficients`` from the ``calibration`` file, if one is named,
    before the frozen ``TeaCache`` is built.
    """
    coefficients, loaded = resolve_calibration(
        calibration, coefficients, "coefficients", "teacache"
    )
    return TeaCache(
        threshold=threshold,
        coefficients=coefficients,
        calibration=calibration,
        indicator=indicator,
        loaded=loaded,
    )
