"""The regime section: how hard acceleration is on the run's model, measured on its baseline.

Three readings, reported and never tuned: the seed floor (the baseline against itself
re-sampled from another noise seed), the penalty of fewer Euler steps at that floor, and the
velocity profile along the baseline's path (``regime/<unit>.json``, written by the runner with
``flashbench.planning.regime.VelocityRecorder``): TeaCache's observation, the relative L1 change of the
velocity from one step to the next (Liu et al. 2024, arXiv 2411.19108), and MagCache's, the ratio
of successive magnitudes (Ma et al. 2025, arXiv 2506.09045). MagCache's published ratios for
Wan2.1 (``reports/data/magcache_wan21_ratios.json``, measured on the block stack's residual,
not on the velocity) are drawn beside ours for scale, and the published fidelity of TeaCache,
MagCache and TaylorSeer on real video DiTs (``reports/data/published_fidelity.json``, each
figure cited by repository, path, commit and line, or marked paper-only) stands beside this
run's settings of the same family.
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
FIDELITY = Path(__file__).with_name("data") / "published_fidelity.json"
FIGURE_FIELDS = (
    "family", "method", "model", "speedup", "speedup_kind", "metric", "value", "against", "source",
)  # fmt: skip
CITATION_FIELDS = ("repository", "path", "commit", "lines")
# The steppers whose settings stand beside published figures, in table order; a family with no
# published number on a real video DiT says so instead.
FAMILIES = ("teacache", "magcache", "taylorseer", "fewer_steps")
FIDELITY_METRICS = {"psnr": 2, "ssim": 3, "lpips": 3}  # metric -> decimals shown for this run
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
                "steps": f"{band[0]}-{band[-1]}"
                if len(band) > 1
                else f"{band[0]}" + (" (last)" if band[0] == steps[-1] else ""),
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


def regime_figure(profiles: dict[str, pd.DataFrame]) -> Figure:
    """Relative velocity change and magnitude ratio along each baseline's path (mean and range
    over units; ``profiles``: label -> ``load_profiles``), against the fraction of the path;
    MagCache's Wan2.1 ratios beside them."""
    figure = _figure(10.0, 3.6)
    change_axis, ratio_axis = figure.subplots(1, 2)
    for name, profile in profiles.items():
        grouped = profile.groupby("step")
        steps = np.asarray(sorted(grouped.groups))
        total = steps[-1] + 1
        for axis, column in ((change_axis, "relative_change"), (ratio_axis, "magnitude_ratio")):
            stats = grouped[column].agg(["mean", "min", "max"])
            line = axis.plot(steps / total, stats["mean"], marker="o", markersize=3, label=name)
            axis.fill_between(
                steps / total, stats["min"], stats["max"], alpha=0.25, color=line[0].get_color()
            )
    for axis, label in (
        (change_axis, "relative L1 change of v (TeaCache)"),
        (ratio_axis, "magnitude ratio |v_i| / |v_(i-1)| (MagCache)"),
    ):
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


def published_fidelity() -> tuple[pd.DataFrame, dict[str, dict]]:
    """The published figures (one row per figure, FIGURE_FIELDS) and their sources by key.

    A source cites its paper (``arxiv``) and either the repository, path, commit and lines
    where the figure is printed, or ``paper_only``.
    """
    data = json.loads(FIDELITY.read_text())
    sources = data["sources"]
    for key, source in sources.items():
        cited = all(source.get(f) for f in CITATION_FIELDS)
        if (
            not source.get("paper")
            or not source.get("arxiv")
            or not (cited or source.get("paper_only") is True)
        ):
            raise ValueError(
                f"{FIDELITY}: source {key!r} needs paper and arxiv, and either "
                f"{', '.join(CITATION_FIELDS)} or paper_only = true"
            )
    figures = pd.DataFrame.from_records(data["figures"])
    missing = [f for f in FIGURE_FIELDS if f not in figures.columns or figures[f].isna().any()]
    unknown = sorted(set(figures.get("source", [])) - set(sources))
    if missing or unknown:
        raise ValueError(
            f"{FIDELITY}: every figure needs {', '.join(FIGURE_FIELDS)} (missing: {missing}) "
            f"and a source listed under sources (unknown: {unknown})"
        )
    return figures[list(FIGURE_FIELDS)], sources


def source_url(source: dict, line: int | None = None) -> str:
    """Where a source prints its figures: the file at its commit and lines, else the paper."""
    if source.get("paper_only"):
        return f"https://arxiv.org/abs/{source['arxiv']}"
    lines = source["lines"] if line is None else [line]
    span = f"L{lines[0]}" if len(lines) == 1 else f"L{lines[0]}-L{lines[-1]}"
    return (
        f"https://github.com/{source['repository']}/blob/{source['commit']}/{source['path']}#{span}"
    )


class Footnotes:
    """Sources numbered in the order the tables cite them; ``table`` lists them."""

    def __init__(self) -> None:
        self.cited: dict[str, dict] = {}

    def cite(self, key: str, source: dict, line: int | None = None) -> str:
        self.cited.setdefault(key, source)
        number = list(self.cited).index(key) + 1
        return f"[{number}]({source_url(source, line)})"

    def table(self) -> pd.DataFrame:
        records = []
        for number, source in enumerate(self.cited.values(), start=1):
            if source.get("paper_only"):
                where = "paper only; " + source.get("note", "")
            else:
                lines = ", ".join(f"L{line}" for line in source["lines"])
                where = f"{source['repository']} {source['path']} {lines} @ {source['commit'][:7]}"
                where += f"; {source['note']}" if source.get("note") else ""
            records.append(
                {
                    "ref": f"[{number}]({source_url(source)})",
                    "paper": source["paper"],
                    "where": where,
                }
            )
        return pd.DataFrame.from_records(records, columns=["ref", "paper", "where"])


