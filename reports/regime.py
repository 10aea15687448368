"""The regime section: how hard acceleration is on the run's model, measured on its baseline.

Three readings, reported and never tuned: the seed floor (the baseline against itself
re-sampled from another noise seed), the penalty of fewer Euler steps at that floor, and the
velocity profile along the baseline's path (``regime/<unit>.json``, written by the runner with
``flashbench.planning.regime.VelocityRecorder``): TeaCache's observation, the relative L1 change of the
velocity from one step to the next (Liu et al. 2024, arXiv 2411.19108), and MagCache's, the ratio
of successive magnitudes (Ma et al. 2025, arXiv 2506.09045). MagCache's published ratios for
Wan2.1 (``reports/data/magcache_wan21_ratios.json``, measured on the block stack's residual,
not on the velocity) are drawn beside ours for scale.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from reports.load import RESEEDED, Run, RunFormatError, json_files, metric_label, read_json
from reports.plots import _figure

PUBLISHED = Path(__file__).with_name("data") / "magcache_wan21_ratios.json"
PROFILE_COLUMNS = ("step", "sigma", "relative_change", "magnitude_ratio")
# Fidelity to the baseline, in the order the floor table reads them.
FLOOR_METRICS = {"psnr": 2, "ssim": 4, "lpips": 4}  # metric -> decimals shown


def load_profiles(run: Run) -> pd.DataFrame:
    """The baseline units' velocity profiles, one row per (unit, step); empty when the run has none."""
    finished = set(run.rows["unit_id"])
    records = []
    for path in json_files(run.path / "regime"):
        if path.stem not in finished:  # an unfinished unit's profile may be redone on resume
            continue
        payload = read_json(path)
        if not isinstance(payload, list) or any(
            not isinstance(r, dict) or any(c not in r for c in PROFILE_COLUMNS) for r in payload
        ):
            raise RunFormatError(f"{path} must hold a list of records with keys {PROFILE_COLUMNS}")
        records += [{"unit_id": path.stem, **{c: r[c] for c in PROFILE_COLUMNS}} for r in payload]
    return pd.DataFrame.from_records(records, columns=["unit_id", *PROFILE_COLUMNS])


def fewer_steps_table(run: Run, summary: pd.DataFrame) -> pd.DataFrame:
    """Fidelity to the baseline of the re-seeded baseline and of each fewer-Euler-steps setting, by NFE."""
    steppers = run.rows.groupby("setting")["stepper"].first()
    chosen = [RESEEDED, *sorted(s for s, name in steppers.items() if name == "fewer_steps")]
    nfe = summary[summary["metric"] == "nfe"].set_index("setting")["mean"]
    records = []
    for setting in chosen:
        mine = summary[(summary["setting"] == setting) & (summary["reference"] == "baseline")]
        values = {
            metric_label(
                m, "baseline"
            ): f"{mine.loc[mine['metric'] == m, 'mean'].iloc[0]:.{digits}f}"
            for m, digits in FLOOR_METRICS.items()
            if (mine["metric"] == m).any()
        }
        if values:
            label = "seed floor: baseline, another noise seed" if setting == RESEEDED else setting
            # The re-seeded baseline samples exactly as the baseline does.
            passes = nfe.get(run.baseline if setting == RESEEDED else setting, np.nan)
            shown = "?" if np.isnan(passes) else f"{passes:g}"
            records.append({"setting": label, "nfe": shown, **values})
    return pd.DataFrame.from_records(records)


def _span(first: float, last: float, digits: int) -> str:
    a, b = f"{first:.{digits}f}", f"{last:.{digits}f}"
    return a if a == b else f"{a}-{b}"


def profile_table(profiles: pd.DataFrame) -> pd.DataFrame:
    """The mean profile over the baseline's units in thirds of the path and at its last step."""
    mean = profiles.groupby("step")[["sigma", "relative_change", "magnitude_ratio"]].mean()
    steps = mean.index.to_numpy()
    thirds = np.array_split(steps[:-1], 3) if len(steps) > 3 else [steps[:-1]]
    records = []
    for band in [*thirds, steps[-1:]]:
        if len(band) == 0:
            continue
        part = mean.loc[band]
        records.append(
            {
                "steps": f"{band[0]}-{band[-1]}" if len(band) > 1 else f"{band[0]} (last)",
                "sigma": _span(part["sigma"].max(), part["sigma"].min(), 3),
                "relative change": _span(
                    part["relative_change"].min(), part["relative_change"].max(), 4
                ),
                "magnitude ratio": _span(
                    part["magnitude_ratio"].min(), part["magnitude_ratio"].max(), 4
                ),
            }
        )
    return pd.DataFrame.from_records(records)


def published_ratios() -> dict[str, np.ndarray]:
    """MagCache's conditional-branch magnitude ratios for Wan2.1, per model: steps 1.. of its path."""
    data = json.loads(PUBLISHED.read_text())
    return {name: np.asarray(values) for name, values in data["magnitude_ratio"].items()}


def regime_figure(profiles: pd.DataFrame) -> Figure:
    """Relative velocity change and magnitude ratio along the baseline's path (mean and range
    over units), against the fraction of the path; MagCache's Wan2.1 ratios beside ours."""
    figure = _figure(10.0, 3.6)
    change_axis, ratio_axis = figure.subplots(1, 2)
    grouped = profiles.groupby("step")
    steps = np.asarray(sorted(grouped.groups))
    total = steps[-1] + 1
    for axis, column, label in (
        (change_axis, "relative_change", "relative L1 change of v (TeaCache)"),
        (ratio_axis, "magnitude_ratio", "magnitude ratio |v_i| / |v_(i-1)| (MagCache)"),
    ):
        stats = grouped[column].agg(["mean", "min", "max"])
        axis.plot(
            steps / total, stats["mean"], marker="o", markersize=3, label="this run's baseline"
        )
        axis.fill_between(steps / total, stats["min"], stats["max"], alpha=0.25)
        axis.set_xlabel("step / steps")
        axis.set_title(label, fontsize=10)
        axis.grid(alpha=0.3)
    for name, ratios in published_ratios().items():
        positions = np.arange(1, len(ratios) + 1) / (len(ratios) + 1)
        ratio_axis.plot(
            positions, ratios, linestyle="--", linewidth=1, label=f"{name} (MagCache, published)"
        )
    change_axis.set_yscale("log")
    ratio_axis.legend(fontsize=7)
    return figure
