"""Helpers shared by the steppers that act on a layered denoiser's blocks."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from flashbench.denoiser import Denoiser, LayeredDenoiser, is_layered
from flashbench.schedule import MAX_STEPS


def require_layered(model: Denoiser, stepper: str, alternative: str) -> LayeredDenoiser:
    """The model as a layered denoiser, or a ValueError saying what to use instead."""
    if not is_layered(model):
        raise ValueError(
            f"stepper {stepper!r} caches per layer and needs a layered denoiser (embed/blocks/head), "
            f"got {type(model).__name__}; {alternative}"
        )
    return model


def check_positive_int(
    value: Any, name: str, hint: str, minimum: int = 1, maximum: int = MAX_STEPS
) -> None:
    """Counts of steps, intervals and the like; beyond a schedule's longest they are typos."""
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise ValueError(f"{name}={value!r} must be an integer in [{minimum}, {maximum}]; {hint}")


def check_threshold(value: Any, name: str, hint: str) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not value >= 0
        or value == float("inf")
    ):
        raise ValueError(f"{name}={value!r} must be a finite number >= 0; {hint}")


def check_choice(value: Any, name: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r} must be one of {', '.join(map(repr, choices))}")


def run_blocks(model: LayeredDenoiser, h: Tensor, ctx: Any, start: int = 0) -> Tensor:
    """``h`` through ``blocks[start:]``, the same operations as ``run_layers``."""
    for block in list(model.blocks)[start:]:
        h = block(h, ctx)
    return h


def time_embedding(ctx: Any) -> Tensor | None:
    """The time embedding a block context carries (``ctx["time"]`` or a tensor ``ctx``), if any."""
    if isinstance(ctx, Tensor):
        return ctx
    if isinstance(ctx, Mapping) and isinstance(ctx.get("time"), Tensor):
        return ctx["time"]
    return None


def relative_l1(new: Tensor, old: Tensor) -> float:
    """mean|new - old| / mean|old|: the change measure of TeaCache and first-block cache."""
    denominator = old.abs().mean()
    change = (new - old).abs().mean()
    if float(denominator) > 0:
        return float(change / denominator)
    return 0.0 if float(change) == 0 else float("inf")


def change_indicator(h: Tensor, ctx: Any, indicator: str) -> Tensor:
    """What TeaCache watches: the time embedding (its choice for Wan) or the embedded input."""
    if indicator in ("time", "auto"):
        time = time_embedding(ctx)
        if time is not None:
            return time
        if indicator == "time":
            raise ValueError(
                "indicator='time' needs a block context that is the time embedding or a mapping "
                "with a 'time' tensor; use indicator='embed' for this denoiser"
            )
    return h


def token_norms(h: Tensor) -> Tensor:
    """Per-token L2 norms of hidden states whose last dim is the feature dim."""
    return torch.linalg.vector_norm(h.float(), dim=-1)
