"""Registries of steppers, windowings and named settings (a setting = windowing x stepper x parameters)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flashbench.registry import Registry
from flashbench.sampling import Guidance
from flashbench.steppers import Stepper
from flashbench.windowing import Full, Sliding


def _callable(name: str, obj: Any) -> str | None:
    return (
        None if callable(obj) else f"is a {type(obj).__name__!r}, not a class or factory function"
    )


def _stepper(name: str, obj: Any) -> str | None:
    return None if isinstance(obj, Stepper) else "is not a flashbench.steppers.Stepper"


def _windowing(name: str, obj: Any) -> str | None:
    lacking = [m for m in ("windows", "weights") if not callable(getattr(obj, m, None))]
    return (
        f"has no {' or '.join(lacking)} method (see flashbench.windowing.Full)" if lacking else None
    )


# Third-party packages add entries through the entry points "flashbench.steppers" and
# "flashbench.windowings" (docs/plugins.md).
steppers = Registry("stepper", "flashbench.steppers", check=_callable, check_built=_stepper)
steppers.register("euler", "flashbench.steppers.euler:Euler")
steppers.register("alp", "flashbench.steppers.alp:ALP")
steppers.register("taylorseer", "flashbench.steppers.taylorseer:TaylorSeer")
steppers.register("teacache", "flashbench.steppers.teacache:teacache")
steppers.register("fora", "flashbench.steppers.fora:FORA")
steppers.register("first_block_cache", "flashbench.steppers.first_block_cache:FirstBlockCache")
steppers.register("magcache", "flashbench.steppers.magcache:magcache")
steppers.register("fewer_steps", "flashbench.steppers.fewer_steps:FewerSteps")
steppers.register("dpmpp_2m", "flashbench.steppers.dpm_solver:DPMSolver")
steppers.register("diffusers_cache", "flashbench.steppers.diffusers_cache:DiffusersCache")
steppers.register("cache_dit", "flashbench.steppers.cache_dit:CacheDiT")

windowings = Registry("windowing", "flashbench.windowings", check=_callable, check_built=_windowing)
windowings.register("full", Full)
windowings.register("sliding", Sliding)


@dataclass(frozen=True)
class Setting:
    """How to sample: a stepper and a windowing with their parameters, and guidance."""

    name: str
    stepper: str = "euler"
    stepper_args: Mapping[str, Any] = field(default_factory=dict)
    windowing: str = "full"
    windowing_args: Mapping[str, Any] = field(default_factory=dict)
    guidance_scale: float | None = None

    def build(self) -> tuple[Stepper, Full | Sliding, Guidance | None]:
        guidance = Guidance(self.guidance_scale) if self.guidance_scale is not None else None
        return (
            steppers.build(self.stepper, **self.stepper_args),
            windowings.build(self.windowing, **self.windowing_args),
            guidance,
        )

    def describe(self) -> str:
        args = ", ".join(
            f"{k}={v}" for k, v in {**self.windowing_args, **self.stepper_args}.items()
        )
        return f"{self.windowing} x {self.stepper}" + (f" ({args})" if args else "")


settings = Registry("setting")


def _add(setting: Setting) -> None:
    settings.register(setting.name, setting, doc=setting.describe())


_add(Setting("baseline"))
_add(Setting("sliding", windowing="sliding", windowing_args={"window": 8, "overlap": 4}))
_add(
    Setting(
        "sliding_uniform",
        windowing="sliding",
        windowing_args={"window": 8, "overlap": 4, "weighting": "uniform"},
    )
)
_add(
    Setting(
        "sliding_shift",
        windowing="sliding",
        windowing_args={"window": 8, "overlap": 0, "weighting": "uniform", "shift": 2},
    )
)
_add(Setting("alp_k5", stepper="alp", stepper_args={"interval": 5, "order": 3, "alpha": 1.5}))
_add(
    Setting(
        "alp_newton_k5", stepper="alp", stepper_args={"interval": 5, "order": 3, "form": "newton"}
    )
)
# Memory-lean ALP (docs/memory.md): the paper's K=5, n=3 with one forecast for the whole block
# stack instead of one per block, or forecasting the velocity; same full passes as alp_k5.
_add(
    Setting(
        "alp_k5_stack",
        stepper="alp",
        stepper_args={"interval": 5, "order": 3, "alpha": 1.5, "groups": 1},
    )
)
_add(
    Setting(
        "alp_k5_output",
        stepper="alp",
        stepper_args={"interval": 5, "order": 3, "alpha": 1.5, "level": "output"},
    )
)
_add(Setting("taylorseer_n5_o1", stepper="taylorseer", stepper_args={"interval": 5, "order": 1}))
_add(Setting("teacache_0p2", stepper="teacache", stepper_args={"threshold": 0.2}))
_add(Setting("fora_n3", stepper="fora", stepper_args={"interval": 3}))
_add(Setting("fbcache_0p05", stepper="first_block_cache", stepper_args={"threshold": 0.05}))
_add(Setting("magcache", stepper="magcache"))
_add(Setting("fewer_steps_6", stepper="fewer_steps", stepper_args={"steps": 6}))
_add(Setting("dpmpp_2m_6", stepper="dpmpp_2m", stepper_args={"steps": 6}))
_add(
    Setting(
        "diffusers_fbc_0p05",
        stepper="diffusers_cache",
        stepper_args={"config": "first_block_cache", "args": {"threshold": 0.05}},
    )
)
_add(
    Setting(
        "diffusers_taylorseer_lite",
        stepper="diffusers_cache",
        stepper_args={"config": "taylorseer", "args": {"use_lite_mode": True}},
    )
)
# cache-dit's DBCache at its defaults (F8B0, threshold 0.08, 8 warm-up steps), alone and with its
# TaylorSeer calibrator: the configuration its documentation starts from.
_add(Setting("cache_dit_f8b0_0p08", stepper="cache_dit"))
_add(Setting("cache_dit_f8b0_0p08_ts1", stepper="cache_dit", stepper_args={"taylorseer_order": 1}))
