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

Counting runs every op through Python (a counted pass of the reference DiT costs about three
plain ones), so a model whose passes cost what their inputs' shapes say declares
``flops_follow_shapes = True``; inside ``replayed_passes(model)`` its passes (and its blocks'),
once counted for inputs of some shapes, run uncounted after that and add the count they had.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar, TypeVar

import torch
from torch import Tensor, nn
from torch.utils._python_dispatch import (
    _disable_current_modes,
    _get_current_dispatch_mode_stack,
)
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
    each sees every op run inside it, and every replayed pass.
    """

    _entered: ClassVar[list[FlopCounter]] = []

    def __init__(self) -> None:
        self._mode = FlopCounterMode(display=False)
        self._replayed = 0

    def __enter__(self) -> FlopCounter:
        self._mode.__enter__()
        self._replayed = 0
        FlopCounter._entered.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        FlopCounter._entered.remove(self)
        self._mode.__exit__(*exc)

    @property
    def total(self) -> int:
        return int(self._mode.get_total_flops()) + self._replayed


class _Unkeyable(Exception):
    """An input a pass's cost could depend on in a way shapes do not show."""


def _shape_key(value: Any) -> Any:
    """What a shape-following pass's cost depends on: tensors' shapes, dtypes and devices, other values as they are."""
    if isinstance(value, Tensor):
        return ("tensor", tuple(value.shape), value.dtype, value.device.type)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Mapping):
        return ("mapping", tuple((key, _shape_key(item)) for key, item in value.items()))
    if isinstance(value, (tuple, list)):
        return (type(value).__name__, tuple(_shape_key(item) for item in value))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = dataclasses.fields(value)
        return (type(value), tuple((f.name, _shape_key(getattr(value, f.name))) for f in fields))
    raise _Unkeyable


class _Replay:
    """A module's ``forward`` that, under counters only, counts once per input shape and then replays."""

    replaying: ClassVar[bool] = False

    def __init__(self, forward: Callable[..., Any], counts: dict[Any, int]) -> None:
        self.forward, self.counts = forward, counts

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        counters = FlopCounter._entered
        if _Replay.replaying or not counters:
            return self.forward(*args, **kwargs)
        ours = {id(counter._mode.mode) for counter in counters}
        if any(id(mode) not in ours for mode in _get_current_dispatch_mode_stack()):
            return self.forward(*args, **kwargs)  # another mode watches: it sees every op
        try:
            key = _shape_key((args, kwargs))
        except _Unkeyable:
            return self.forward(*args, **kwargs)
        if key not in self.counts:
            before = counters[-1].total
            out = self.forward(*args, **kwargs)
            self.counts[key] = counters[-1].total - before
            return out
        _Replay.replaying = True
        try:
            with _disable_current_modes():
                out = self.forward(*args, **kwargs)
        finally:
            _Replay.replaying = False
        for counter in counters:
            counter._replayed += self.counts[key]
        return out


@contextlib.contextmanager
def replayed_passes(model: object) -> Iterator[None]:
    """Count each pass of ``model`` and of its ``blocks`` once per input shape while inside.

    Only for a model that declares ``flops_follow_shapes = True`` (its passes' cost is what
    their inputs' shapes say: no data-dependent work); any other is counted op by op. Outputs
    are untouched; the model is as it was on leaving.
    """
    if not getattr(model, "flops_follow_shapes", False):
        yield
        return
    modules = {id(m): m for m in (model, *getattr(model, "blocks", ())) if isinstance(m, nn.Module)}
    # An instance attribute shadows the class's forward; one set by someone else is left alone.
    patched = [m for m in modules.values() if "forward" not in vars(m)]
    for module in patched:
        module.forward = _Replay(module.forward, {})
    try:
        yield
    finally:
        for module in patched:
            del module.forward


def count_flops(fn: Callable[..., T], *args: Any, **kwargs: Any) -> tuple[T, int]:
    """``(fn(*args, **kwargs), the FLOPs it spent)``."""
    with FlopCounter() as counter:
        result = fn(*args, **kwargs)
    return result, counter.total
