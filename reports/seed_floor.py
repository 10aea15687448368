"""The seed floor: how far the baseline is from itself sampled with another noise seed.

A suite that lists ``reseeded`` among its references measures the baseline setting's output
against the baseline sampled again from another noise seed (rows ``metric@reseeded`` of the
baseline). That is the floor of every ``metric@baseline`` figure: a setting whose distance
from the baseline is no larger than re-seeding's cannot be told apart from the baseline by
that metric ("indistinguishable from re-seeding"); a PSNR above the floor says the sampling
paths are alike, not that quality is kept.
"""

from __future__ import annotations

import math

import pandas as pd

RESEEDED = "reseeded"
WITHIN = "indistinguishable from re-seeding"
BEYOND = "beyond the seed floor"


def seed_floors(summary: pd.DataFrame, baseline: str) -> dict[str, tuple[float, bool | None]]:
    """{metric: (floor, higher_is_better)}: the baseline's mean ``metric@reseeded``."""
    rows = summary[(summary["setting"] == baseline) & (summary["reference"] == RESEEDED)]
    return {r["metric"]: (float(r["mean"]), r["higher_is_better"]) for _, r in rows.iterrows()}


def within_floor(value: float, floor: float, higher_is_better: bool | None) -> bool:
    """Whether a distance from the baseline is no larger than re-seeding's (``value`` vs ``floor``)."""
    if higher_is_better is None or math.isnan(value):
        return False
    return value >= floor if higher_is_better else value <= floor


def floor_table(summary: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """Each setting's ``metric@baseline`` beside its seed floor, and whether it lies within it."""
    floors = seed_floors(summary, baseline)
    records = []
    at_baseline = summary[
        (summary["reference"] == "baseline") & summary["metric"].isin(list(floors))
    ]
    for _, row in at_baseline.sort_values(["metric", "setting"]).iterrows():
        floor, higher = floors[row["metric"]]
        records.append(
            {
                "setting": row["setting"],
                "metric": row["label"],
                "mean": row["mean"],
                "ci_low": row["ci_low"],
                "ci_high": row["ci_high"],
                "seed_floor": floor,
                "verdict": WITHIN if within_floor(row["mean"], floor, higher) else BEYOND,
            }
        )
    columns = ["setting", "metric", "mean", "ci_low", "ci_high", "seed_floor", "verdict"]
    return pd.DataFrame.from_records(records, columns=columns)


def worse_than_floor(summary: pd.DataFrame, baseline: str, metrics: list[str]) -> pd.DataFrame:
    """Gate: settings whose ``metric@baseline`` is further from the baseline than re-seeding is.

    A setting passes a metric when its mean distance from the baseline is within the seed
    floor; one failing row (setting, floor, value, reason) per setting and metric that is not.
    """
    floors = seed_floors(summary, baseline)
    failures = []
    for metric in metrics:
        if metric not in floors:
            known = sorted(floors) or "none (add 'reseeded' to metrics.references)"
            raise ValueError(
                f"no seed floor for {metric!r} in the run; metrics with a floor: {known}"
            )
        floor, higher = floors[metric]
        label = f"{metric}@baseline {'>=' if higher else '<='} seed floor {floor:g}"
        rows = summary[(summary["metric"] == metric) & (summary["reference"] == "baseline")]
        rows = rows.set_index("setting")
        for setting in sorted(set(summary["setting"]) - {baseline}):
            if setting not in rows.index:
                failures.append((setting, label, float("nan"), "no rows for this metric"))
            elif not within_floor(float(rows.loc[setting, "mean"]), floor, higher):
                failures.append((setting, label, float(rows.loc[setting, "mean"]), BEYOND))
    return pd.DataFrame(failures, columns=["setting", "floor", "value", "reason"])
