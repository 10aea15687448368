"""Pooled metrics (FVD, FID): each setting's saved videos against a reference set, one row per metric and reference."""

from __future__ import annotations

import hashlib
import json
import logging
import math
from pathlib import Path

import torch
from torch import Tensor

from flashbench.models.video import read_video
from flashbench.run.directory import record_error
from flashbench.run.files import atomic_json, atomic_with
from flashbench.run.measure import Measurer, NonFiniteMetric
from flashbench.run.plan import RESEEDED, Plan, Unit, pooled_name
from flashbench.run.rows import POOLED_CASE, POOLED_SEED, Row
from flashbench.settings import Setting
from flashbench.suite.catalog import METRICS, MIN_POOLED_VIDEOS

log = logging.getLogger(__name__)


def check_pooled(plan: Plan, measurer: Measurer) -> None:
    """Refuse, before any unit runs, pooled metrics that the suite's videos cannot feed."""
    cases = [case for case, _ in plan.cases]
    for name in measurer.pooled:
        # The ground-truth side has one video per case, and a covariance needs two samples.
        if len(cases) < MIN_POOLED_VIDEOS:
            raise ValueError(
                f"{plan.source}: metrics.names: {name!r} pools each setting's videos over cases, but this run "
                f"has {len(cases)} case(s); use at least {MIN_POOLED_VIDEOS} (more identities, driving seeds "
                f"or a larger --limit) or drop {name!r}"
            )
        need = measurer.min_frames(name)
        short = [c for c in cases if c.frames < need]
        if short:
            raise ValueError(
                f"{plan.source}: cases.lengths: {name!r} needs videos of at least {need} frames, but case "
                f"{short[0].id!r} has {short[0].frames}; use longer lengths or drop {name!r}"
            )


def video_features(measurer: Measurer, name: str, backend: str, video: Path, cache: Path) -> Tensor:
    """Features of one saved video for pooled metric ``name``, cached by the file's bytes and the backend."""
    key = hashlib.sha256(f"{name}\n{backend}\n".encode() + video.read_bytes()).hexdigest()
    path = cache / name / f"{key}.pt"
    if path.is_file():
        return torch.load(path, weights_only=True)
    features = measurer.features(name, read_video(video)).cpu()
    atomic_with(path, lambda tmp: torch.save(features, tmp))
    return features


def pooled_rows(
    plan: Plan, measurer: Measurer, out: Path, setting: Setting, units: list[Unit]
) -> list[Row]:
    """Rows of one setting's pooled metrics: its saved videos against the cases' ground truth and the baseline's videos.

    Videos are read back one at a time from the mp4 files (both sides through the same codec),
    so memory holds one video and the metric's running sums, never the set.
    """
    videos = out / "videos"
    generated = [videos / u.case.id / f"{setting.name}__seed{u.seed}.mp4" for u in units]
    references: dict[str, list[Path]] = {}
    if "ground_truth" in plan.measures.references:
        truths = [videos / case / "ground_truth.mp4" for case in sorted({u.case.id for u in units})]
        if all(p.is_file() for p in truths):
            references["ground_truth"] = truths
    baseline = plan.baseline.name
    if "baseline" in plan.measures.references and setting.name != baseline:
        references["baseline"] = [
            videos / u.case.id / f"{baseline}__seed{u.seed}.mp4" for u in units
        ]
    manifest = measurer.manifest()
    cache = out / "cache" / "features"
    rows = []
    for name in measurer.pooled:
        spec = METRICS[name]
        backend = json.dumps(manifest[name], sort_keys=True)

        def features(paths: list[Path], name: str = name, backend: str = backend):
            return (video_features(measurer, name, backend, p, cache) for p in paths)

        for reference, real in references.items():
            if reference not in spec.references:
                continue
            value = measurer.pooled_value(name, features(generated), features(real))
            if not math.isfinite(value):
                raise NonFiniteMetric(
                    f"pooled metric {name!r} vs {reference} is not finite ({value}) for setting {setting.name!r}"
                )
            rows.append(
                Row(
                    case=POOLED_CASE,
                    setting=setting.name,
                    seed=POOLED_SEED,
                    metric=name,
                    value=value,
                    unit=spec.unit,
                    higher_is_better=spec.higher_is_better,
                    backend=measurer.backends[name],
                    reference=reference,
                    frame=None,
                    frames=max(u.case.frames for u in units),
                    stepper=setting.stepper,
                    windowing=setting.windowing,
                    samples=len(generated),
                )
            )
    return rows


def write_pooled_rows(plan: Plan, measurer: Measurer, out: Path) -> int:
    """Write rows/pooled__<setting>.json for each setting whose units (and the baseline's) all finished.

    A pooled file records the units it pools; it is rewritten when that list changes (units
    added by a larger --limit) and removed while some of them are unfinished, so pooled rows
    always stand for exactly the units of the run. Returns how many files were written.
    """
    if not measurer.pooled:
        return 0
    units, baseline = plan.units, plan.baseline.name
    finished = {u.name for u in units if (out / "rows" / f"{u.name}.json").is_file()}
    uses_baseline = "baseline" in plan.measures.references
    written = 0
    for setting in plan.settings:
        # The re-seeded baseline pools the videos that the baseline's units saved.
        source = baseline if setting.name == RESEEDED else setting.name
        mine = sorted((u for u in units if u.setting.name == source), key=lambda u: u.name)
        needed = mine + [u for u in units if uses_baseline and u.setting.name == baseline]
        name = pooled_name(setting)
        path = out / "rows" / f"{name}.json"
        inputs = [u.name for u in mine]
        if not mine or any(u.name not in finished for u in needed):
            if path.is_file():
                log.info(
                    "%s: some of its units are unfinished; removing its stale pooled rows", name
                )
                path.unlink()
            continue
        if path.is_file() and json.loads(path.read_text()).get("units") == inputs:
            continue
        try:
            rows = pooled_rows(plan, measurer, out, setting, mine)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as err:  # recorded like a failed unit; the other settings go on
            record_error(out, name, POOLED_CASE, setting.name, POOLED_SEED, err)
            continue
        atomic_json(path, {"unit": name, "units": inputs, "rows": [r.to_json() for r in rows]})
        (out / "errors" / f"{name}.json").unlink(missing_ok=True)
        written += 1
    return written


def pooled_failures(plan: Plan, out: Path) -> tuple[str, ...]:
    """Pooled computations (FVD, FID) whose last attempt failed: their errors/ file is removed on success."""
    return tuple(
        name
        for name in map(pooled_name, plan.settings)
        if (out / "errors" / f"{name}.json").is_file()
    )
