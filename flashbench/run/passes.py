"""One sampling pass of a setting on a case: on the run's device, its peak memory measured, its latents checked.

A pass is built once and can be called again (the timing rounds do), always from the same
noise (``plan.initial_noise``, drawn on the CPU, so runs match across devices).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from flashbench.denoiser import Cond
from flashbench.models.base import CaseInputs, PortraitModel
from flashbench.run.plan import Sampling
from flashbench.sampling import Sample, StepEnd, sample
from flashbench.settings import Setting
from metrics.speed import measure


def _step_progress(bar: tqdm, steps: int) -> Callable[[StepEnd], None]:
    """A ``sample`` callback that advances ``bar`` once per denoising step of a ``steps``-step pass."""

    def advance(end: StepEnd) -> None:
        if end.step == 0:
            bar.reset(total=steps)
        bar.update(1)

    return advance


def cond_to(cond: Cond, device: torch.device | str) -> Cond:
    """The conditioning with its tensors on ``device`` (noise is drawn on the CPU, so runs match across devices)."""

    def move(value: Any) -> Any:
        return value.to(device) if isinstance(value, Tensor) else value

    return replace(
        cond,
        static={k: move(v) for k, v in cond.static.items()},
        temporal={k: move(v) for k, v in cond.temporal.items()},
    )


class NonFiniteLatents(ValueError):
    """Sampling produced NaN or Inf."""


def prepare_pass(
    sampling: Sampling,
    model: PortraitModel,
    setting: Setting,
    inputs: CaseInputs,
    noise: Tensor,
    device: torch.device | str = "cpu",
    bar: tqdm | None = None,
    record: Callable[[StepEnd], None] | None = None,
    count_flops: bool = False,
) -> Callable[[], Sample]:
    """One sampling pass of ``setting`` on a case, ready to call (and to call again, for timing).

    ``record``, if given, sees every step as ``sample``'s callback does (the regime profile);
    ``count_flops`` counts the pass's FLOPs (``sample``'s; it slows the pass, so timed passes
    leave it off).
    """
    stepper, windowing, _ = setting.build()
    guidance = sampling.guidance[setting.name]
    if guidance is not None:
        # Dropping nothing makes both branches equal: guidance would silently cost 2x for nothing.
        present = {*inputs.cond.static, *inputs.cond.temporal}
        absent = [key for key in guidance.drop if key not in present]
        if absent:
            raise ValueError(
                f"guidance.drop names {absent}, which model {model.name!r} does not condition on; "
                f"use some of {sorted(present)}"
            )
    noise, cond = noise.to(device), cond_to(inputs.cond, device)
    sigmas = sampling.sigmas()
    progress = None if bar is None else _step_progress(bar, len(stepper.plan(sigmas)) - 1)
    callbacks = [c for c in (progress, record) if c is not None]

    def callback(end: StepEnd) -> None:
        for call in callbacks:
            call(end)

    def run() -> Sample:
        return sample(
            model.denoiser,
            noise,
            sigmas,
            cond,
            stepper=stepper,
            windowing=windowing,
            guidance=guidance,
            callback=callback if callbacks else None,
            count_flops=count_flops,
        )

    return run


def measured_pass(
    sampling: Sampling,
    model: PortraitModel,
    setting: Setting,
    inputs: CaseInputs,
    noise: Tensor,
    bar: tqdm | None,
    device: torch.device | str = "cpu",
    record: Callable[[StepEnd], None] | None = None,
    count_flops: bool = True,
) -> Sample:
    """One pass of ``setting`` that makes a unit's video: its peak memory measured, its FLOPs
    counted (where ``count_flops``), its latents on the CPU and finite."""
    run = prepare_pass(sampling, model, setting, inputs, noise, device, bar, record, count_flops)
    with measure(device) as memory:
        result = run()
    result = replace(result, latents=result.latents.cpu(), peak_bytes=memory.peak_bytes)
    if not torch.isfinite(result.latents).all():
        nan = int(torch.isnan(result.latents).sum())
        inf = int(torch.isinf(result.latents).sum())
        raise NonFiniteLatents(
            f"non-finite latents from setting {setting.name!r}: {nan} NaN and {inf} Inf of {result.latents.numel()} values"
        )
    return result
