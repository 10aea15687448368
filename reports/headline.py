"""The headline figure of a run: quality against cost for the metrics that separate its settings most.

One figure a reader looks at first: two or three panels, each a quality metric against the
cost (the FLOPs counted, or full passes for runs made before FLOPs were counted: ``COSTS``), the seed floor (the baseline re-sampled from
another noise seed) drawn as a band, the settings of one family (a sweep: ``alp_k2``,
``alp_k3``, ...) joined as a line in sweep order, and labels placed so they do not overlap.
The full grid of every metric stays in ``reports/plots.py``.

A run whose settings all cost the same (a model ablation: one checkpoint per setting) has
nothing to draw against cost: its headline is each setting's paired difference from the
baseline (``reports/differences.py``), for the metrics whose paired differences are largest
in units of their CI half-width.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.transforms import Bbox

from reports.load import RESEEDED
from reports.tables import quality_labels, summary_row

# The cost axis: the first summary metric a run has, with its axis label.
COSTS = {"flops": "FLOPs counted", "nfe": "full passes (NFE)"}
# References whose metrics can head the figure (the ``driving`` ones are tabled).
REFERENCES = ("ground_truth", "baseline", "reference_image", "")
PANELS = 3
# Label offsets tried around a point, in points, nearest first.
OFFSETS = [(dx, dy) for r in (5, 12, 22, 34) for dx, dy in
           ((r, r), (r, -r), (-r, r), (-r, -r), (r, 0), (-r, 0), (0, r), (0, -r))]  # fmt: skip


@dataclass(frozen=True)
class Separation:
    """How far a metric moves the settings from the baseline, in units of its noise."""

    label: str
    score: float  # the largest |setting - anchor| / noise over the settings
    noise: float


def family_of(setting: str, stepper: str, windowing: str) -> tuple[str, str, str]:
    """The sweep a setting belongs to: its stepper, windowing and name without the swept value.

    A suite's sweep names its settings from a template (``alp_k{interval}``: ``alp_k2``,
    ``alp_k5``), so settings with one stepper and windowing whose names differ only in a
    trailing number (``0p2`` is 0.2) are points of one sweep.
    """
    return stepper, windowing, re.sub(r"\d+(?:p\d+)?$", "", setting)


def families(summary: pd.DataFrame, order: Sequence[str]) -> dict[tuple[str, str, str], list[str]]:
    """Settings grouped by ``family_of``, each group in ``order`` (the suite's, i.e. sweep order)."""
    info = summary.drop_duplicates("setting").set_index("setting")
    known = [s for s in order if s in info.index]
    rest = sorted(set(info.index) - set(known) - {RESEEDED})
    grouped: dict[tuple[str, str, str], list[str]] = {}
    for setting in [*known, *rest]:
        if setting == RESEEDED:
            continue
        key = family_of(setting, info.loc[setting, "stepper"], info.loc[setting, "windowing"])
        grouped.setdefault(key, []).append(setting)
    return grouped


def _mean(summary: pd.DataFrame, setting: str, label: str) -> tuple[float, float, float] | None:
    row = summary_row(summary, setting, label)
    if row is None:
        return None
    return float(row["mean"]), float(row["ci_low"]), float(row["ci_high"])


def separations(summary: pd.DataFrame, baseline: str) -> list[Separation]:
    """Every directed metric's separation, largest first.

    The anchor is the baseline's value (the re-seed's where the baseline has none: metrics
    against the baseline itself); the noise is the seed floor's size: the re-seed's distance
    from the anchor, or the half-width of the anchor's or the re-seed's CI where that is larger.
    A run without either measures the settings' range in their median CI half-width.
    """
    found = []
    settings = sorted(set(summary["setting"]) - {baseline, RESEEDED})
    for label in quality_labels(summary):
        rows = summary[summary["label"] == label]
        if rows["higher_is_better"].isna().any() or not rows["reference"].isin(REFERENCES).all():
            continue
        stats = [m for s in settings if (m := _mean(summary, s, label)) is not None]
        if not stats:
            continue
        values = [m[0] for m in stats]
        base, floor = _mean(summary, baseline, label), _mean(summary, RESEEDED, label)
        anchor = base or floor
        if anchor is None:
            noise = float(np.median([(m[2] - m[1]) / 2 for m in stats]))
            spread = max(values) - min(values)
        else:
            widths = [(ci[2] - ci[1]) / 2 for ci in (base, floor) if ci is not None]
            if base is not None and floor is not None:
                widths.append(abs(floor[0] - base[0]))
            noise = max(widths)
            spread = max(abs(v - anchor[0]) for v in values)
        # A floor at rounding level (a metric every seed leaves exactly as it was) measures
        # nothing: dividing by it would crown the metric.
        scale = max(abs(v) for v in [*values, *(anchor[:1] if anchor else ())])
        if math.isfinite(noise) and noise > 1e-9 * max(scale, 1e-9):
            found.append(Separation(label, spread / noise, noise))
    return sorted(found, key=lambda s: -s.score)


def paired_separations(differences: pd.DataFrame) -> list[Separation]:
    """Every directed metric's largest paired difference from the baseline in units of its CI
    half-width, largest first (``differences``: ``reports.differences.difference_table``)."""
    found = []
    directed = differences[differences["higher_is_better"].notna()]
    for label, group in directed.groupby("metric", sort=True):
        half = (group["ci_high"] - group["ci_low"]) / 2
        # No interval (fewer than 3 cases, or one pooled number such as FVD) or a zero-width
        # one (a metric no setting moves) measures no separation.
        usable = half.notna() & (half > 1e-12 * group["diff"].abs().clip(lower=1e-12))
        if usable.any():
            scores = group["diff"][usable].abs() / half[usable]
            found.append(Separation(str(label), float(scores.max()), float(half[usable].median())))
    return sorted(found, key=lambda s: -s.score)


def _pick(found: Sequence[Separation], panels: int) -> list[Separation]:
    """At most ``panels`` of ``found``, one per reference (PSNR, SSIM and MAE against one
    reference move together: they take one panel); past two, only those beyond their noise."""
    chosen: list[Separation] = []
    references: set[str] = set()
    for separation in found:
        reference = separation.label.partition("@")[2]
        if reference in references or (len(chosen) >= 2 and separation.score <= 1):
            continue
        chosen.append(separation)
        references.add(reference)
        if len(chosen) == panels:
            break
    return chosen


def headline_metrics(
    summary: pd.DataFrame, baseline: str, panels: int = PANELS
) -> list[Separation]:
    """The two (or ``panels``) metrics that separate the settings most, one per reference;
    past two, only metrics that separate the settings by more than the seed floor."""
    return _pick(separations(summary, baseline), panels)


def cost_metric(summary: pd.DataFrame) -> str | None:
    """The first of ``COSTS`` the run measured (None: no cost axis)."""
    return next((name for name in COSTS if (summary["metric"] == name).any()), None)


def one_cost(summary: pd.DataFrame) -> bool:
    """Whether every setting (the re-seeded baseline aside) has the same cost: nothing to draw
    quality against."""
    metric = cost_metric(summary)
    if metric is None:
        return False
    cost = summary[(summary["metric"] == metric) & (summary["setting"] != RESEEDED)]
    return cost["setting"].nunique() > 1 and bool(np.ptp(cost["mean"].to_numpy(float)) == 0)


# Paired differences decided better, worse, or neither (reports.differences' verdicts).
VERDICT_COLOURS = {"better": "tab:green", "worse": "tab:red"}


def paired_figure(
    differences: pd.DataFrame, baseline: str, order: Sequence[str] = ()
) -> tuple[Figure, str] | None:
    """The headline of a run whose settings cost the same: each setting's paired difference
    from the baseline with its clustered CI, for the metrics ``paired_separations`` ranks
    first; None when no metric has an interval."""
    chosen = _pick(paired_separations(differences), PANELS)
    if not chosen:
        return None
    measured = set(differences["setting"])
    known = [s for s in order if s in measured]
    settings = [*known, *sorted(measured - set(known))]
    figure = Figure(figsize=(max(4.4, 1.0 + 0.75 * len(settings)) * len(chosen), 4.6), dpi=100,
                    layout="constrained")  # fmt: skip
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(chosen), squeeze=False).ravel()
    for ax, separation in zip(axes, chosen, strict=True):
        rows = differences[differences["metric"] == separation.label].set_index("setting")
        higher = bool(rows["higher_is_better"].iloc[0])
        ax.axhline(0.0, color="black", lw=1, zorder=1)
        for x, setting in enumerate(settings):
            if setting not in rows.index or pd.isna(rows.loc[setting, "ci_low"]):
                continue
            row = rows.loc[setting]
            colour = VERDICT_COLOURS.get(str(row["verdict"]), "0.45")
            error = [[row["diff"] - row["ci_low"]], [row["ci_high"] - row["diff"]]]
            ax.errorbar([x], [row["diff"]], yerr=error, color=colour, marker="o", capsize=3,
                        lw=1.4, zorder=3)  # fmt: skip
        ax.set_xticks(range(len(settings)), settings, rotation=30, ha="right", fontsize=8)
        ax.set_xlim(-0.6, len(settings) - 0.4)
        ax.margins(y=0.15)
        ax.set_ylabel(f"{separation.label} − {baseline} ({'↑' if higher else '↓'} is better)")
        ax.set_title(
            f"{separation.label}: separation {separation.score:.3g}× the paired CI half-width",
            fontsize=9,
        )
        ax.grid(alpha=0.3, axis="y")
    figure.suptitle(
        f"Paired difference from {baseline} (0: the baseline), clustered 95% CI; "
        "green better, red worse, grey undecided",
        fontsize=10,
    )
    names = ", ".join(f"`{s.label}` ({s.score:.3g}×)" for s in chosen)
    caption = (
        f"Headline: each setting's paired difference from `{baseline}` for {names}: every "
        "setting costs the same, so quality alone tells them apart; of the metrics with a "
        "direction, those with the largest paired difference in units of its CI half-width, "
        "one per reference"
    )
    return figure, caption


