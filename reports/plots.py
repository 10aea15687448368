"""Report figures (matplotlib, Agg, no pyplot state): the headline (reports/headline.py), then the full grid: speed and memory frontiers, identity drift, steps, scaling."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from flashbench.run.rows import SPEED
from reports.bootstrap import bootstrap_means
from reports.headline import headline_figure
from reports.load import RESEEDED, metric_label
from reports.tables import ARROWS, quality_labels

# Pareto panels: quality against the ground truth, the baseline (with its seed floor) and the
# reference image (identity), and the temporal figures; per-part expression rows are tabled.
PARETO_REFERENCES = ("ground_truth", "baseline", "reference_image", "")

ACTION_LETTERS = {"compute": "C", "predict": "P", "reuse": "R", "partial": "p"}


def _figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _panels(count: int, width: float, height: float) -> tuple[Figure, list]:
    """A figure of ``count`` panels, three to a row, each ``width`` x ``height``; spare cells hidden."""
    columns = min(3, count)
    lines = -(-count // columns)
    figure = _figure(width * columns, height * lines)
    axes = figure.subplots(lines, columns, squeeze=False).ravel()
    for ax in axes[count:]:
        ax.set_visible(False)
    return figure, list(axes[:count])


def _mean_and_band(values: pd.DataFrame, by: str) -> pd.DataFrame:
    """Mean of ``values["value"]`` per ``by`` with its clustered bootstrap 95% interval
    (reports.bootstrap.bootstrap_means: columns estimate, low, high, cases; NaN bounds where
    fewer than three cases give no interval, so no band is drawn there)."""
    return bootstrap_means(values["value"], values["case"], values[by])


def figure_png(figure: Figure) -> bytes:
    """Render a figure to PNG bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def pareto_front(speedup: np.ndarray, quality: np.ndarray, higher_is_better: bool) -> np.ndarray:
    """Indices of the points no other point beats on both speedup and quality, fastest first."""
    score = quality if higher_is_better else -quality
    front = []
    for i in range(len(speedup)):
        dominated = np.any(
            (speedup >= speedup[i])
            & (score >= score[i])
            & ((speedup > speedup[i]) | (score > score[i]))
        )
        if not dominated:
            front.append(i)
    return np.array(sorted(front, key=lambda i: -speedup[i]), dtype=int)


