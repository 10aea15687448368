"""Comparison tables: per-setting speed and quality with bootstrap 95% confidence intervals.

Intervals are clustered percentile bootstraps that resample cases, keeping each case's seeds
together (``reports.bootstrap``); with fewer than three cases a cell says so instead.
"""

from __future__ import annotations

import pandas as pd

from flashbench.run.rows import SPEED
from reports.bootstrap import UNIT_KEY, bootstrap_mean_ci, bootstrap_ratio_ci, format_interval
from reports.load import RESEEDED, Run, metric_label

# Repeated wall times whose IQR exceeds this fraction of their median are not to be trusted
# (torch.utils.benchmark warns at the same 10%).
SPREAD_WARNING = 0.1
ARROWS = {True: "↑", False: "↓"}
# The speedups derived per setting, baseline cost over the setting's, each from a speed row:
# wall time, full passes and FLOPs counted (docs/run-directory.md, "Cost is counted three ways").
SPEEDUPS = {"speedup_wall": "wall_seconds", "speedup_nfe": "nfe", "speedup_flops": "flops"}
SUMMARY_COLUMNS = [
    "suite", "setting", "stepper", "windowing", "metric", "reference", "label", "unit",
    "higher_is_better", "backend", "n", "cases", "mean", "ci_low", "ci_high",
]  # fmt: skip


def direction_of(higher_is_better: object) -> bool | None:
    """A rows table's ``higher_is_better`` cell as a bool, or None for a metric without a direction."""
    return None if pd.isna(higher_is_better) else bool(higher_is_better)


def aggregate_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """One value per unit and metric: aggregate rows, or the frame mean where only frames exist."""
    aggregate = rows[rows["frame"].isna()]
    per_frame = rows[rows["frame"].notna()]
    key = ["case", "setting", "seed", "metric", "reference"]
    have = set(map(tuple, aggregate[key].itertuples(index=False)))
    only_frames = per_frame[[tuple(k) not in have for k in per_frame[key].itertuples(index=False)]]
    if only_frames.empty:
        return aggregate.reset_index(drop=True)
    first = {c: "first" for c in rows.columns if c not in (*key, "value", "frame")}
    averaged = only_frames.groupby(key, as_index=False).agg({"value": "mean", **first})
    averaged["frame"] = pd.array([pd.NA] * len(averaged), dtype="Int64")
    return pd.concat([aggregate, averaged[aggregate.columns]], ignore_index=True)


def _paired(aggregate: pd.DataFrame, metric: str, baseline: str, setting: str) -> pd.DataFrame:
    """Baseline and setting values of ``metric`` paired by unit (case, seed), else by case."""
    speed = aggregate[(aggregate["metric"] == metric) & (aggregate["reference"] == "")]
    base = speed[speed["setting"] == baseline]
    other = speed[speed["setting"] == setting]
    paired = base.merge(other, on=UNIT_KEY, suffixes=("_base", "_setting"))
    if paired.empty:
        # A baseline sampled once per case (cached) still pairs with every seed of the case.
        base_mean = base.groupby("case", as_index=False)["value"].mean()
        paired = base_mean.merge(other, on="case", suffixes=("_base", "_setting"))
    return paired


