"""The forecasting core that ALP and TaylorSeer share: per-layer features forecast between full passes.

A full pass runs every ``interval`` steps after ``warmup`` full steps; in between, each
layer's block residual (or, at ``level="output"``, the velocity) is forecast from finite
differences over the full-pass points. All layers live in one stacked tensor
``factors[order + 1, layers, *h.shape]`` so a prediction is one matrix-vector product.

Memory-lean forms (``docs/memory.md``): ``groups`` forecasts the summed residual of that many
contiguous runs of blocks instead of every block's (``groups=1``: the whole block stack, one
copy per factor instead of one per block); ``cache_dtype`` keeps the factors in bfloat16 or
float16; ``level="output"`` forecasts the velocity; a lower ``order`` keeps fewer factors.
Without the dynamic functions a forecast is linear in the factors, so any grouping gives the
per-block forecast up to rounding; ALP's layer weights w then act per group.

Spacing: differences are taken in step index (``spacing="step"``, TaylorSeer's choice) or in
sigma (``spacing="sigma"``), which respects the uneven sigma steps of a shifted schedule.
Default ``"step"``: on the toy denoiser (``benchmarks/bench_steppers.py``: 30 steps, shift 5,
K=5, n=3, 9 full passes; relative RMSE of the final latent to Euler's) step spacing gives
0.026 against 0.035 for sigma spacing, and 0.033 against 0.075 in the Newton form: dividing
the higher differences by the small early sigma gaps amplifies the features' wiggles, while
the step index keeps the coefficients O(1). The benchmark prints both, so the choice can be
rechecked per model (``--model``).

Forms: ``"taylor"`` is TaylorSeer's recursion F(i+1) = (F(i) - F(i)_prev) / d with d the
distance between the last two full points, then f = sum F(i) k^i / i!; it is exact for
features linear in the spacing coordinate and, for a quadratic, off by -k d f''/2 (the
differences estimate derivatives at a lagged point). ``"newton"`` keeps divided differences
f[u_a, ..., u_(a-i)] and evaluates Newton's backward polynomial, exact for degree <= order on
any spacing (on equal spacing it is sum binom(k/h + i - 1, i) nabla^i f).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from flashbench.denoiser import Cond, Denoiser
from flashbench.steppers.base import CacheLayout, Features, Stepper, sigma_batch
from flashbench.steppers.layered import (
    check_choice,
    check_positive_int,
    require_layered,
)

# Differences of order n need n + 1 full passes of history and amplify the features' noise
# n-fold; beyond a few orders a forecast only gets worse (and a typo like 10**6 allocates
# order + 1 copies of every layer's features).
MAX_ORDER = 8
CACHE_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class Forecaster(Stepper):
    """Per-layer finite-difference forecasting between periodic full passes (TaylorSeer's scheme)."""

    interval: int = 5
    order: int = 1
    warmup: int | None = None
    spacing: Literal["step", "sigma"] = "step"
    form: Literal["taylor", "newton"] = "taylor"
    level: Literal["layer", "output"] = "layer"
    groups: int | None = None
    cache_dtype: Literal["bfloat16", "float16"] | None = None

    name = "forecaster"

    def __post_init__(self) -> None:
        check_positive_int(
            self.interval, "interval", "use interval=1 for a full pass every step (K >= 1)"
        )
        check_positive_int(
            self.order,
            "order",
            "use order=0 to reuse the last features; FlashPortrait uses 3",
            minimum=0,
            maximum=MAX_ORDER,
        )
        if self.warmup is not None:
            check_positive_int(
                self.warmup,
                "warmup",
                f"use warmup >= 1 full steps (order + 1 = {self.order + 1} forms every difference)",
            )
        check_choice(self.spacing, "spacing", ("step", "sigma"))
        check_choice(self.form, "form", ("taylor", "newton"))
        check_choice(self.level, "level", ("layer", "output"))
        if self.groups is not None:
            if self.level != "layer":
                raise ValueError(
                    f"groups={self.groups} groups blocks, but level={self.level!r} forecasts "
                    'the velocity; use level="layer" or leave groups out'
                )
            check_positive_int(
                self.groups, "groups", "use groups=1 to forecast the whole block stack"
            )
        if self.cache_dtype is not None:
            check_choice(self.cache_dtype, "cache_dtype", tuple(CACHE_DTYPES))

    @property
    def warmup_steps(self) -> int:
        return self.warmup if self.warmup is not None else self.order + 1

    # -- hooks ALP overrides ---------------------------------------------------------------
    def observe(self, x: Tensor, cache: dict) -> None:
        """Track what the latent does at every step (ALP's variation rate)."""

    def scheduled(self, step: int, cache: dict) -> bool:
        """Whether this step is a full pass under the fixed schedule."""
        return step < self.warmup_steps or (step - self.warmup_steps + 1) % self.interval == 0

    def dynamic_weights(self, factors: Tensor, x: Tensor, cache: dict) -> Tensor | None:
        """Per (order, layer) multipliers of the difference terms, or None for plain Taylor."""
        return None

    # -- the stepper -----------------------------------------------------------------------
    def coordinate(self, sigmas: Tensor, step: int) -> float:
        # -sigma so that the coordinate grows along sampling, as the step index does.
        return float(step) if self.spacing == "step" else -float(sigmas[step])

    def velocity(
        self, model: Denoiser, x: Tensor, sigmas: Tensor, step: int, cond: Cond, cache: dict
    ) -> tuple[Tensor, str]:
        if self.level == "layer":
            require_layered(
                model,
                self.name,
                f'use {type(self).__name__}(level="output") to forecast the velocity of a black-box denoiser',
            )
        self.observe(x, cache)
        u = self.coordinate(sigmas, step)
        if "factors" not in cache or self.scheduled(step, cache):
            return self.full_pass(model, x, sigmas, step, cond, cache, u), "compute"
        return self.predict(model, x, sigmas, step, cond, cache, u), "predict"

    def full_pass(
        self,
        model: Denoiser,
        x: Tensor,
        sigmas: Tensor,
        step: int,
        cond: Cond,
        cache: dict,
        u: float,
    ) -> Tensor:
        sigma = sigma_batch(sigmas, step, x)
        distances = self.distances(cache, u)
        if self.level == "layer":
            h, ctx = model.embed(x, sigma, cond)
            ends = self.group_ends(len(model.blocks))
            factors = self.storage(cache, (self.order + 1, len(ends), *h.shape), h)
            start = h
            for layer, block in enumerate(model.blocks):
                h = block(h, ctx)
                if layer in ends:
                    # Each group's factors are updated as soon as its residual exists, so only
                    # one group's new values are alive beside the old cache (no second copy).
                    self.update_factors(factors[:, ends[layer]], h - start, distances)
                    start = h
            v = model.head(h, ctx)
        else:
            v = model(x, sigma, cond)
            factors = self.storage(cache, (self.order + 1, 1, *v.shape), v)
            self.update_factors(factors[:, 0], v, distances)
        self.commit(cache, factors, distances, u)
        # A forecast from low-precision factors comes back in the features' own dtype.
        cache["dtype"] = v.dtype if self.level == "output" else h.dtype
        cache["weights"] = self.dynamic_weights(factors, x, cache)
        cache["last_step"] = step
        return v

    def commit(self, cache: dict, factors: Tensor, distances: list[float], u: float) -> None:
        """Record a full pass at coordinate ``u`` whose factors were updated with ``distances``."""
        cache["factors"] = factors
        cache["orders"] = len(distances)
        cache["points"] = [u, *cache.get("points", [])][: max(self.order, 1)]

    def storage(self, cache: dict, shape: tuple[int, ...], features: Tensor) -> Tensor:
        """The cache's factor tensor, updated in place; allocated on the first full pass."""
        factors = cache.get("factors")
        if factors is None:
            return features.new_empty(shape, dtype=self.dtype(features))
        if tuple(factors.shape) != shape:
            # Differences against features of another shape would mean nothing.
            raise ValueError(
                f"{self.name}: the features changed shape between full passes of one window "
                f"({tuple(factors.shape)} -> {shape}); a cache belongs to one window and branch"
            )
        return factors

    def distances(self, cache: dict, u: float) -> list[float]:
        """The divisors of the differences of orders 1, 2, ... that the full points so far allow."""
        points: list[float] = cache.get("points", [])  # newest first
        distances = []
        for i in range(1, min(self.order, len(points)) + 1):
            distance = u - (points[0] if self.form == "taylor" else points[i - 1])
            if distance == 0:
                break
            distances.append(distance)
        return distances

    def dtype(self, features: Tensor) -> torch.dtype:
        """What the factors are kept in: ``cache_dtype``, else the features' own dtype."""
        return features.dtype if self.cache_dtype is None else CACHE_DTYPES[self.cache_dtype]

    def group_ends(self, blocks: int) -> dict[int, int]:
        """{last block of a group: the group's index}: ``groups`` contiguous runs of near-equal length."""
        groups = blocks if self.groups is None else self.groups
        if groups > blocks:
            raise ValueError(
                f"groups={groups} exceeds the model's {blocks} blocks; use 1 to {blocks}"
            )
        return {(g + 1) * blocks // groups - 1: g for g in range(groups)}

    def update_factors(self, factors: Tensor, features: Tensor, distances: list[float]) -> None:
        """Replace one group's ``factors[order + 1, ...]`` by ``features`` and its differences against the old values, in place.

        F(0) <- f; F(i) <- (F(i-1)_new - F(i-1)_old) / d_i for i <= len(distances); higher orders 0.
        """
        value = features.to(factors.dtype)
        for i, distance in enumerate(distances, start=1):
            difference = torch.sub(value, factors[i - 1])
            difference.div_(distance)
            factors[i - 1].copy_(value)
            value = difference
        factors[len(distances)].copy_(value)
        factors[len(distances) + 1 :].zero_()

    def cache_layout(self, features: Features) -> CacheLayout:
        if self.level == "layer":
            size, itemsize = features.hidden, features.hidden_itemsize
            blocks = len(self.group_ends(features.blocks))
        else:
            size, itemsize, blocks = features.velocity, features.velocity_itemsize, 1
        stored = size // itemsize * self.factor_itemsize(features)
        # In place, one group at a time: its new features and two differences at once (at layer
        # level the features are the group's residual, a tensor of their own).
        transient = 2 * stored + (size if self.level == "layer" else 0)
        return CacheLayout(stored, blocks, self.order + 1, transient=transient)

    def factor_itemsize(self, features: Features) -> int:
        """Bytes per element of the factors (and of ALP's weights, kept in the same dtype)."""
        if self.cache_dtype is not None:
            return CACHE_DTYPES[self.cache_dtype].itemsize
        return features.hidden_itemsize if self.level == "layer" else features.velocity_itemsize

    def coefficients(self, u: float, cache: dict) -> list[float]:
        points, orders = cache["points"], cache["orders"]
        coefficients = [1.0] + [0.0] * self.order
        for i in range(1, orders + 1):
            if self.form == "taylor":
                coefficients[i] = (u - points[0]) ** i / math.factorial(i)
            else:
                coefficients[i] = coefficients[i - 1] * (u - points[i - 1])
        return coefficients

    def forecast(self, cache: dict, u: float) -> Tensor:
        """sum over (order i, layer l) of c_i * weight(i, l) * factors[i, l]."""
        factors: Tensor = cache["factors"]
        c = torch.tensor(self.coefficients(u, cache), dtype=factors.dtype, device=factors.device)
        weights = cache.get("weights")
        mix = c[:, None].expand(factors.shape[:2]) if weights is None else c[:, None] * weights
        flat = factors.reshape(mix.numel(), -1)
        return (
            (mix.reshape(1, -1) @ flat)
            .reshape(factors.shape[2:])
            .to(cache.get("dtype", flat.dtype))
        )

    def predict(
        self,
        model: Denoiser,
        x: Tensor,
        sigmas: Tensor,
        step: int,
        cond: Cond,
        cache: dict,
        u: float,
    ) -> Tensor:
        if self.level == "output":
            return self.forecast(cache, u)
        h, ctx = model.embed(x, sigma_batch(sigmas, step, x), cond)
        return model.head(h + self.forecast(cache, u), ctx)