def _run_row(summary: pd.DataFrame, setting: str, family: str, model: str) -> dict:
    mine = summary[summary["setting"] == setting].set_index("label")["mean"]
    speed = [
        f"{mine[label]:.2f}x {kind}"
        for label, kind in (("speedup_nfe", "passes"), ("speedup_wall", "wall"))
        if label in mine.index
    ]
    row = {
        "family": family,
        "setting or published": f"this run: {setting}",
        "model": model,
        "speedup": ", ".join(speed) or "–",
    }
    for metric, digits in FIDELITY_METRICS.items():
        label = metric_label(metric, "baseline")
        row[label] = f"{mine[label]:.{digits}f}" if label in mine.index else "–"
    row["source"] = ""
    return row


def published_beside(
    run: Run, summary: pd.DataFrame, notes: Footnotes
) -> tuple[pd.DataFrame, list[str]]:
    """This run's settings of each published family beside the published figures of that family.

    Returns the table (in each family this run's settings, then the published figures with
    their footnote links in ``notes``; the seed floor last) and the families with published
    figures that the run has no setting of, which the table leaves out.
    """
    figures, sources = published_fidelity()
    steppers = run.rows.groupby("setting")["stepper"].first().drop(RESEEDED, errors="ignore")
    model = run.manifest.get("model", {})
    model = model.get("name", "?") if isinstance(model, dict) else str(model)
    records = []
    for family in FAMILIES:
        mine = sorted(s for s, name in steppers.items() if name == family and s != run.baseline)
        if not mine:
            continue
        records += [_run_row(summary, setting, family, model) for setting in mine]
        theirs = figures[figures["family"] == family]
        keys = ["method", "model", "speedup", "speedup_kind", "source"]
        for (method, where, speedup, kind, key), group in theirs.groupby(keys, sort=False):
            values = group.set_index("metric")["value"]
            row = {
                "family": family,
                "setting or published": f"published: {method}",
                "model": where,
                "speedup": f"{speedup:g}x {kind}",
            }
            for metric in FIDELITY_METRICS:
                label = metric_label(metric, "baseline")
                row[label] = f"{values[metric]:g}" if metric in values.index else "–"
            row["source"] = notes.cite(key, sources[key])
            records.append(row)
        if theirs.empty:
            records.append(
                {
                    "family": family,
                    "setting or published": "published: no fidelity figure on a real video DiT",
                    "model": "",
                    "speedup": "",
                    "source": "",
                }
            )
    floor = summary[(summary["setting"] == RESEEDED) & (summary["label"] == "psnr@baseline")]
    if not floor.empty:
        records.append(
            {
                "family": "seed floor",
                "setting or published": "this run: baseline, another noise seed",
                "model": model,
                "speedup": "1x",
                "psnr@baseline": f"{floor['mean'].iloc[0]:.2f}",
                "source": "",
            }
        )
        records.append(
            {
                "family": "seed floor",
                "setting or published": "published: different seeds give different videos (no number)",
                "model": "real video DiTs",
                "speedup": "",
                "source": "",
            }
        )
    table = pd.DataFrame.from_records(records)
    if not table.empty:
        columns = [
            "family",
            "setting or published",
            "model",
            "speedup",
            *(metric_label(m, "baseline") for m in FIDELITY_METRICS),
            "source",
        ]
        table = table.reindex(columns=columns).fillna("")
        table = table.loc[:, [c for c in columns if (table[c] != "").any()]]
    present = set(steppers)
    absent = [f for f in dict.fromkeys(figures["family"]) if f not in present]
    return table, absent


def last_fifth(ratios: np.ndarray) -> float:
    """Mean magnitude ratio over the last fifth of the steps (issue 27's regime bar)."""
    return float(ratios[-max(1, len(ratios) // 5) :].mean())


def ratios_beside(profiles: pd.DataFrame, notes: Footnotes) -> pd.DataFrame:
    """The baseline's magnitude ratio over the last fifth of its steps and at the last step,
    beside MagCache's published Wan2.1 lists, each linked to its line."""
    source = json.loads(PUBLISHED.read_text())["source"]
    lines = source["lines"]
    cited = {
        **source,
        "arxiv": "2506.09045",
        "lines": sorted(lines.values()),
        "note": "MagCache's calibrated ratios, one list per model",
    }
    mine = profiles.groupby("step")["magnitude_ratio"].mean().sort_index().to_numpy()
    rows = [("this run's baseline", mine, "")]
    rows += [
        (f"published: {name}", ratios, notes.cite("magcache_ratios", cited, lines[name]))
        for name, ratios in published_ratios().items()
    ]
    return pd.DataFrame(
        [
            {
                "magnitude ratio": who,
                "mean, last fifth of the steps": f"{last_fifth(r):.3f}",
                "last step": f"{r[-1]:.3f}",
                "source": link,
            }
            for who, r, link in rows
        ]
    )