def frontier_figure(
    summary: pd.DataFrame,
    cost: str,
    cost_label: str,
    cost_scale: float,
    cost_higher_is_better: bool,
    title: str,
) -> Figure | None:
    """Summary metric ``cost`` (x, divided by ``cost_scale``) against each quality metric, with CIs, the front and the seed floor."""
    speed = summary[summary["metric"] == cost].set_index("setting")
    # The re-seeded baseline's value of each metric: how far re-seeding alone moves it.
    reseeded = summary[summary["setting"] == RESEEDED].set_index("label")["mean"]
    labels = [
        label
        for label in quality_labels(summary)
        if summary[summary["label"] == label]["higher_is_better"].notna().all()
        and summary[summary["label"] == label]["reference"].isin(PARETO_REFERENCES).all()
    ]
    if speed.empty or not labels:
        return None
    figure, axes = _panels(len(labels), 4.2, 3.4)
    for ax, label in zip(axes, labels, strict=True):
        quality = summary[summary["label"] == label].set_index("setting")
        settings = [s for s in quality.index if s in speed.index]
        x = speed.loc[settings, "mean"].to_numpy(float) / cost_scale
        y = quality.loc[settings, "mean"].to_numpy(float)
        higher = bool(quality["higher_is_better"].iloc[0])
        yerr = np.abs(quality.loc[settings, ["ci_low", "ci_high"]].to_numpy(float).T - y)
        xerr = np.abs(speed.loc[settings, ["ci_low", "ci_high"]].to_numpy(float).T / cost_scale - x)
        ax.errorbar(x, y, xerr=xerr, yerr=yerr, fmt="o", capsize=3, color="tab:blue")
        for xi, yi, name in zip(x, y, settings, strict=True):
            ax.annotate(name, (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=8)
        front = pareto_front(x if cost_higher_is_better else -x, y, higher)
        ax.step(x[front], y[front], where="post" if higher else "pre", color="tab:red", alpha=0.6)
        if label in reseeded.index:
            ax.axhline(reseeded[label], color="tab:gray", linestyle="--", label="seed floor")
            ax.legend(fontsize=7, loc="best")
        ax.margins(0.15)  # room for the setting names at the extremes
        ax.ticklabel_format(axis="y", useOffset=False)
        ax.set_xlabel(f"{cost_label} {'↑' if cost_higher_is_better else '↓'}")
        ax.set_ylabel(f"{label} {'↑' if higher else '↓'}")
        ax.grid(alpha=0.3)
    figure.suptitle(title)
    return figure


def pareto_figure(summary: pd.DataFrame) -> Figure | None:
    """Speedup (wall) against each quality metric: the speed frontier."""
    title = "Speed vs quality (red: Pareto front; dashed: the baseline re-seeded)"
    return frontier_figure(summary, "speedup_wall", "speedup vs baseline (wall)", 1.0, True, title)


def flops_figure(summary: pd.DataFrame) -> Figure | None:
    """Speedup in FLOPs against each quality metric: the frontier free of the machine's timing.

    FLOPs, not full passes: partial passes (first-block cache's first block) and windows'
    overlap cost FLOPs that a count of full passes leaves out.
    """
    title = "FLOPs vs quality (red: Pareto front; dashed: the baseline re-seeded)"
    return frontier_figure(
        summary, "speedup_flops", "speedup vs baseline (FLOPs)", 1.0, True, title
    )


def memory_figure(summary: pd.DataFrame) -> Figure | None:
    """Peak stepper cache (MiB, both guidance branches) against each quality metric: the memory frontier.

    Drawn when the run's settings keep caches of at least two different sizes.
    """
    cache = summary[summary["metric"] == "cache_bytes"]
    if cache["mean"].round().nunique() < 2:
        return None
    title = "Stepper cache vs quality (red: Pareto front; dashed: the baseline re-seeded)"
    return frontier_figure(summary, "cache_bytes", "peak stepper cache (MiB)", 2**20, False, title)


def drift_figure(rows: pd.DataFrame, metric: str = "id_sim") -> Figure | None:
    """Per-frame ``metric`` (identity similarity) against frame index, one line per setting."""
    frames = rows[(rows["metric"] == metric) & rows["frame"].notna()]
    if frames.empty:
        return None
    references = sorted(set(frames["reference"]))
    figure = _figure(6.5 * len(references), 3.8)
    axes = figure.subplots(1, len(references), squeeze=False).ravel()
    for ax, reference in zip(axes, references, strict=True):
        for setting, group in frames[frames["reference"] == reference].groupby("setting"):
            band = _mean_and_band(group, "frame")
            index = band.index.to_numpy(int)
            ax.plot(index, band["estimate"], label=setting)
            ax.fill_between(index, band["low"], band["high"], alpha=0.2)
        ax.set_xlabel("frame index")
        ax.set_ylabel(f"{metric} vs {reference or 'reference'}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    # Two lines: one panel is narrow and metric names are long (background_noise).
    figure.suptitle(
        f"{metric} over the video\n(mean and clustered bootstrap 95% band; none under 3 cases)"
    )
    return figure


def steps_figure(traces: pd.DataFrame) -> Figure | None:
    """Which steps each setting's stepper computed (1) vs predicted or reused (0)."""
    if traces.empty:
        return None
    traces = traces.assign(computed=(traces["action"] == "compute").astype(float))
    share = traces.pivot_table(index="setting", columns="step", values="computed", aggfunc="mean")
    common = traces.groupby(["setting", "step"])["action"].agg(lambda s: s.mode().iloc[0])
    settings = list(share.index)
    steppers = traces.drop_duplicates("setting").set_index("setting")["stepper"]
    figure = _figure(max(6.0, 0.28 * share.shape[1] + 3), 0.5 * len(settings) + 1.6)
    ax = figure.subplots()
    image = ax.imshow(share.to_numpy(), aspect="auto", cmap="viridis", vmin=0, vmax=1)
    if share.shape[1] <= 40:
        for row, setting in enumerate(settings):
            for column, step in enumerate(share.columns):
                action = common.get((setting, step), "")
                letter = ACTION_LETTERS.get(action, action[:1].upper())
                bright = share.iloc[row, column] > 0.5  # viridis is light at the top
                colour = "black" if bright else "white"
                ax.text(column, row, letter, ha="center", va="center", fontsize=7, color=colour)
    ax.set_yticks(range(len(settings)), [f"{s} ({steppers[s]})" for s in settings], fontsize=8)
    ax.set_xticks(range(share.shape[1]), [str(s) for s in share.columns], fontsize=7)
    ax.set_xlabel("denoising step (C compute, P predict, R reuse, p partial)")
    figure.colorbar(image, ax=ax, label="share of windows/branches computed")
    figure.suptitle("Computed vs predicted steps per stepper")
    return figure


def length_figure(rows: pd.DataFrame) -> Figure | None:
    """Each quality metric over the whole video against video length, one line per setting.

    Drawn when the run has videos of at least two lengths (the long-video suite's drift in
    identity and expression as the video grows).
    """
    videos = rows[rows["frame"].isna() & ~rows["metric"].isin(list(SPEED))]
    if videos["frames"].nunique() < 2:
        return None
    videos = videos.assign(
        label=[
            metric_label(m, r) for m, r in zip(videos["metric"], videos["reference"], strict=True)
        ]
    )
    labels = sorted(set(videos["label"]))
    # One colour per setting in every panel: some panels lack a setting (the baseline has no
    # seams and no @baseline figure), and the one legend must hold for all of them.
    colours = {setting: f"C{i % 10}" for i, setting in enumerate(sorted(set(videos["setting"])))}
    figure, axes = _panels(len(labels), 4.2, 3.2)
    for ax, label in zip(axes, labels, strict=True):
        data = videos[videos["label"] == label]
        for setting, group in data.groupby("setting"):
            band = _mean_and_band(group, "frames")
            mean = band["estimate"].to_numpy(float)
            # NaN bounds (fewer than 3 cases) draw no bar.
            yerr = np.abs(band[["low", "high"]].to_numpy(float).T - mean)
            ax.errorbar(
                band.index, mean, yerr=yerr, marker="o", capsize=3, label=setting,
                color=colours[setting],
            )  # fmt: skip
        higher = data["higher_is_better"].iloc[0]
        arrow = "" if pd.isna(higher) else f" {ARROWS[bool(higher)]}"
        ax.set_xlabel("video length (frames)")
        ax.set_ylabel(f"{label}{arrow}")
        ax.grid(alpha=0.3)
    handles = [Line2D([], [], color=c, marker="o", label=s) for s, c in colours.items()]
    axes[0].legend(handles=handles, fontsize=7)
    figure.suptitle(
        "Quality vs video length (mean and clustered bootstrap 95% interval; none under 3 cases)"
    )
    return figure


def scaling_figure(rows: pd.DataFrame) -> Figure | None:
    """Peak memory and wall time against video length (frames), one line per setting."""
    speed = rows[rows["metric"].isin(["peak_bytes", "wall_seconds"]) & rows["frame"].isna()]
    if speed.empty:
        return None
    figure = _figure(11, 3.6)
    axes = figure.subplots(1, 2)
    for ax, (metric, scale, label) in zip(
        axes,
        [("peak_bytes", 2**20, "peak memory (MiB)"), ("wall_seconds", 1.0, "wall time (s)")],
        strict=True,
    ):
        data = speed[speed["metric"] == metric]
        for setting, group in data.groupby("setting"):
            means = group.groupby("frames")["value"].mean() / scale
            ax.plot(means.index, means.to_numpy(), marker="o", label=setting)
        ax.set_xlabel("video length (frames)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    figure.suptitle("Memory and time vs video length")
    return figure


FIGURES = {
    "headline": "Headline: quality vs cost",  # the caption names the metrics (reports/headline.py)
    "pareto": "Speed vs quality (Pareto front)",
    "pareto_flops": "FLOPs vs quality (Pareto front)",
    "memory": "Stepper cache vs quality (memory frontier)",
    "drift": "Identity similarity vs frame index",
    "identity_drift": "Calibrated identity distance vs frame index",
    "flicker": "Background flicker (excess noise std) vs frame transition",
    "steps": "Computed vs predicted steps per stepper",
    "scaling": "Memory and time vs video length",
    "length": "Quality vs video length",
}


def report_figures(
    rows: pd.DataFrame,
    traces: pd.DataFrame,
    summary: pd.DataFrame,
    differences: pd.DataFrame,
    baseline: str = "baseline",
    order: Sequence[str] = (),
) -> dict:
    """Every report figure that the run has data for, as ``{name: (title, png bytes)}``, the
    headline first; ``order`` is the suite's order of settings (sweeps in order), and
    ``differences`` the paired table (``reports.differences.difference_table``)."""
    captions = dict(FIGURES)
    headline = headline_figure(summary, baseline, order, differences)
    if headline is not None:
        captions["headline"] = headline[1]
    built = {
        "headline": None if headline is None else headline[0],
        "pareto": pareto_figure(summary),
        "pareto_flops": flops_figure(summary),
        "memory": memory_figure(summary),
        "drift": drift_figure(rows),
        "identity_drift": drift_figure(rows, "id_dist"),
        "flicker": drift_figure(rows, "background_noise"),
        "steps": steps_figure(traces),
        "scaling": scaling_figure(rows),
        "length": length_figure(rows),
    }
    return {
        name: (captions[name], figure_png(fig)) for name, fig in built.items() if fig is not None
    }