def place_labels(
    ax: Axes, points: Sequence[tuple[float, float, str, str]], fontsize: float = 7.5
) -> None:
    """Annotate each point ``(x, y, name, colour)`` with its name, in its colour (so that a label
    beside two points names the one of its colour), where it overlaps no other label, point or edge.

    A greedy pass over ``OFFSETS`` (nearest first) with the rendered text's extent; a label
    that fits nowhere takes the place with the fewest overlaps, with a leader line. Call it once
    the axes' limits and the figure's layout are final.
    """
    renderer = ax.figure.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    xy = ax.transData.transform([(x, y) for x, y, _, _ in points]) if points else []
    marks = [Bbox.from_bounds(px - 4, py - 4, 8, 8) for px, py in xy]
    placed: list[Bbox] = []
    for (x, y, name, colour), mark in zip(points, marks, strict=True):
        best = None
        for dx, dy in OFFSETS:
            text = ax.annotate(
                name, (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=fontsize,
                color=colour,
                ha="left" if dx >= 0 else "right", va="bottom" if dy >= 0 else "top",
            )  # fmt: skip
            box = text.get_window_extent(renderer).padded(1.5)
            clashes = sum(box.overlaps(b) for b in placed) + sum(
                box.overlaps(m) for m in marks if m is not mark
            )
            inside = frame.contains(box.x0, box.y0) and frame.contains(box.x1, box.y1)
            cost = clashes + (0 if inside else 100)
            if best is None or cost < best[0]:
                if best is not None:
                    best[1].remove()
                best = (cost, text, box, (dx, dy))
            else:
                text.remove()
            if cost == 0:
                break
        assert best is not None
        _, text, box, (dx, dy) = best
        if abs(dx) > 12 or abs(dy) > 12:
            ax.annotate(
                "", (x, y), xytext=(dx, dy), textcoords="offset points",
                arrowprops={"arrowstyle": "-", "color": "0.6", "lw": 0.6},
            )  # fmt: skip
        text.set_in_layout(False)
        placed.append(box)


def headline_figure(
    summary: pd.DataFrame,
    baseline: str,
    order: Sequence[str] = (),
    differences: pd.DataFrame | None = None,
) -> tuple[Figure, str] | None:
    """The headline figure and its caption (which metrics, and how they were picked); None
    without a cost metric or a metric that separates the settings. A run whose settings all
    cost the same gets ``paired_figure`` of its ``differences``."""
    if differences is not None and one_cost(summary):
        return paired_figure(differences, baseline, order)
    metric = cost_metric(summary)
    chosen = headline_metrics(summary, baseline)
    if metric is None or not chosen:
        return None
    cost_label = COSTS[metric]
    cost = summary[summary["metric"] == metric].set_index("setting")
    groups = families(summary, order)
    colours = {key: f"C{i % 10}" for i, key in enumerate(groups)}
    figure = Figure(figsize=(5.2 * len(chosen), 4.6), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(chosen), squeeze=False).ravel()
    labelled: list[tuple[Axes, list[tuple[float, float, str]]]] = []
    # A run without the re-seeded baseline has no seed floor: its unit is the CIs' half-width.
    reseeded = bool((summary["setting"] == RESEEDED).any())
    unit = "the seed floor" if reseeded else "the CI half-width"
    for ax, separation in zip(axes, chosen, strict=True):
        label = separation.label
        higher = bool(summary[summary["label"] == label]["higher_is_better"].iloc[0])
        floor = _mean(summary, RESEEDED, label)
        if floor is not None:
            ax.axhspan(floor[1], floor[2], color="0.85", zorder=0)
            ax.axhline(floor[0], color="0.45", linestyle="--", lw=1, zorder=1)
        points = []
        for key, members in groups.items():
            present = [s for s in members if s in cost.index and _mean(summary, s, label)]
            if not present:
                continue
            x = [float(cost.loc[s, "mean"]) for s in present]
            stats = [_mean(summary, s, label) for s in present]
            y = [m[0] for m in stats if m is not None]
            err = np.array([[m[0] - m[1], m[2] - m[0]] for m in stats if m is not None]).T
            is_base = present == [baseline]
            colour = "black" if is_base else colours[key]
            ax.errorbar(
                x, y, yerr=np.abs(err), color=colour,
                marker="*" if is_base else "o", markersize=10 if is_base else 5,
                linestyle="-" if len(present) > 1 else "none", capsize=2, lw=1.2, zorder=3,
            )  # fmt: skip
            points += [(xi, yi, name, colour) for xi, yi, name in zip(x, y, present, strict=True)]
        xs = [p[0] for p in points]
        if xs and max(xs) / max(min(xs), 1e-9) > 8:
            ax.set_xscale("log")
        ax.margins(x=0.12, y=0.15)
        ax.set_xlabel(f"{cost_label} ↓")
        ax.set_ylabel(f"{label} {'↑' if higher else '↓'}")
        ax.set_title(f"{label}: separation {separation.score:.3g}× {unit}", fontsize=9)
        ax.grid(alpha=0.3)
        labelled.append((ax, points))
    band = "; grey band: the baseline re-seeded (seed floor, 95% CI)" if reseeded else ""
    figure.suptitle(
        f"Quality vs cost: lines join one sweep in order{band}; ★ the baseline", fontsize=10
    )
    # Labels go last: their places depend on the final axes limits and layout.
    figure.canvas.draw()
    for ax, _ in labelled:
        ax.set_xlim(ax.get_xlim())
        ax.set_ylim(ax.get_ylim())
    figure.set_layout_engine("none")
    for ax, points in labelled:
        place_labels(ax, points)
    names = ", ".join(f"`{s.label}` ({s.score:.3g}×)" for s in chosen)
    measure = (
        "the seed floor (|setting − baseline| / the larger of the change re-seeding makes and "
        "the CI half-widths)"
        if reseeded
        else "the CI half-width (the run has no re-seeded baseline, so no seed floor)"
    )
    caption = (
        f"Headline: quality vs {cost_label} for {names}: of the metrics with a direction, those "
        f"whose settings lie farthest from the baseline in units of {measure}, one per reference"
    )
    return figure, caption
