"""Registries of steppers, windowings and named settings (a setting = windowing x stepper x parameters)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flashbench.registry import Registry
from flashbench.sampling import Guidance
from flashbench.steppers import Stepper
from flashbench.windowing import Full, Sliding

steppers = Registry("stepper")
steppers.register("euler", "flashbench.steppers.euler:Euler")

windowings = Registry("windowing")
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
