"""Leaderboard: settings from runs of one protocol, ranked by speedup subject to quality floors."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from reports.gate import Floor, floor_rows
from reports.load import RESEEDED, Run
from reports.tables import quality_labels, summary_table


def check_same_protocol(runs: Sequence[Run]) -> str:
    """The runs' common protocol id; refuses none, null or a mix."""
    if not runs:
        raise ValueError("runs is empty; pass at least one run directory")
    protocols = {run.name: run.manifest.get("protocol") for run in runs}
    missing = [name for name, protocol in protocols.items() if not protocol]
    if missing:
        raise ValueError(
            f"runs {missing} have protocol=null in manifest.json; only runs of a leaderboard "
            "protocol can be ranked together (run a suite that declares one)"
        )
    if len(set(protocols.values())) > 1:
        raise ValueError(f"runs mix protocols {protocols}; rank runs of one protocol at a time")
    return next(iter(protocols.values()))


def check_same_model(runs: Sequence[Run]) -> None:
    """Refuse runs whose model or model weights differ: a protocol fixes the samplers' task, not the network."""
    first = runs[0]
    for run in runs[1:]:
        ours, theirs = first.model, run.model
        if ours != theirs:
            raise ValueError(
                f"runs {first.name!r} and {run.name!r} sampled different models or weights "
                f"({ours} vs {theirs}, manifest model); rank runs of one model's weights"
            )


def check_same_backends(runs: Sequence[Run], summaries: Sequence[pd.DataFrame]) -> None:
    """Refuse runs whose metrics were computed by different backends or weights."""
    seen: dict[str, tuple[str, str]] = {}
    for run, summary in zip(runs, summaries, strict=True):
        for label, group in summary.groupby("label"):
            backends = ", ".join(sorted(set(group["backend"])))
            if "," in backends:
                raise ValueError(
                    f"run {run.name!r} computed {label} with several backends ({backends}); "
                    "a leaderboard needs one backend per metric"
                )
            if label in seen and seen[label][1] != backends:
                raise ValueError(
                    f"metric {label} was computed by backend {seen[label][1]!r} in run "
                    f"{seen[label][0]!r} but {backends!r} in run {run.name!r}; "
                    "rank runs whose metrics share backends"
                )
            seen.setdefault(label, (run.name, backends))
    weights: dict[str, tuple[str, object]] = {}
    for run in runs:
        for metric, info in (run.manifest.get("metric_backends") or {}).items():
            value = info.get("weights") if isinstance(info, dict) else info
            if metric in weights and weights[metric][1] != value:
                raise ValueError(
                    f"metric {metric} used different weights in runs {weights[metric][0]!r} and "
                    f"{run.name!r} (manifest metric_backends); rank runs with identical weights"
                )
            weights.setdefault(metric, (run.name, value))


def leaderboard_table(
    runs: Sequence[Run], floors: Sequence[Floor] = (), *, n_boot: int = 2000, seed: int = 0
) -> pd.DataFrame:
    """One row per (run, setting): speedups and metric means; rank among settings meeting floors."""
    protocol = check_same_protocol(runs)
    check_same_model(runs)
    summaries = [summary_table(run, n_boot=n_boot, seed=seed) for run in runs]
    check_same_backends(runs, summaries)
    entries = []
    for run, summary in zip(runs, summaries, strict=True):
        floor_values = {str(floor): floor_rows(summary, floor) for floor in floors}
        for setting, group in summary[summary["setting"] != RESEEDED].groupby("setting", sort=True):
            means = group.set_index("label")["mean"]
            entry = {
                "protocol": protocol,
                "run": run.name,
                "setting": setting,
                "stepper": group["stepper"].iloc[0],
                "windowing": group["windowing"].iloc[0],
                "speedup_wall": means.get("speedup_wall", float("nan")),
                "speedup_nfe": means.get("speedup_nfe", float("nan")),
                "speedup_flops": means.get("speedup_flops", float("nan")),
            }
            failed = []
            for floor in floors:
                rows = floor_values[str(floor)]
                row = rows[rows["setting"] == setting]
                # The baseline has no fidelity-to-itself rows; it meets such floors by definition.
                if row.empty:
                    ok = setting == run.baseline and floor.reference == "baseline"
                else:
                    ok = floor.passes(float(row["mean"].iloc[0]))
                if not ok:
                    failed.append(str(floor) + (" (not measured)" if row.empty else ""))
            for label in quality_labels(summary):
                entry[label] = means.get(label, float("nan"))
            entry["meets_floors"] = not failed
            entry["failed"] = "; ".join(failed)
            entries.append(entry)
    table = pd.DataFrame(entries)
    table = table.sort_values(
        ["meets_floors", "speedup_wall"], ascending=[False, False], kind="stable"
    ).reset_index(drop=True)
    ranks = table["meets_floors"].cumsum().where(table["meets_floors"])
    table.insert(0, "rank", ranks.astype("Int64"))
    return table
