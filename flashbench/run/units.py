"""Units (case x setting x seed): what a run samples, the seeds of their noise, and their rows.

A unit is the grain of resume: its rows file is written last, so it is finished or redone.
Units are named ``<case>__<setting>__seed<k>``; a setting's pooled rows, ``pooled__<setting>``.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor

from flashbench.models.base import CaseInputs, CaseSpec, PortraitModel
from flashbench.models.registry import build_models
from flashbench.run.measure import Measurer
from flashbench.run.rows import TRACE_KEYS, Row
from flashbench.run.timing import Timing
from flashbench.sampling import Sample
from flashbench.settings import Setting
from flashbench.suite.catalog import METRICS, SPEED
from flashbench.suite.document import Suite
from flashbench.suite.settings import setting_dict


@dataclass(frozen=True)
class Unit:
    """One case x setting x seed: the grain of resume and of row files."""

    case: CaseSpec
    setting: Setting
    seed: int

    @property
    def name(self) -> str:
        return f"{self.case.id}__{self.setting.name}__seed{self.seed}"


def pooled_name(setting: Setting) -> str:
    """The name of a setting's pooled rows (FVD, FID), which stand for all its units."""
    return f"pooled__{setting.name}"


def suite_models(suite: Suite) -> dict[str, PortraitModel]:
    """The model of each setting of ``suite`` (one instance per distinct model_args)."""
    return build_models(suite.model, {s.name: suite.model_args_for(s.name) for s in suite.settings})


def case_units(
    suite: Suite, model: PortraitModel, limit: int | None = None
) -> list[tuple[CaseSpec, list[Unit]]]:
    """The suite's cases (the first ``limit`` of them) with their units."""
    cases = suite.cases.expand(model.splits, model.fps)
    if limit is not None:
        if limit < 1:
            raise ValueError(f"--limit={limit} must be >= 1 case")
        cases = cases[:limit]
    units = plan_units(suite, cases)
    return [(case, [u for u in units if u.case == case]) for case in cases]


def plan_units(suite: Suite, cases: Iterable[CaseSpec]) -> list[Unit]:
    """Units in run order: per case, the baseline setting first so that its output is cached for the rest."""
    ordered = sorted(suite.settings, key=lambda s: s.name != suite.baseline)
    return [
        Unit(case, setting, seed) for case in cases for seed in suite.seeds for setting in ordered
    ]


def noise_seed(case: CaseSpec, seed: int) -> int:
    """A seed for the initial noise, the same for every setting of one case and sampling seed."""
    return int(hashlib.sha256(f"{case.id}:{seed}".encode()).hexdigest()[:15], 16)


def reseeded_noise_seed(case: CaseSpec, seed: int) -> int:
    """The seed of the re-seeded baseline's noise: another draw for the same case and sampling seed."""
    return int(hashlib.sha256(f"{case.id}:{seed}:reseeded".encode()).hexdigest()[:15], 16)


def initial_noise(unit: Unit, inputs: CaseInputs) -> Tensor:
    """The unit's initial noise: drawn on the CPU from the case and seed, shared by every setting."""
    return torch.randn(
        inputs.latent_shape,
        generator=torch.Generator().manual_seed(noise_seed(unit.case, unit.seed)),
    )


def reseeded_setting(suite: Suite) -> Setting:
    """The pseudo-setting ``reseeded``: the baseline setting sampled from another noise seed
    (the seed floor), measured and pooled like a setting; its units are the baseline's."""
    return replace(suite.setting(suite.baseline), name="reseeded")


def measured_settings(suite: Suite) -> list[Setting]:
    """The suite's settings, plus ``reseeded`` when metrics.references lists it."""
    extra = [reseeded_setting(suite)] if "reseeded" in suite.metrics.references else []
    return [*suite.settings, *extra]


