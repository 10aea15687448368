"""Calibration files of TeaCache and MagCache: the record, its JSON file, and the check that it fits the model.

A calibration holds the fitted values and the fingerprint of the model they were fitted on;
loading it for another model is refused, since neither transfers (TeaCache fits reach
R^2 = 0.09 on a model they were not fitted on). The fits live in
``flashbench/planning/calibration.py``; the ``flashbench calibrate`` command in
``flashbench/cli/calibrate.py``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from flashbench.denoiser import Denoiser, LayeredDenoiser
from flashbench.steppers.layered import require_layered

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
