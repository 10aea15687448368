"""The one interface every stepper implements."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from flashbench.denoiser import Cond, Denoiser


def euler_step(x: Tensor, v: Tensor, sigma: Tensor, sigma_next: Tensor) -> Tensor:
    """x' = x + (sigma_next - sigma) v, in float32 as diffusers' FlowMatchEulerDiscreteScheduler."""
    return (x.float() + (sigma_next - sigma).float() * v.float()).to(x.dtype)


def cache_tensors(obj: Any, _seen: set[int] | None = None) -> Iterator[Tensor]:
    """The tensors inside nested dicts/lists/tuples and the attributes of the state objects in them.

    diffusers' hooks and cache-dit keep their state in their own objects; modules and classes
    are not entered, and an object reached twice is visited once.
    """
    if isinstance(obj, Tensor):
        yield obj
    elif isinstance(obj, dict):
        for value in obj.values():
            yield from cache_tensors(value, _seen)
    elif isinstance(obj, list | tuple):
        for value in obj:
            yield from cache_tensors(value, _seen)
    elif hasattr(obj, "__dict__") and not isinstance(obj, nn.Module | type):
        _seen = set() if _seen is None else _seen
        if id(obj) not in _seen:
            _seen.add(id(obj))
            yield from cache_tensors(vars(obj), _seen)


def tensor_bytes(obj: Any) -> int:
    """Bytes held by ``cache_tensors(obj)``."""
    return sum(t.numel() * t.element_size() for t in cache_tensors(obj))


@dataclass(frozen=True)
class Features:
    """Sizes in bytes of what a stepper may keep for one (window, guidance branch): the memory planner's input."""

    blocks: int
    hidden: int  # one block's output h
    tokens: int  # h's elements over its width (one per token)
    latent: int  # the window's latent x
    velocity: int  # the model's output v
    time: int | None  # the time embedding a block context carries, None where there is none
    hidden_itemsize: int
    velocity_itemsize: int


@dataclass(frozen=True)
class CacheLayout:
    """What a stepper's cache holds for one (window, guidance branch), in bytes.

    ``factors`` copies of a block-sized tensor (``per_block`` bytes) for each of ``blocks``
    blocks, and ``other`` bytes besides (latents, weights, norms).
    """

    per_block: int = 0
    blocks: int = 0
    factors: int = 0
    other: int = 0
    # Bytes alive beside the cache while a full pass refreshes it; None: the per-block copies
    # once more (new copies built while the old ones are still referenced).
    transient: int | None = None

    @property
    def block_bytes(self) -> int:
        return self.per_block * self.blocks * self.factors

    @property
    def transient_bytes(self) -> int:
        return self.block_bytes if self.transient is None else self.transient

    @property
    def total(self) -> int:
        return self.block_bytes + self.other


@dataclass(frozen=True)
class Facts:
    """What a stepper promises, checked for every registered stepper by ``tests/steppers``.

    ``never_skip``: parameter sets under which it computes every pass and so equals Euler bit
    for bit (DESIGN: alp/taylorseer/teacache that never skip == euler). ``examples``: named
    parameter sets that make it skip, predict or reuse, run under every windowing and guidance
    to check its accounting. ``accelerates``: its examples take fewer full passes than Euler.
    ``caches``: it keeps features between steps (its examples report cache bytes).
    ``layered``: it needs a layered denoiser; ``black_box``: the parameters under which it
    runs on a plain one anyway (None: it cannot). ``exact``: parameters (with ``interval``)
    under which every prediction made after ``exact_degree + 1`` full passes is exact on
    features that are polynomials of degree <= ``exact_degree`` in the step index (DESIGN: a
    prediction of order n is exact on a polynomial trajectory of degree <= n); None: no such
    promise. ``diffusers``: it runs only on a diffusers transformer (the ``wan`` model), so the
    registry's toy-model tests leave it to ``tests/wan``.
    """

    never_skip: tuple[Mapping[str, Any], ...]
    examples: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: {"default": {}})
    accelerates: bool = True
    caches: bool = True
    layered: bool = True
    black_box: Mapping[str, Any] | None = None
    exact: Mapping[str, Any] | None = None
    exact_degree: int = 0
    diffusers: bool = False


class Stepper:
    """Base stepper: computes the velocity with a full model pass and takes an Euler step.

    The sampler owns the loop (steps x windows x guidance branches) and gives each stepper a
    ``cache`` per (window, guidance branch) and a ``history`` per window; both are plain dicts
    the stepper fills as it likes and that are dropped when sampling ends.
    ``velocity`` returns the velocity and what it did: ``"compute"`` (a full pass, counted in
    NFE), ``"predict"`` (forecast from cached features) or ``"reuse"`` (a cached residual).
    """

    name = "base"

    @classmethod
    def facts(cls, steps: int) -> Facts | None:
        """What this stepper promises on a schedule of ``steps`` steps; every registered stepper declares it."""
        return None

    def plan(self, sigmas: Tensor) -> Tensor:
        """The sigmas this stepper walks, given the schedule's (``fewer_steps`` resamples)."""
        return sigmas

    def velocity(
        self, model: Denoiser, x: Tensor, sigmas: Tensor, step: int, cond: Cond, cache: dict
    ) -> tuple[Tensor, str]:
        return model(x, sigma_batch(sigmas, step, x), cond), "compute"

    def advance(self, x: Tensor, v: Tensor, sigmas: Tensor, step: int, history: dict) -> Tensor:
        return euler_step(x, v, sigmas[step], sigmas[step + 1])

    def cache_bytes(self, cache: dict) -> int:
        return tensor_bytes(cache)

    def cache_layout(self, features: Features) -> CacheLayout:
        """What ``cache_bytes`` will report for one (window, branch) once the cache is filled;
        ``flashbench.planning.memory`` plans with it and ``tests/flashbench/planning/test_memory.py`` checks it."""
        return CacheLayout()


def sigma_batch(sigmas: Tensor, step: int, x: Tensor) -> Tensor:
    """The step's sigma as the ``[B]`` tensor a denoiser takes."""
    return sigmas[step].to(x.dtype).expand(x.shape[0])