def baseline_key(suite: Suite, model: PortraitModel, case: CaseSpec, seed: int) -> str:
    """Content hash of everything that determines a case's baseline output."""
    payload = {
        "model": suite.model,
        "weights": model.weights(),
        "case": case.__dict__,
        "seed": seed,
        "steps": suite.steps,
        "shift": suite.shift,
        "setting": setting_dict(suite.setting(suite.baseline)),
        "guidance_drop": list(suite.guidance_drop),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


class NonFiniteMetric(ValueError):
    """A metric's aggregate is NaN or Inf (e.g. no frame had a face)."""


def _row(
    unit: Unit,
    metric: str,
    value: float,
    unit_name: str,
    higher: bool | None,
    backend: str,
    reference: str,
    frame: int | None,
) -> Row:
    """A row of ``unit``: its case and setting fill the identifying fields."""
    return Row(
        case=unit.case.id,
        setting=unit.setting.name,
        seed=unit.seed,
        metric=metric,
        value=float(value),
        unit=unit_name,
        higher_is_better=higher,
        backend=backend,
        reference=reference,
        frame=frame,
        frames=unit.case.frames,
        stepper=unit.setting.stepper,
        windowing=unit.setting.windowing,
    )


def seam_boundaries(setting: Setting, latent_frames: int, video_frames: int) -> list[int]:
    """Video frames where a window of the setting starts or ends (at the first step), for the seam metric."""
    _, windowing, _ = setting.build()
    per_latent = max(1, video_frames // max(1, latent_frames))
    edges = {e for start, stop in windowing.windows(latent_frames, 0) for e in (start, stop)}
    return sorted(e * per_latent for e in edges if 0 < e < latent_frames)


def unit_rows(
    suite: Suite,
    measurer: Measurer,
    unit: Unit,
    result: Sample,
    video: Tensor,
    targets: dict[str, Tensor],
) -> list[Row]:
    """Tidy rows of one unit: each metric against each of its references (and per frame where asked)."""
    rows: list[Row] = []
    boundaries = seam_boundaries(unit.setting, result.latents.shape[2], video.shape[0])
    for name in measurer.names:
        spec = METRICS[name]
        backend = measurer.backends[name]
        for reference in spec.references:
            if reference and (
                reference not in suite.metrics.references or reference not in targets
            ):
                continue
            measured = measurer.values(name, video, targets.get(reference), boundaries, unit.case)
            for figure in spec.figures:
                if figure.name not in measured:
                    continue
                value, frames = measured[figure.name]
                if not math.isfinite(value):
                    raise NonFiniteMetric(
                        f"metric {figure.name!r} vs {reference or 'nothing'} is not finite ({value}) for setting {unit.setting.name!r}"
                    )
                kind = (figure.unit, figure.higher_is_better, backend, reference)
                rows.append(_row(unit, figure.name, value, *kind, None))
                if name in suite.metrics.per_frame and frames is not None:
                    # A frame without a value (e.g. no face found) has no row; the aggregate skips it too.
                    rows.extend(
                        _row(unit, figure.name, v, *kind, i)
                        for i, v in enumerate(frames)
                        if math.isfinite(v)
                    )
    return rows


def speed_rows(unit: Unit, result: Sample, timing: Timing | None) -> list[Row]:
    """The unit's speed rows: wall time from ``timing`` (median and IQR of the timed passes), or
    from the one pass that made ``result`` when there is none; NFE, memory and frames per second."""
    seconds = timing.median if timing is not None else result.seconds
    figures = {
        "wall_seconds": seconds,
        "wall_seconds_iqr": timing.iqr if timing is not None else 0.0,
        "nfe": result.nfe,
        "peak_bytes": result.peak_bytes or 0,
        "cache_bytes": result.peak_cache_bytes,
        "fps": unit.case.frames / max(seconds, 1e-9),
    }
    rows = []
    for metric, value in figures.items():
        unit_name, higher = SPEED[metric]
        rows.append(_row(unit, metric, value, unit_name, higher, "timer", "", None))
    return rows


def trace_records(result: Sample) -> list[dict[str, Any]]:
    """The sampler trace as traces/<unit>.json holds it: one record per step, window and branch."""
    return [
        dict(
            zip(
                TRACE_KEYS,
                (r.step, r.sigma, list(r.window), r.branch, r.action, r.seconds),
                strict=True,
            )
        )
        for r in result.trace
    ]
