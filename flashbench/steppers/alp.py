"""Adaptive Latent Prediction (ALP): the forecaster of ``flashbench/steppers/forecast.py`` with FlashPortrait's dynamic functions."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

import torch
from torch import Tensor

from flashbench.steppers.base import CacheLayout, Facts, Features
from flashbench.steppers.forecast import Forecaster
from flashbench.steppers.layered import check_choice, check_threshold, relative_l1


@dataclass(frozen=True)
class ALP(Forecaster):
    """Adaptive Latent Prediction (Ma et al. 2025, FlashPortrait, arXiv 2512.16900): Taylor forecasting with dynamic functions.

    f(t, l) = f(t+k, l) + sum_i D^i f(t+k, l) (-k)^i / (i! K^i w(t+k, l, i) s(t+k)), with
    s = (sigma(t) / sigma_avg)^alpha over the full steps seen so far and w = 1 / sqrt(r),
    r = a layer's RMS difference of order i over the mean of that across layers.
    ``reading`` picks sigma(t): ``"rate"`` = relative change of the latent per step
    (mean|x_t - x_(t-1)| / mean|x_(t-1)|), ``"std"`` = the latent's standard deviation.
    ``dynamic=False`` switches s and w off (then ALP is TaylorSeer). ``threshold`` turns on
    the adaptive mode: after warm-up a full pass runs when the accumulated latent variation
    rate since the last one reaches ``threshold`` (or after ``interval`` steps at most).
    """

    interval: int = 5
    order: int = 3
    alpha: float = 1.5
    reading: Literal["rate", "std"] = "rate"
    dynamic: bool = True
    threshold: float | None = None

    name = "alp"

    @classmethod
    def facts(cls, steps: int) -> Facts:
        return Facts(
            never_skip=(
                {"interval": 1},
                {"threshold": 0.0},
                {"interval": 1, "level": "output"},
                {"interval": 1, "form": "newton", "spacing": "sigma"},
                {"interval": 1, "groups": 1, "cache_dtype": "bfloat16"},
            ),
            examples={
                "default": {},
                "adaptive": {"threshold": 0.05, "interval": 4},
                "output": {"level": "output"},
                "newton-sigma": {"form": "newton", "spacing": "sigma"},
                "stack": {"groups": 1},
                "bfloat16": {"cache_dtype": "bfloat16"},
            },
            black_box={"level": "output"},
            # Newton's form on equal spacing interpolates the last order + 1 full passes exactly.
            exact={"interval": 3, "order": 2, "warmup": 1, "form": "newton", "dynamic": False},
            exact_degree=2,
        )

    def __post_init__(self) -> None:
        super().__post_init__()
        if (
            isinstance(self.alpha, bool)
            or not isinstance(self.alpha, int | float)
            or not math.isfinite(self.alpha)
        ):
            raise ValueError(
                f"alpha={self.alpha!r} must be a finite number; the paper uses 1.5 (range 0.5-1.5)"
            )
        check_choice(self.reading, "reading", ("rate", "std"))
        if self.threshold is not None:
            check_threshold(
                self.threshold,
                "threshold",
                "use a small positive rate sum such as 0.15, or threshold=None for a full pass every K steps",
            )

    def cache_layout(self, features: Features) -> CacheLayout:
        layout = super().cache_layout(features)
        # ``weights``: one multiplier per (order, layer); ``x_previous``: the latent for the rate.
        weights = (self.order + 1) * layout.blocks * self.factor_itemsize(features)
        weights = weights if self.dynamic else 0
        previous = features.latent if self.reading == "rate" or self.threshold is not None else 0
        return replace(layout, other=weights + previous)

    def observe(self, x: Tensor, cache: dict) -> None:
        if self.reading == "rate" or self.threshold is not None:
            previous = cache.get("x_previous")
            cache["rate"] = relative_l1(x, previous) if previous is not None else None
            cache["x_previous"] = x.clone()
            if cache["rate"] is not None:
                cache["accumulated"] = cache.get("accumulated", 0.0) + cache["rate"]

    def scheduled(self, step: int, cache: dict) -> bool:
        if self.threshold is None:
            full = super().scheduled(step, cache)
        else:
            full = (
                step < self.warmup_steps
                or cache.get("accumulated", 0.0) >= self.threshold
                or step - cache["last_step"] >= self.interval
            )
        if full:
            cache["accumulated"] = 0.0
        return full

    def dynamic_weights(self, factors: Tensor, x: Tensor, cache: dict) -> Tensor | None:
        if not self.dynamic:
            return None
        level = cache.get("rate") if self.reading == "rate" else float(x.float().std())
        scale = 1.0
        if level is not None:
            cache["level_sum"] = cache.get("level_sum", 0.0) + level
            cache["level_count"] = cache.get("level_count", 0) + 1
            average = cache["level_sum"] / cache["level_count"]
            scale = (level / average) ** self.alpha if average > 0 and level > 0 else 1.0
        weights = torch.ones(factors.shape[:2], dtype=torch.float32, device=factors.device)
        orders = cache["orders"]
        if orders:
            # RMS magnitude per (order, layer): an L2 norm is one fused pass, several times
            # cheaper than a mean of absolute values on CPU, and r only needs relative sizes.
            magnitude = torch.linalg.vector_norm(factors[1 : orders + 1].flatten(2), dim=2).float()
            across = magnitude.mean(1, keepdim=True)
            ratio = torch.where(
                across > 0, magnitude / across.clamp_min(1e-30), torch.ones_like(magnitude)
            )
            # 1 / (w s) with w = 1 / sqrt(r); order 0 (the features themselves) is never rescaled.
            weights[1 : orders + 1] = ratio.sqrt() / scale
        return weights.to(factors.dtype)
