"""Per-metric differences between two runs, with clustered bootstrap 95% CIs and regression flags.

The CI resamples cases (``reports.bootstrap``); with fewer than three cases there is none, and
a difference is neither significant nor a regression: its note says undecided.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from reports.bootstrap import UNIT_KEY, Interval, bootstrap_diff_ci, check_resamples, no_interval
from reports.load import Run, metric_label
from reports.seed_floor import WITHIN, floor_table
from reports.tables import aggregate_rows, direction_of

log = logging.getLogger(__name__)

COLUMNS = [
    "setting", "metric", "higher_is_better", "n_a", "n_b", "cases", "mean_a", "mean_b", "diff",
    "ci_low", "ci_high", "significant", "regression", "lost", "note",
]  # fmt: skip
# A (setting, metric) of a run: the rows the two runs are compared on.
KEY = ["setting", "metric", "reference"]


def _suite_hash(run: Run) -> str | None:
    # The runner names it suite_sha256; docs/run-directory.md says "suite content hash".
    return run.manifest.get("suite_sha256", run.manifest.get("suite_hash"))


def _within_seed_floor(
    rows: pd.DataFrame, baseline: str, *, n_boot: int, seed: int
) -> set[tuple[str, str]]:
    """(setting, label) of every change from the baseline indistinguishable from re-seeding's."""
    floors = floor_table(rows, baseline, n_boot=n_boot, seed=seed)
    floors = floors[floors["verdict"] == WITHIN]
    return set(zip(floors["setting"], floors["metric"], strict=True))


def _interval(
    group_a: pd.DataFrame, group_b: pd.DataFrame, *, n_boot: int, seed: int
) -> tuple[Interval, bool]:
    """B - A with its CI, paired by (case, seed) when both runs measured the same units; and whether paired."""
    merged = group_a.merge(group_b, on=UNIT_KEY, suffixes=("_a", "_b"))
    paired = len(merged) == len(group_a) == len(group_b)
    values = (
        (merged["value_a"], merged["value_b"]) if paired else (group_a["value"], group_b["value"])
    )
    cases = (merged["case"], None) if paired else (group_a["case"], group_b["case"])
    interval = bootstrap_diff_ci(
        values[0].to_numpy(float),
        values[1].to_numpy(float),
        cases[0].to_numpy(),
        None if paired else cases[1].to_numpy(),
        paired=paired,
        n_boot=n_boot,
        seed=seed,
    )
    return interval, paired


def _units(group: pd.DataFrame) -> set[tuple]:
    return set(zip(group["case"], group["seed"], strict=True))


def _difference(
    setting: str,
    label: str,
    group_a: pd.DataFrame,
    group_b: pd.DataFrame,
    *,
    within_seed_floor: bool,
    n_boot: int,
    seed: int,
) -> dict:
    """One (setting, metric) of both runs: B - A with its CI, whether B regressed, and why not."""
    higher = direction_of(group_a["higher_is_better"].iloc[0])
    (diff, low, high, cases), paired = _interval(group_a, group_b, n_boot=n_boot, seed=seed)
    mean_a, mean_b = float(group_a["value"].mean()), float(group_b["value"].mean())
    scale = max(abs(mean_a), abs(mean_b), 1.0)
    # NaN bounds (no interval) compare False: never significant.
    significant = (low > 0 or high < 0) and abs(diff) > 1e-9 * scale
    worse = higher is not None and (diff < 0 if higher else diff > 0)
    note = "" if paired else "unpaired (different cases/seeds)"
    if np.isnan(low):
        note = f"undecided ({no_interval(cases)}); {note}".rstrip("; ")
    units_a = _units(group_a)
    absent = units_a - _units(group_b)
    if absent:
        note = f"missing in run B: {len(absent)} of {len(units_a)} (case, seed) measured in A"
    backends_a, backends_b = set(group_a["backend"]), set(group_b["backend"])
    comparable = backends_a == backends_b
    if not comparable:
        note = f"backend differs: {sorted(backends_a)} vs {sorted(backends_b)}; {note}".rstrip("; ")
    if within_seed_floor:
        note = f"{WITHIN} in run B; {note}".rstrip("; ")
    return {
        "setting": setting,
        "metric": label,
        "higher_is_better": higher,
        "n_a": len(group_a),
        "n_b": len(group_b),
        "cases": cases,
        "mean_a": mean_a,
        "mean_b": mean_b,
        "diff": diff,
        "ci_low": low,
        "ci_high": high,
        "significant": bool(significant),
        "regression": bool(significant and worse and comparable),
        "lost": bool(absent),
        "note": note,
    }


def _only_in_one_run(rows_a: pd.DataFrame, rows_b: pd.DataFrame) -> list[dict]:
    """A record per (setting, metric) that one run lacks; lost when run B lacks it."""
    keys_a = set(map(tuple, rows_a[KEY].drop_duplicates().itertuples(index=False)))
    keys_b = set(map(tuple, rows_b[KEY].drop_duplicates().itertuples(index=False)))
    records = []
    for side, missing in (("A", keys_a - keys_b), ("B", keys_b - keys_a)):
        for setting, metric, reference in sorted(missing):
            records.append(
                {
                    "setting": setting,
                    "metric": metric_label(metric, reference),
                    "significant": False,
                    "regression": False,
                    "lost": side == "A",
                    "note": f"only in run {side}",
                }
            )
    return records


def compare_runs(a: Run, b: Run, *, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Each (setting, metric) present in both runs: B - A, its CI, and whether B regressed."""
    check_resamples(n_boot)
    if _suite_hash(a) != _suite_hash(b):
        log.warning(
            "runs %s and %s ran different suite files; differences mix causes", a.name, b.name
        )
    rows_a, rows_b = aggregate_rows(a.rows), aggregate_rows(b.rows)
    # B's seed-floor verdicts: each setting's change from the baseline against re-seeding's.
    within = _within_seed_floor(rows_b, b.baseline, n_boot=n_boot, seed=seed)
    records = []
    for (setting, metric, reference), group_a in rows_a.groupby(KEY, sort=True):
        group_b = rows_b[
            (rows_b["setting"] == setting)
            & (rows_b["metric"] == metric)
            & (rows_b["reference"] == reference)
        ]
        if group_b.empty:
            continue
        label = metric_label(metric, reference)
        records.append(
            _difference(
                setting,
                label,
                group_a,
                group_b,
                within_seed_floor=(setting, label) in within,
                n_boot=n_boot,
                seed=seed,
            )
        )
    records += _only_in_one_run(rows_a, rows_b)
    if not records or all(r["note"].startswith("only in") for r in records):
        raise ValueError(
            f"runs {a.name!r} and {b.name!r} share no (setting, metric); compare runs of one suite"
        )
    return pd.DataFrame.from_records(records, columns=COLUMNS)