def summary_table(run: Run, *, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Tidy per-setting summary: every metric's mean and 95% CI, plus derived speedups."""
    aggregate = aggregate_rows(run.rows)
    records = []
    groups = aggregate.groupby(["setting", "metric", "reference"], sort=True, dropna=False)
    for (setting, metric, reference), group in groups:
        mean, low, high, cases = bootstrap_mean_ci(
            group["value"].to_numpy(), group["case"].to_numpy(), n_boot=n_boot, seed=seed
        )
        direction = group["higher_is_better"].iloc[0]
        records.append(
            {
                "setting": setting,
                "stepper": group["stepper"].iloc[0],
                "windowing": group["windowing"].iloc[0],
                "metric": metric,
                "reference": reference,
                "label": metric_label(metric, reference),
                "unit": group["unit"].iloc[0],
                "higher_is_better": direction_of(direction),
                "backend": ", ".join(sorted(set(group["backend"]))),
                "n": len(group),
                "cases": cases,
                "mean": mean,
                "ci_low": low,
                "ci_high": high,
            }
        )
    settings = aggregate.drop_duplicates("setting").set_index("setting")
    if run.baseline not in settings.index:
        raise ValueError(
            f"baseline={run.baseline!r} (manifest.json) has no rows; known settings are "
            f"{sorted(settings.index)}; speedups need the baseline's wall_seconds, nfe and flops"
        )
    for setting in settings.index:
        for name, metric in SPEEDUPS.items():
            paired = _paired(aggregate, metric, run.baseline, setting)
            if paired.empty:
                continue
            mean, low, high, cases = bootstrap_ratio_ci(
                paired["value_base"].to_numpy(),
                paired["value_setting"].to_numpy(),
                paired["case"].to_numpy(),
                n_boot=n_boot,
                seed=seed,
            )
            records.append(
                {
                    "setting": setting,
                    "stepper": settings.loc[setting, "stepper"],
                    "windowing": settings.loc[setting, "windowing"],
                    "metric": name,
                    "reference": run.baseline,
                    "label": name,
                    "unit": "x",
                    "higher_is_better": True,
                    "backend": "derived",
                    "n": len(paired),
                    "cases": cases,
                    "mean": mean,
                    "ci_low": low,
                    "ci_high": high,
                }
            )
    summary = pd.DataFrame.from_records(records)
    summary.insert(0, "suite", run.suite)
    return summary[SUMMARY_COLUMNS]


def format_bytes(value: float) -> str:
    """``1536`` -> ``"1.5 KiB"``: memory in the largest binary unit that keeps it >= 1."""
    for power, name in ((3, "GiB"), (2, "MiB"), (1, "KiB")):
        if abs(value) >= 1024**power:
            return f"{value / 1024**power:.3g} {name}"
    return f"{value:.0f} B"


def summary_row(summary: pd.DataFrame, setting: str, label: str) -> pd.Series | None:
    """The row of ``summary_table``'s ``summary`` for ``setting`` and ``label``; None if unmeasured."""
    match = summary[(summary["setting"] == setting) & (summary["label"] == label)]
    return None if match.empty else match.iloc[0]


def _format_ci(row: pd.Series | None, digits: int = 3) -> str:
    if row is None:
        return "–"
    if row["ci_low"] == row["ci_high"]:  # every case alike: nothing for an interval to show
        return f"{row['mean']:.{digits}g}"
    return format_interval(
        row["mean"], row["ci_low"], row["ci_high"], int(row["cases"]), digits=digits
    )


def quality_labels(summary: pd.DataFrame) -> list[str]:
    """Labels of the quality metrics (everything but speed figures and derived speedups)."""
    quality = summary[~summary["metric"].isin([*SPEED, *SPEEDUPS])]
    return sorted(set(quality["label"]))


def _ordered_settings(summary: pd.DataFrame, baseline: str) -> list[str]:
    # The re-seeded baseline is no setting: the seed-floor table shows it.
    return sorted(set(summary["setting"]) - {RESEEDED}, key=lambda s: (s != baseline, s))


def format_flops(value: float) -> str:
    """``7.1e9`` -> ``"7.1 GFLOP"``: a count in the largest decimal prefix that keeps it >= 1."""
    for power, prefix in ((15, "P"), (12, "T"), (9, "G"), (6, "M"), (3, "k")):
        if abs(value) >= 10**power:
            return f"{value / 10**power:.3g} {prefix}FLOP"
    return f"{value:.0f} FLOP"


def speed_table(summary: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """One row per setting, baseline first: full passes and FLOPs, speedups (wall, full passes,
    FLOPs), peak memory, wall time. Runs made before FLOPs were counted show "–" for them."""
    table = []
    for setting in _ordered_settings(summary, baseline):
        info = summary[summary["setting"] == setting].iloc[0]
        nfe = summary_row(summary, setting, "nfe")
        flops = summary_row(summary, setting, "flops")
        peak = summary_row(summary, setting, "peak_bytes")
        table.append(
            {
                "setting": setting + (" (baseline)" if setting == baseline else ""),
                "stepper": info["stepper"],
                "windowing": info["windowing"],
                "NFE": "–" if nfe is None else f"{nfe['mean']:.4g}",
                "FLOPs": "–" if flops is None else format_flops(flops["mean"]),
                "speedup wall ↑": _format_ci(summary_row(summary, setting, "speedup_wall")),
                "speedup NFE ↑": _format_ci(summary_row(summary, setting, "speedup_nfe")),
                "speedup FLOPs ↑": _format_ci(summary_row(summary, setting, "speedup_flops")),
                "peak memory": "–" if peak is None else format_bytes(peak["mean"]),
                "wall s ↓": _format_ci(summary_row(summary, setting, "wall_seconds")),
            }
        )
    return pd.DataFrame(table)


def timing_warnings(run: Run, summary: pd.DataFrame) -> list[str]:
    """One line per setting whose repeated wall times spread wider than SPREAD_WARNING (IQR / median)."""
    wall = summary[summary["metric"] == "wall_seconds"].set_index("setting")["mean"]
    spread = summary[summary["metric"] == "wall_seconds_iqr"].set_index("setting")["mean"]
    load = run.manifest.get("load_average")
    cores = (run.manifest.get("device") or {}).get("cpu_count")
    context = f" (load average {load[0]:g} on {cores} cores when the run started)" if load else ""
    lines = []
    for setting in _ordered_settings(summary, run.baseline):
        if setting not in spread.index or setting not in wall.index or wall[setting] <= 0:
            continue
        relative = spread[setting] / wall[setting]
        if relative > SPREAD_WARNING:
            lines.append(
                f"wall time of {setting!r} is too noisy to trust: its repeated timings spread "
                f"{relative:.0%} of their median (IQR){context}; other jobs were likely competing for "
                "the cores. Read its speedup with care, or rerun on an idle machine or with more "
                "metrics.timing_repeats."
            )
    return lines


def quality_table(summary: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """One row per setting, baseline first: every quality metric's mean [95% CI] with its arrow."""
    table = []
    for setting in _ordered_settings(summary, baseline):
        row = {"setting": setting + (" (baseline)" if setting == baseline else "")}
        for label in quality_labels(summary):
            first = summary[summary["label"] == label].iloc[0]
            arrow = ARROWS.get(first["higher_is_better"], "")
            row[f"{label} {arrow}".strip()] = _format_ci(summary_row(summary, setting, label))
        table.append(row)
    return pd.DataFrame(table)


def comparison_table(summary: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """The speed table and the quality table side by side (one row per setting)."""
    quality = quality_table(summary, baseline).drop(columns="setting")
    return pd.concat([speed_table(summary, baseline), quality], axis=1)


def metric_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Per metric: direction, unit and the backend that computed it (one row per metric)."""
    rows = []
    for label, group in summary.groupby("label", sort=True):
        first = group.iloc[0]
        rows.append(
            {
                "metric": label,
                "better": {True: "↑ higher", False: "↓ lower"}.get(first["higher_is_better"], "–"),
                "unit": first["unit"] or "–",
                "reference": first["reference"] or "–",
                "backend": ", ".join(sorted(set(", ".join(group["backend"]).split(", ")))),
            }
        )
    return pd.DataFrame(rows)
