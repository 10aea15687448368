"""The denoiser protocols every sampler speaks, and the conditioning they carry."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor


@dataclass(frozen=True)
class Cond:
    """Conditioning for one video.

    ``temporal`` tensors are frame-aligned, shaped ``[B, T * frames_per_latent, ...]`` (time on
    dim 1), and are cut along with the latent when a windowing splits the video. ``static``
    entries (a reference image, its latent, guidance flags) are shared by every window.
    """

    static: Mapping[str, Any] = field(default_factory=dict)
    temporal: Mapping[str, Tensor] = field(default_factory=dict)
    frames_per_latent: int = 1

    def window(self, start: int, stop: int) -> Cond:
        """The conditioning of latent frames ``[start, stop)``."""
        f = self.frames_per_latent
        return replace(
            self, temporal={k: v[:, start * f : stop * f] for k, v in self.temporal.items()}
        )

    def without(self, keys: Sequence[str]) -> Cond:
        """The conditioning with ``keys`` dropped (the unconditional branch of guidance)."""
        return replace(
            self,
            static={k: v for k, v in self.static.items() if k not in keys},
            temporal={k: v for k, v in self.temporal.items() if k not in keys},
        )


@runtime_checkable
class Denoiser(Protocol):
    """Predicts the flow-matching velocity ``v = model(x, sigma, cond)``.

    ``x`` is a latent video ``[B, C, T, H, W]``; ``sigma`` a tensor ``[B]``. A model whose
    passes cost what their inputs' shapes say (no data-dependent work) may declare
    ``flops_follow_shapes = True``: counting its FLOPs then replays repeated passes
    (``flashbench.flops.replayed_passes``).
    """

    def __call__(self, x: Tensor, sigma: Tensor, cond: Cond) -> Tensor: ...


class LayeredDenoiser(Denoiser, Protocol):
    """A denoiser that exposes its layers, so that caches can act per layer.

    ``model(x, sigma, cond) == head(blocks[-1](...blocks[0](embed(x, sigma, cond))))``, where
    ``embed`` returns ``(h, ctx)``, each block maps ``(h, ctx) -> h`` and ``head(h, ctx) -> v``.
    ``ctx`` carries whatever the blocks share (time embedding, conditioning tokens).
    """

    blocks: Sequence[Any]

    def embed(self, x: Tensor, sigma: Tensor, cond: Cond) -> tuple[Tensor, Any]: ...

    def head(self, h: Tensor, ctx: Any) -> Tensor: ...


def is_layered(model: object) -> bool:
    """Whether ``model`` exposes ``embed``, ``blocks`` and ``head`` (a layered denoiser).

    Not ``isinstance(model, LayeredDenoiser)``: since Python 3.12 protocol checks look attributes
    up statically, and an ``nn.Module``'s blocks live in its submodules, not its ``__dict__``.
    """
    return (
        callable(getattr(model, "embed", None))
        and callable(getattr(model, "head", None))
        and hasattr(model, "blocks")
    )


def run_layers(model: LayeredDenoiser, x: Tensor, sigma: Tensor, cond: Cond) -> Tensor:
    """One full pass of a layered denoiser through its pieces."""
    h, ctx = model.embed(x, sigma, cond)
    for block in model.blocks:
        h = block(h, ctx)
    return model.head(h, ctx)


def check_latent(x: Tensor, name: str = "x") -> None:
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor [B, C, T, H, W], got {type(x).__name__}")
    if x.ndim != 5:
        raise ValueError(
            f"{name} must be a latent video [B, C, T, H, W] (5 dims), got shape {tuple(x.shape)}; "
            "add batch/time dims with x[None] or x[:, :, None]"
        )
    if not torch.is_floating_point(x):
        raise ValueError(f"{name} must be floating point, got {x.dtype}")
