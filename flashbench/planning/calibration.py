"""Fitting TeaCache's rescaling polynomial and MagCache's magnitude ratios on any layered denoiser.

The file format and its checks live beside the steppers that read them
(``flashbench/steppers/calibration.py``); the ``flashbench calibrate`` command in
``flashbench/cli/calibrate.py``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from flashbench.denoiser import Cond, Denoiser, LayeredDenoiser
from flashbench.sampling import StepEnd, sample
from flashbench.schedule import check_sigmas
from flashbench.steppers.base import euler_step, sigma_batch
from flashbench.steppers.calibration import Calibration, model_fingerprint
from flashbench.steppers.layered import (
    change_indicator,
    check_choice,
    relative_l1,
    require_layered,
    run_blocks,
    token_norms,
)


def _runs(
    noises: Tensor | Sequence[Tensor], cond: Cond | Sequence[Cond] | None
) -> list[tuple[Tensor, Cond]]:
    """(noise, conditioning) pairs: one conditioning for all noises, or one per noise."""
    noises = [noises] if isinstance(noises, Tensor) else list(noises)
    conds = (
        [cond if cond is not None else Cond()] * len(noises)
        if not isinstance(cond, Sequence)
        else list(cond)
    )
    if len(conds) != len(noises):
        raise ValueError(
            f"got {len(noises)} noises but {len(conds)} conditionings; give one per noise or one for all"
        )
    return list(zip(noises, conds, strict=True))


def _watched_run(
    model: LayeredDenoiser, noise: Tensor, sigmas: Tensor, cond: Cond, indicator: str
) -> tuple[list[Tensor], list[Tensor]]:
    """One Euler run through ``sample``: per step, TeaCache's indicator and the model output."""

    @torch.no_grad()
    def watched(x: Tensor, step: int) -> Tensor:
        h, ctx = model.embed(x, sigma_batch(sigmas, step, x), cond)
        return change_indicator(h, ctx, indicator)

    # The indicator of step i is watched on the latent step i starts from: the noise, then the
    # latent the callback sees after step i - 1.
    indicators, outputs = [watched(noise, 0)], []

    def record(end: StepEnd) -> None:
        (v,) = end.velocities.values()
        outputs.append(v)
        if end.step + 2 < len(sigmas):
            indicators.append(watched(end.x, end.step + 1))

    sample(model, noise, sigmas, cond, callback=record)
    return indicators, outputs


def teacache_pairs(
    model: Denoiser,
    noises: Tensor | Sequence[Tensor],
    sigmas: Tensor,
    conds: Cond | Sequence[Cond] | None = None,
    indicator: str = "auto",
) -> tuple[np.ndarray, np.ndarray]:
    """Per step of Euler sampling: (relative L1 change of the indicator, of the model output)."""
    model = require_layered(
        model, "teacache calibration", "TeaCache watches the first block's input"
    )
    check_choice(indicator, "indicator", ("auto", "time", "embed"))
    check_sigmas(sigmas)
    xs, ys = [], []
    for noise, cond in _runs(noises, conds):
        indicators, outputs = _watched_run(model, noise, sigmas, cond, indicator)
        for step in range(1, len(outputs)):
            xs.append(relative_l1(indicators[step], indicators[step - 1]))
            ys.append(relative_l1(outputs[step], outputs[step - 1]))
    return np.asarray(xs), np.asarray(ys)


def calibrate_teacache(
    model: Denoiser,
    noises: Tensor | Sequence[Tensor],
    sigmas: Tensor,
    conds: Cond | Sequence[Cond] | None = None,
    *,
    indicator: str = "auto",
    degree: int = 4,
    name: str = "",
) -> Calibration:
    """Fit TeaCache's rescaling polynomial (Liu et al. 2024, arXiv 2411.19108) with numpy.polyfit of ``degree``."""
    xs, ys = teacache_pairs(model, noises, sigmas, conds, indicator)
    if len(np.unique(xs)) <= degree:
        raise ValueError(
            f"{len(np.unique(xs))} distinct indicator changes cannot fit a degree-{degree} polynomial; "
            "use more steps or more noise samples"
        )
    coefficients = np.polyfit(xs, ys, degree)
    fitted = np.polyval(coefficients, xs)
    total = float(((ys - ys.mean()) ** 2).sum())
    r2 = 1.0 - float(((ys - fitted) ** 2).sum()) / total if total > 0 else 1.0
    return Calibration(
        "teacache",
        model_fingerprint(model),
        name or type(model).__name__,
        len(sigmas) - 1,
        {
            "coefficients": [float(c) for c in coefficients],
            "indicator": indicator,
            "r2": r2,
            "points": len(xs),
        },
    )


@torch.no_grad()
def calibrate_magcache(
    model: Denoiser,
    noises: Tensor | Sequence[Tensor],
    sigmas: Tensor,
    conds: Cond | Sequence[Cond] | None = None,
    *,
    name: str = "",
) -> Calibration:
    """MagCache's per-step magnitude ratios (Ma et al. 2025, arXiv 2506.09045): mean over tokens of ||r_t|| / ||r_(t-1)||.

    Its own Euler loop, not ``sample``: the ratios read the block stack's residual, which only
    exists inside the model pass (``sample``'s callback sees the velocity, after the head).
    """
    model = require_layered(
        model, "magcache calibration", "MagCache watches the block stack's residual"
    )
    check_sigmas(sigmas)
    steps = len(sigmas) - 1
    sums = np.zeros(steps)
    samples = _runs(noises, conds)
    for noise, cond in samples:
        x, previous = noise.clone(), None
        for step in range(steps):
            h, ctx = model.embed(x, sigma_batch(sigmas, step, x), cond)
            out = run_blocks(model, h, ctx)
            norms = token_norms(out - h)
            sums[step] += (
                float((norms / previous.clamp_min(1e-12)).mean()) if previous is not None else 1.0
            )
            previous = norms
            x = euler_step(x, model.head(out, ctx), sigmas[step], sigmas[step + 1])
    ratios = sums / len(samples)
    return Calibration(
        "magcache",
        model_fingerprint(model),
        name or type(model).__name__,
        steps,
        {"ratios": [float(r) for r in ratios]},
    )
