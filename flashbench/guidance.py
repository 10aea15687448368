"""Guidance rules: how a guided step combines the conditional and unconditional velocities.

Each rule is a frozen dataclass with one method, ``combine(v_cond, v_uncond, *, x, sigma,
step, scale, state)``, called once per guided step and window; ``state`` is that window's own
dict, kept across steps (APG's momentum lives there). Velocities follow the flow-matching convention
``x_t = (1 - sigma) x_0 + sigma noise``, ``v = noise - x_0``, so the denoised prediction is
``x - sigma v``. ``RULES`` names them for suites and CLIs.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, fields
from typing import Protocol

import torch
from torch import Tensor


class GuidanceRule(Protocol):
    def combine(
        self,
        v_cond: Tensor,
        v_uncond: Tensor,
        *,
        x: Tensor,
        sigma: float,
        step: int,
        scale: float,
        state: dict,
    ) -> Tensor: ...


def _per_sample(a: Tensor, b: Tensor) -> Tensor:
    """<a, b> over every dimension but the batch, shaped to broadcast against ``a``."""
    dims = tuple(range(1, a.ndim))
    return (a.double() * b.double()).sum(dims, keepdim=True)


@dataclass(frozen=True)
class CFG:
    """Classifier-free guidance v_u + w (v_c - v_u) (Ho & Salimans 2022, arXiv 2207.12598, eq. 6)."""

    def combine(
        self,
        v_cond: Tensor,
        v_uncond: Tensor,
        *,
        x: Tensor,
        sigma: float,
        step: int,
        scale: float,
        state: dict,
    ) -> Tensor:
        return v_uncond + scale * (v_cond - v_uncond)


@dataclass(frozen=True)
class CFGZeroStar:
    """CFG-Zero*: the unconditional velocity rescaled by s* = <v_c, v_u> / |v_u|^2, and the
    first ``zero_init_steps`` steps' velocity set to zero (Fan et al. 2025, arXiv 2503.18886,
    eq. 8 and Sec. 3.3)."""

    zero_init_steps: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.zero_init_steps, int) or self.zero_init_steps < 0:
            raise ValueError(
                f"cfg_zero_star zero_init_steps={self.zero_init_steps!r} must be an integer >= 0 "
                "(the paper zeroes the first step: 1)"
            )

    def combine(
        self,
        v_cond: Tensor,
        v_uncond: Tensor,
        *,
        x: Tensor,
        sigma: float,
        step: int,
        scale: float,
        state: dict,
    ) -> Tensor:
        if step < self.zero_init_steps:
            return torch.zeros_like(v_cond)
        # eps keeps a zero unconditional velocity from dividing by zero (then s* = 0).
        norm = _per_sample(v_uncond, v_uncond).clamp_min(1e-12)
        rescale = (_per_sample(v_cond, v_uncond) / norm).to(v_cond.dtype)
        v_uncond = rescale * v_uncond
        return v_uncond + scale * (v_cond - v_uncond)


@dataclass(frozen=True)
class APG:
    """Adaptive projected guidance on the denoised prediction: the guidance update, with
    momentum and its norm capped at ``norm_threshold``, split into the parts parallel and
    orthogonal to the conditional prediction, the parallel part weighted by ``eta`` (Sadat,
    Hilliges & Weber 2024, arXiv 2410.02416, Algorithm 1). ``eta=1, norm_threshold=0,
    momentum=0`` is plain CFG."""

    eta: float = 0.0
    norm_threshold: float = 0.0
    momentum: float = 0.0

    def __post_init__(self) -> None:
        for name in ("eta", "norm_threshold", "momentum"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or value != value:
                raise ValueError(f"apg {name}={value!r} must be a number")
        if self.norm_threshold < 0:
            raise ValueError(
                f"apg norm_threshold={self.norm_threshold!r} must be >= 0 (0 turns the cap off)"
            )

    def combine(
        self,
        v_cond: Tensor,
        v_uncond: Tensor,
        *,
        x: Tensor,
        sigma: float,
        step: int,
        scale: float,
        state: dict,
    ) -> Tensor:
        # The paper projects the denoised prediction: D = x - sigma v, so D_c - D_u = -sigma (v_c - v_u).
        denoised = x - sigma * v_cond
        update = -sigma * (v_cond - v_uncond)
        if self.momentum:
            update = update + self.momentum * state.get("running", torch.zeros_like(update))
            state["running"] = update
        if self.norm_threshold > 0:
            norm = _per_sample(update, update).sqrt()
            update = update * (self.norm_threshold / norm).clamp(max=1.0).to(update.dtype)
        unit = denoised.double() / _per_sample(denoised, denoised).sqrt().clamp_min(1e-12)
        parallel = (_per_sample(update, unit) * unit).to(update.dtype)
        update = (update - parallel) + self.eta * parallel
        guided = denoised + (scale - 1.0) * update
        return (x - guided) / sigma


RULES: dict[str, type] = {"cfg": CFG, "cfg_zero_star": CFGZeroStar, "apg": APG}


def parse_rule(text: str) -> GuidanceRule:
    """``"apg:eta=0,norm_threshold=2"`` -> ``APG(eta=0.0, norm_threshold=2.0)``; ``"cfg"`` -> ``CFG()``."""
    name, _, options = text.partition(":")
    if name not in RULES:
        close = difflib.get_close_matches(name, RULES, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"guidance rule {name!r} is not one of {', '.join(RULES)}{hint}")
    rule = RULES[name]
    known = {f.name: f.type for f in fields(rule)}
    kwargs: dict[str, float | int] = {}
    for item in filter(None, options.split(",")):
        key, sep, value = item.partition("=")
        if not sep or key not in known:
            raise ValueError(
                f"guidance rule option {item!r} is not KEY=VALUE with KEY one of "
                f"{', '.join(known) or '(none: ' + name + ' takes no options)'}"
            )
        try:
            kwargs[key] = int(value) if known[key] == "int" else float(value)
        except ValueError:
            raise ValueError(f"guidance rule option {key}={value!r} is not a number") from None
    return rule(**kwargs)
