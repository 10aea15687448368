"""Regression gate: accelerated settings must stay above fidelity floors against the baseline.

Typical CI floors against the un-accelerated output: PSNR >= 30 dB, SSIM >= 0.92,
identity similarity >= 0.97.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from reports.bootstrap import no_interval
from reports.load import RESEEDED, Run
from reports.seed_floor import worse_than_floor
from reports.tables import aggregate_rows, summary_table

FLOOR_PATTERN = re.compile(r"^\s*([A-Za-z_][\w.]*)(?:@(\w*))?\s*(>=|<=)\s*([-+0-9.eE]+)\s*$")


@dataclass(frozen=True)
class Floor:
    """``metric@reference >= bound`` (``min``) or ``<= bound`` (``max``); reference None = any."""

    metric: str
    reference: str | None
    bound: float
    kind: str  # "min" or "max"

    def passes(self, value: float) -> bool:
        return value >= self.bound if self.kind == "min" else value <= self.bound

    def __str__(self) -> str:
        name = self.metric if self.reference is None else f"{self.metric}@{self.reference}"
        return f"{name} {'>=' if self.kind == 'min' else '<='} {self.bound:g}"


def parse_floor(text: str) -> Floor:
    """Parse ``"id_sim>=0.9"`` or ``"psnr@baseline>=30"`` or ``"fvd<=150"`` into a Floor."""
    match = FLOOR_PATTERN.match(text)
    if match is None:
        raise ValueError(
            f"floor={text!r} is not METRIC[@REFERENCE]>=VALUE or METRIC[@REFERENCE]<=VALUE; "
            "e.g. 'psnr@baseline>=30' or 'fvd@ground_truth<=150'"
        )
    metric, reference, operator, bound = match.groups()
    try:
        value = float(bound)
    except ValueError as error:
        raise ValueError(f"floor={text!r} has bound={bound!r}, not a number") from error
    return Floor(metric, reference, value, "min" if operator == ">=" else "max")


def baseline_floors(**floors: float | None) -> list[Floor]:
    """``min_psnr=30, max_lpips=0.1`` -> floors on fidelity-to-baseline rows (None = unset)."""
    parsed = []
    for name, bound in floors.items():
        if bound is None:
            continue
        kind, _, metric = name.partition("_")
        if kind not in ("min", "max") or not metric:
            raise ValueError(
                f"floor {name}={bound!r} must be named min_<metric> or max_<metric>, "
                "e.g. min_psnr=30 or max_lpips=0.1"
            )
        parsed.append(Floor(metric, "baseline", float(bound), kind))
    return parsed


def floor_rows(summary: pd.DataFrame, floor: Floor) -> pd.DataFrame:
    """Summary rows a floor applies to; ``psnr@baseline`` also matches a ``psnr_vs_baseline`` row."""
    names = {floor.metric}
    if floor.reference:
        names.add(f"{floor.metric}_vs_{floor.reference}")
    match = summary[summary["metric"].isin(names)]
    if floor.reference is not None:
        match = match[
            (match["reference"] == floor.reference)
            | (match["metric"] == f"{floor.metric}_vs_{floor.reference}")
        ]
    references = set(match["reference"])
    if floor.reference is None and len(references) > 1:
        raise ValueError(
            f"floor {floor} is ambiguous: {floor.metric} is measured against {sorted(references)}; "
            f"name one, e.g. '{floor.metric}@{sorted(references)[0]}>={floor.bound:g}'"
        )
    if match.empty:
        available = sorted(set(summary["label"]))
        raise ValueError(
            f"floor {floor} matches no metric in the run; available metrics: {available}"
        )
    return match


def failing_settings(
    summary: pd.DataFrame, baseline: str, floors: list[Floor], *, statistic: str = "mean"
) -> pd.DataFrame:
    """Accelerated settings below a floor: one row per (setting, floor) that fails.

    ``statistic="mean"`` judges the mean over cases and seeds; ``"ci"`` the pessimistic end of
    its clustered bootstrap 95% CI (the lower bound for a min floor), which fails noisy
    settings too, and fails as undecided a setting with too few cases for an interval.
    """
    if statistic not in ("mean", "ci"):
        raise ValueError(f"statistic={statistic!r} must be 'mean' or 'ci'")
    if not floors:
        raise ValueError("floors is empty; give at least one, e.g. min_psnr=30")
    settings = sorted(set(summary["setting"]) - {baseline, RESEEDED})
    failures = []
    for floor in floors:
        rows = floor_rows(summary, floor).set_index("setting")
        for setting in settings:
            if setting not in rows.index:
                failures.append((setting, str(floor), float("nan"), "no rows for this metric"))
                continue
            row = rows.loc[setting]
            row = row.iloc[0] if isinstance(row, pd.DataFrame) else row
            value = row["mean"]
            if statistic == "ci":
                value = row["ci_low"] if floor.kind == "min" else row["ci_high"]
                if pd.isna(value):
                    reason = f"undecided ({no_interval(int(row['cases']))})"
                    failures.append((setting, str(floor), float(row["mean"]), reason))
                    continue
            if not floor.passes(value):
                failures.append((setting, str(floor), float(value), "below floor"))
    return pd.DataFrame(failures, columns=["setting", "floor", "value", "reason"])


def gate_failures(
    run: Run,
    floors: list[Floor],
    statistic: str,
    seed_floor: Sequence[str] = (),
    *,
    n_boot: int = 2000,
) -> pd.DataFrame:
    """Failures of the bound floors and of the ``seed_floor`` metrics (reports/seed_floor.py) together.

    ``seed_floor`` names ``METRIC[@REFERENCE]``, e.g. ``psnr@baseline`` or ``temporal_deviation@ground_truth``.
    """
    failures = worse_than_floor(
        aggregate_rows(run.rows), run.baseline, list(seed_floor), n_boot=n_boot
    )
    if floors or not seed_floor:
        summary = summary_table(run, n_boot=n_boot)
        bounded = failing_settings(summary, run.baseline, floors, statistic=statistic)
        failures = pd.concat([bounded, failures], ignore_index=True)
    return failures
