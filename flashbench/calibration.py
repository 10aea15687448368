"""Calibration of TeaCache's rescaling polynomial and MagCache's magnitude ratios for any layered denoiser.

The data, its files and the fits; the ``flashbench calibrate`` subcommand lives in
``flashbench/calibrate.py``.

A calibration is a JSON file holding the fitted values and the fingerprint of the model they
were fitted on; loading it for another model is refused, since neither transfers (TeaCache
fits reach R^2 = 0.09 on a model they were not fitted on).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from flashbench.denoiser import Cond, Denoiser, LayeredDenoiser
from flashbench.sampling import StepEnd, sample
from flashbench.schedule import check_sigmas
from flashbench.steppers.base import euler_step, sigma_batch
from flashbench.steppers.layered import (
    change_indicator,
    check_choice,
    relative_l1,
    require_layered,
    run_blocks,
    token_norms,
)

FORMAT = 1


@dataclass(frozen=True)
class Calibration:
    """Values fitted on one model (``fingerprint``) at ``steps`` sampling steps."""

    kind: str
    fingerprint: str
    model: str
    steps: int
    values: Mapping[str, Any] = field(default_factory=dict)
    format: int = FORMAT


def model_fingerprint(model: Denoiser) -> str:
    """A hash of the model's class, parameter names, shapes, dtypes and value sums (cheap on any device)."""
    digest = hashlib.sha256(f"{type(model).__module__}.{type(model).__qualname__}".encode())
    parameters = getattr(model, "named_parameters", None)
    if callable(parameters):
        with torch.no_grad():
            for name, p in parameters():
                p64 = p.detach().double()
                digest.update(
                    f"{name}:{tuple(p.shape)}:{p.dtype}:{float(p64.sum()):.6e}:{float(p64.abs().sum()):.6e}".encode()
                )
    digest.update(f"blocks:{len(getattr(model, 'blocks', ()))}".encode())
    return digest.hexdigest()[:16]


def save_calibration(calibration: Calibration, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(calibration), indent=2) + "\n")
    return path


def resolve_calibration(
    path: str | None, given: Sequence[float] | None, field: str, kind: str
) -> tuple[tuple[float, ...] | None, Calibration | None]:
    """A stepper's ``field`` values and the calibration they came from, before the stepper is built.

    ``given`` as it is when no calibration file is named; else the file's values (of ``kind``).
    """
    if path is None:
        return given, None
    if given is not None:
        raise ValueError(
            f"give {field} or calibration, not both; the calibration file holds the {field}"
        )
    calibration = load_calibration(path, kind)
    return tuple(calibration.values[field]), calibration


def load_calibration(path: str | Path, kind: str) -> Calibration:
    """Read a calibration file and check it is of ``kind`` (``teacache`` or ``magcache``)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(
            f"calibration={str(path)!r} does not exist; make one with `flashbench calibrate {kind} --out {path}`"
        )
    try:
        data = json.loads(path.read_text())
        calibration = Calibration(**data)
    except (json.JSONDecodeError, TypeError) as err:
        raise ValueError(
            f"calibration={str(path)!r} is not a flashbench calibration file ({err}); remake it with `flashbench calibrate {kind}`"
        ) from err
    if calibration.kind != kind:
        raise ValueError(
            f"calibration={str(path)!r} is a {calibration.kind} calibration, not {kind}; run `flashbench calibrate {kind}`"
        )
    return calibration


def check_calibration(
    calibration: Calibration, model: Denoiser, source: str = "calibration"
) -> None:
    """Refuse a calibration fitted on another model."""
    found = model_fingerprint(model)
    if found != calibration.fingerprint:
        raise ValueError(
            f"{source} was fitted on model {calibration.model!r} (fingerprint {calibration.fingerprint}), "
            f"not on this {type(model).__name__} (fingerprint {found}); run `flashbench calibrate "
            f"{calibration.kind}` for this model"
        )


def check_loaded(stepper: Any) -> None:
    """A stepper naming a calibration file holds its contents: its registry factory read them."""
    if stepper.calibration is not None and stepper.loaded is None:
        raise ValueError(
            f"calibration={stepper.calibration!r} is read by {stepper.name}(calibration=...) "
            f"(steppers.build({stepper.name!r}, ...)), not by the {type(stepper).__name__} class"
        )


def open_cached_layers(stepper: Any, model: Denoiser, cache: dict) -> LayeredDenoiser:
    """The opening of TeaCache's and MagCache's ``velocity``: the model as a layered denoiser, and
    (once per cache) their calibration checked against it."""
    model = require_layered(
        model, stepper.name, "for a black-box denoiser use alp or taylorseer with level='output'"
    )
    if stepper.loaded is not None and "checked" not in cache:
        check_calibration(stepper.loaded, model, f"calibration={stepper.calibration!r}")
        cache["checked"] = True
    return model


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
