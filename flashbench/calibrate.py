"""Calibration of TeaCache's rescaling polynomial and MagCache's magnitude ratios for any layered denoiser.

A calibration is a JSON file holding the fitted values and the fingerprint of the model they
were fitted on; loading it for another model is refused, since neither transfers (TeaCache
fits reach R^2 = 0.09 on a model they were not fitted on).
"""

from __future__ import annotations

import argparse
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from flashbench.denoiser import Cond, Denoiser
from flashbench.schedule import check_sigmas, flow_match_sigmas
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


def apply_calibration(stepper: object, field: str, kind: str) -> None:
    """Fill a frozen stepper's ``field`` (and ``loaded``) from its ``calibration`` file, if it names one."""
    if stepper.calibration is None:
        return
    if getattr(stepper, field) is not None:
        raise ValueError(
            f"give {field} or calibration, not both; the calibration file holds the {field}"
        )
    calibration = load_calibration(stepper.calibration, kind)
    object.__setattr__(stepper, field, tuple(calibration.values[field]))
    object.__setattr__(stepper, "loaded", calibration)


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


@torch.no_grad()
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
        x, previous = noise.clone(), None
        for step in range(len(sigmas) - 1):
            h, ctx = model.embed(x, sigma_batch(sigmas, step, x), cond)
            m = change_indicator(h, ctx, indicator)
            v = model.head(run_blocks(model, h, ctx), ctx)
            if previous is not None:
                xs.append(relative_l1(m, previous[0]))
                ys.append(relative_l1(v, previous[1]))
            previous = (m, v)
            x = euler_step(x, v, sigmas[step], sigmas[step + 1])
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
    """MagCache's per-step magnitude ratios (Ma et al. 2025, arXiv 2506.09045): mean over tokens of ||r_t|| / ||r_(t-1)||."""
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


# -- command line -----------------------------------------------------------------------------
def _calibrate(args: argparse.Namespace) -> int:
    from flashbench.models import models
    from flashbench.suite import CaseSpec

    torch.set_num_threads(args.threads)
    portrait = models.build(args.model)
    # Training identities: a calibration must not peek at the cases it will be judged on.
    identities = portrait.splits["train"]
    generator = torch.Generator().manual_seed(args.seed)
    noises, conds = [], []
    for i in range(args.samples):
        identity = identities[i % len(identities)]
        case = CaseSpec(
            f"calibrate-{i}",
            "self",
            identity,
            identity,
            args.seed + i,
            args.frames,
            args.resolution,
        )
        inputs = portrait.prepare(case)
        noises.append(torch.randn(inputs.latent_shape, generator=generator))
        conds.append(inputs.cond)
    sigmas = flow_match_sigmas(args.steps, args.shift)
    if args.method == "teacache":
        calibration = calibrate_teacache(
            portrait.denoiser, noises, sigmas, conds, indicator=args.indicator, name=args.model
        )
        summary = (
            f"coefficients {calibration.values['coefficients']}, R^2 {calibration.values['r2']:.3f}"
        )
    else:
        calibration = calibrate_magcache(portrait.denoiser, noises, sigmas, conds, name=args.model)
        summary = f"{len(calibration.values['ratios'])} ratios"
    path = save_calibration(calibration, args.out)
    print(
        f"{args.method} calibration of {args.model} ({calibration.fingerprint}): {summary} -> {path}"
    )
    return 0


def add_subcommands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``calibrate teacache`` and ``calibrate magcache``."""
    calibrate = subparsers.add_parser(
        "calibrate", help="fit TeaCache / MagCache values for a layered denoiser"
    )
    methods = calibrate.add_subparsers(dest="method", required=True)
    for method, help_text in (
        ("teacache", "fit the degree-4 rescaling polynomial (numpy.polyfit) from Euler runs"),
        ("magcache", "measure per-step residual magnitude ratios from Euler runs"),
    ):
        parser = methods.add_parser(method, help=help_text)
        parser.add_argument("--model", default="toy", help="model name from the models registry")
        parser.add_argument("--out", required=True, help="JSON file to write")
        parser.add_argument("--steps", type=int, default=30, help="sampling steps (default 30)")
        parser.add_argument("--shift", type=float, default=5.0, help="schedule shift (default 5)")
        parser.add_argument(
            "--samples", type=int, default=4, help="training cases to run (default 4)"
        )
        parser.add_argument("--frames", type=int, default=8, help="frames per case (default 8)")
        parser.add_argument("--resolution", type=int, default=32, help="frame size (default 32)")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--threads", type=int, default=2)
        if method == "teacache":
            parser.add_argument("--indicator", choices=("auto", "time", "embed"), default="auto")
        parser.set_defaults(func=_calibrate)
