"""Counting the FLOPs a denoiser spends: torch's ``FlopCounterMode``, and declarations for what it cannot see.

``torch.utils.flop_counter.FlopCounterMode`` counts the ops that dominate a transformer
(matmuls, convolutions, attention: 2 FLOPs per multiply-add) from their shapes, and nothing
else. Two gaps are closed here, once, at import:

- attention on the CPU (``_scaled_dot_product_flash_attention_for_cpu``) has no formula in
  torch; it gets the one torch gives the GPU kernels, so a CPU run and a GPU run count alike;
- a model whose cost is elementwise arithmetic (``gmm``'s exact flow) declares it with
  ``declare_flops`` inside its forward: a no-op op whose formula is the declared count, so it
  is counted exactly when the forward runs under a counter and costs nothing otherwise.

Usage::

    with FlopCounter() as counter:
        model(x, sigma, cond)
    counter.total                                   # FLOPs so far (readable while counting)

    v, flops = count_flops(model, x, sigma, cond)   # the same, for one call

``sample(..., count_flops=True)`` counts each (step, window, guidance branch) this way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch import Tensor
from torch.utils.flop_counter import (
    FlopCounterMode,
    flop_registry,
    register_flop_formula,
    sdpa_flop_count,
)

T = TypeVar("T")


# ------------------------------------------------------------------ formulas torch lacks


@torch.library.custom_op("flashbench::declared_flops", mutates_args=())
def _declared_flops(like: Tensor, flops: int) -> None:
    """Does nothing; under a counter its formula adds ``flops``. ``like`` ties it to a device."""


@_declared_flops.register_fake
def _(like: Tensor, flops: int) -> None:
    return None


@register_flop_formula(torch.ops.flashbench.declared_flops)
def _declared_formula(like_shape: Any, flops: int, *args: Any, **kwargs: Any) -> int:
    return flops


_CPU_ATTENTION = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
if _CPU_ATTENTION not in flop_registry:  # a later torch may count it itself

    @register_flop_formula(_CPU_ATTENTION)
    def _cpu_attention_formula(
        query_shape: Any, key_shape: Any, value_shape: Any, *args: Any, **kwargs: Any
    ) -> int:
        return sdpa_flop_count(query_shape, key_shape, value_shape)


# ------------------------------------------------------------------ the API


def declare_flops(flops: int, like: Tensor) -> None:
    """Count ``flops`` where the work is elementwise arithmetic a counter does not see.

    Call it in the forward that does the work (one FLOP per elementwise add, multiply, exp...);
    ``like`` is any tensor of that forward (it keeps the op on the work's device).
    """
    if isinstance(flops, bool) or not isinstance(flops, int) or flops < 0:
        raise ValueError(f"declare_flops: flops={flops!r} must be an integer >= 0")
    torch.ops.flashbench.declared_flops(like, flops)


class FlopCounter:
    """The FLOPs of the torch ops run while entered: matmuls, convolutions, attention, declared work.

    ``total`` can be read at any time, inside the block too (the difference of two readings is
    the cost of what ran between them); re-entering starts from zero. Counters may be nested:
    each sees every op run inside it.
    """

    def __init__(self) -> None:
        self._mode = FlopCounterMode(display=False)

    def __enter__(self) -> FlopCounter:
        self._mode.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._mode.__exit__(*exc)

    @property
    def total(self) -> int:
        return int(self._mode.get_total_flops())


def count_flops(fn: Callable[..., T], *args: Any, **kwargs: Any) -> tuple[T, int]:
    """``(fn(*args, **kwargs), the FLOPs it spent)``."""
    with FlopCounter() as counter:
        result = fn(*args, **kwargs)
    return result, counter.total
