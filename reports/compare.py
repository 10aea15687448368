"""Per-metric differences between two runs, with bootstrap 95% CIs and regression flags."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from reports.load import Run, metric_label
from reports.tables import UNIT_KEY, aggregate_rows, check_resamples, direction_of

log = logging.getLogger(__name__)

COLUMNS = [
    "setting", "metric", "higher_is_better", "n_a", "n_b", "mean_a", "mean_b", "diff",
    "ci_low", "ci_high", "significant", "regression", "lost", "note",
]  # fmt: skip


def bootstrap_diff_ci(
    a: np.ndarray,
    b: np.ndarray,
    *,
    paired: bool,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float, float]:
    """mean(b) - mean(a) with a percentile-bootstrap CI (Efron, 1979), paired or independent."""
    check_resamples(n_boot)
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    diff = float(b.mean() - a.mean())
    rng = np.random.default_rng(seed)
    if paired:
        if a.shape != b.shape:
            raise ValueError(f"paired samples need equal sizes, got {a.size} and {b.size}")
        index = rng.integers(0, a.size, size=(n_boot, a.size))
        diffs = (b[index] - a[index]).mean(axis=1)
    else:
        diffs = b[rng.integers(0, b.size, size=(n_boot, b.size))].mean(axis=1) - a[
            rng.integers(0, a.size, size=(n_boot, a.size))
        ].mean(axis=1)
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(diffs, [tail, 100.0 - tail])
    return diff, float(min(low, diff)), float(max(high, diff))


def paired_diff_ci(
    before: pd.DataFrame, after: pd.DataFrame, *, n_boot: int = 2000, seed: int = 0
) -> tuple[pd.DataFrame, float, float, float] | None:
    """after - before paired by unit (case, seed), with its bootstrap CI: the paired values
    (columns ``value_before``, ``value_after``), diff, low, high; None when no unit is in both."""
    paired = before[[*UNIT_KEY, "value"]].merge(
        after[[*UNIT_KEY, "value"]], on=UNIT_KEY, suffixes=("_before", "_after")
    )
    if paired.empty:
        return None
    diff, low, high = bootstrap_diff_ci(
        paired["value_before"].to_numpy(float),
        paired["value_after"].to_numpy(float),
        paired=True,
        n_boot=n_boot,
        seed=seed,
    )
    return paired, diff, low, high


def _suite_hash(run: Run) -> str | None:
    # The runner names it suite_sha256; docs/run-directory.md says "suite content hash".
    return run.manifest.get("suite_sha256", run.manifest.get("suite_hash"))


def compare_runs(a: Run, b: Run, *, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Each (setting, metric) present in both runs: B - A, its CI, and whether B regressed."""
    check_resamples(n_boot)
    if _suite_hash(a) != _suite_hash(b):
        log.warning(
            "runs %s and %s ran different suite files; differences mix causes", a.name, b.name
        )
    # Imported here: reports.seed_floor itself uses this module's bootstrap_diff_ci.
    from reports.seed_floor import WITHIN, floor_table

    rows_a, rows_b = aggregate_rows(a.rows), aggregate_rows(b.rows)
    # B's seed-floor verdicts: each setting's change from the baseline against re-seeding's.
    floors = floor_table(rows_b, b.baseline, n_boot=n_boot, seed=seed)
    floors = floors[floors["verdict"] == WITHIN]
    within = set(zip(floors["setting"], floors["metric"], strict=True))
    key = ["setting", "metric", "reference"]
    records = []
    for (setting, metric, reference), group_a in rows_a.groupby(key, sort=True):
        group_b = rows_b[
            (rows_b["setting"] == setting)
            & (rows_b["metric"] == metric)
            & (rows_b["reference"] == reference)
        ]
        if group_b.empty:
            continue
        direction = group_a["higher_is_better"].iloc[0]
        higher = direction_of(direction)
        backends_a, backends_b = set(group_a["backend"]), set(group_b["backend"])
        merged = group_a.merge(group_b, on=["case", "seed"], suffixes=("_a", "_b"))
        paired = len(merged) == len(group_a) == len(group_b)
        if paired:
            values_a, values_b = merged["value_a"].to_numpy(), merged["value_b"].to_numpy()
        else:
            values_a, values_b = group_a["value"].to_numpy(), group_b["value"].to_numpy()
        diff, low, high = bootstrap_diff_ci(
            values_a, values_b, paired=paired, n_boot=n_boot, seed=seed
        )
        scale = max(abs(values_a.mean()), abs(values_b.mean()), 1.0)
        significant = (low > 0 or high < 0) and abs(diff) > 1e-9 * scale
        note = "" if paired else "unpaired (different cases/seeds)"
        units_a = set(zip(group_a["case"], group_a["seed"], strict=True))
        absent = units_a - set(zip(group_b["case"], group_b["seed"], strict=True))
        if absent:
            note = f"missing in run B: {len(absent)} of {len(units_a)} (case, seed) measured in A"
        comparable = backends_a == backends_b
        if not comparable:
            note = f"backend differs: {sorted(backends_a)} vs {sorted(backends_b)}; {note}".rstrip(
                "; "
            )
        worse = higher is not None and (diff < 0 if higher else diff > 0)
        label = metric_label(metric, reference)
        if (setting, label) in within:
            note = f"{WITHIN} in run B; {note}".rstrip("; ")
        records.append(
            {
                "setting": setting,
                "metric": label,
                "higher_is_better": higher,
                "n_a": len(group_a),
                "n_b": len(group_b),
                "mean_a": float(values_a.mean()),
                "mean_b": float(values_b.mean()),
                "diff": diff,
                "ci_low": low,
                "ci_high": high,
                "significant": bool(significant),
                "regression": bool(significant and worse and comparable),
                "lost": bool(absent),
                "note": note,
            }
        )
    keys_a = set(map(tuple, rows_a[key].drop_duplicates().itertuples(index=False)))
    keys_b = set(map(tuple, rows_b[key].drop_duplicates().itertuples(index=False)))
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
    if not records or all(r["note"].startswith("only in") for r in records):
        raise ValueError(
            f"runs {a.name!r} and {b.name!r} share no (setting, metric); compare runs of one suite"
        )
    return pd.DataFrame.from_records(records, columns=COLUMNS)
