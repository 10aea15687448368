"""A model: a factory that returns a portrait model (here FlashBench's toy, made smaller)."""

from __future__ import annotations

from flashbench.models.toy import ToyModel


def toy_small(depth: int = 1) -> ToyModel:
    """The toy world with a denoiser 16 wide and ``depth`` blocks deep (a model plugin in a few lines)."""
    return ToyModel(dim=16, depth=depth)
