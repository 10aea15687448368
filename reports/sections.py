"""What a report says, in order: section records that reports/markdown.py and reports/html.py only render.

A section builder takes the `ReportInputs` and returns the sections it contributes (none when
the run has nothing for it); `SECTIONS` lists the builders in report order. Adding a section
is one builder and one entry there. Titles and notes mark code with backticks, as Markdown does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from reports.differences import lead_sections
from reports.grid import Grid
from reports.load import Run
from reports.plots import figure_png
from reports.regime import (
    Footnotes,
    fewer_steps_table,
    load_profiles,
    profile_table,
    published_beside,
    ratios_beside,
    regime_figure,
)
from reports.tables import metric_table, quality_table, speed_table, timing_warnings

__all__ = [
    "SECTIONS",
    "Figure",
    "ReportInputs",
    "Section",
    "Video",
    "manifest_table",
    "mark_limited",
    "report_sections",
]


@dataclass(frozen=True)
class Figure:
    """A plot: PNG bytes, saved at ``path`` (relative to the report folder)."""

    name: str
    caption: str
    png: bytes
    path: str


@dataclass(frozen=True)
class Video:
    """A side-by-side grid: its mp4 on disk and the GIF preview, with their paths relative to the report folder."""

    name: str
    caption: str
    mp4: Path
    mp4_path: str
    gif: bytes
    gif_path: str


# eq=False: a DataFrame has no truth value, so generated equality would raise.
@dataclass(frozen=True, eq=False)
class Section:
    """One heading of the report (level 1 is the title) and what stands under it, in this order."""

    title: str
    level: int = 2
    note: str = ""
    tables: tuple[pd.DataFrame, ...] = ()
    warnings: tuple[str, ...] = ()
    figures: tuple[Figure, ...] = ()
    videos: tuple[Video, ...] = ()


@dataclass(frozen=True, eq=False)
class ReportInputs:
    """What the sections are built from: the run, its tables, its figures and grids, and the report folder."""

    run: Run
    summary: pd.DataFrame
    differences: pd.DataFrame
    floors: pd.DataFrame  # reports.seed_floor.floor_table of the run
    figures: dict[str, tuple[str, bytes]]  # name -> (title, PNG bytes), as reports.plots makes them
    grids: list[Grid]
    folder: Path


def manifest_table(run: Run) -> pd.DataFrame:
    """Key facts of the manifest as a two-column table (long values shortened)."""
    manifest = run.manifest
    keys = ["suite", "suite_version", "suite_sha256", "suite_hash", "protocol", "baseline",
            "model", "steps", "shift", "limit", "git_hash", "git", "created", "threads",
            "devices", "seeds", "device", "versions"]  # fmt: skip
    rows = []
    for key in keys:
        if key in manifest:
            value = manifest[key]
            if isinstance(value, dict) and "name" in value:
                value = value["name"]  # the model's weights hashes are in manifest.json
            text = str(value)
            rows.append((key, text if len(text) <= 160 else text[:157] + "..."))
    return pd.DataFrame(rows, columns=["field", "value"])


# ---------------------------------------------------------------- builders, in report order


def title_and_manifest(inputs: ReportInputs) -> list[Section]:
    run = inputs.run
    limited = f", {run.limited}" if run.limited else ""
    return [
        Section(
            f"FlashBench report: {run.suite} ({run.name}{limited})",
            level=1,
            tables=(manifest_table(run),),
        )
    ]


def lead(inputs: ReportInputs) -> list[Section]:
    """What tells the settings apart, then the seed floor (reports/differences.py)."""
    return [
        Section(title, note=note, tables=(table,))
        for title, note, table in lead_sections(inputs.run, inputs.differences, inputs.floors)
    ]


def comparison(inputs: ReportInputs) -> list[Section]:
    run, summary = inputs.run, inputs.summary
    return [
        Section(
            f"Comparison: suite `{run.suite}`",
            note="Means with clustered bootstrap 95% CIs (cases resampled, each with its seeds; "
            "fewer than 3 cases: no interval); speedups are baseline / setting (baseline "
            f"`{run.baseline}`). ↑ higher is better, ↓ lower is better.",
        ),
        Section(
            "Speed",
            level=3,
            tables=(speed_table(summary, run.baseline),),
            warnings=tuple(timing_warnings(run, summary)),
        ),
        Section("Quality", level=3, tables=(quality_table(summary, run.baseline),)),
    ]


def regime(inputs: ReportInputs) -> list[Section]:
    """How hard acceleration is on this model: seed floor, fewer steps, velocity profile, and
    this run beside the published figures of real video DiTs (reports/regime.py)."""
    profiles = load_profiles(inputs.run)
    floor = fewer_steps_table(inputs.run, inputs.summary)
    notes = Footnotes()
    beside, absent = published_beside(inputs.run, inputs.summary, notes)
    if profiles.empty and floor.empty and beside.empty:
        return []
    tables = tuple(t for t in (floor, beside) if not t.empty)
    figures: tuple[Figure, ...] = ()
    if not profiles.empty:
        tables += (ratios_beside(profiles, notes), profile_table(profiles))
        caption = (
            "Velocity profile along the baseline's path, with MagCache's published Wan2.1 ratios"
        )
        figures = (
            Figure(
                "regime",
                caption,
                figure_png(regime_figure({"this run's baseline": profiles})),
                "figures/regime.png",
            ),
        )
    if notes.cited:
        tables += (notes.table(),)
    note = (
        "Reported, never tuned. The re-seeded baseline's distance from the baseline is the floor "
        "below which no setting can be told from the baseline; fewer Euler steps show what plain "
        "step reduction costs here. This run's settings stand beside what TeaCache, MagCache and "
        "TaylorSeer reach on real video DiTs (fidelity to the same model's un-accelerated output; "
        "speedups as each source measures them; sources numbered in the last table). "
        "The profile is the baseline's velocity from step to step: "
        "TeaCache skips steps where its relative change is small, MagCache where the magnitude "
        "ratio stays near 1 (theirs is measured on Wan2.1's block residual, ours on the velocity); "
        "a flat profile means a straight path, where any accelerator looks free."
    )
    if absent:
        note += (
            " Published figures of families this run has no setting of are left out: "
            + ", ".join(absent)
            + " (`reports/data/published_fidelity.json`)."
        )
    model = inputs.run.manifest.get("model", {})
    name = model.get("name", "?") if isinstance(model, dict) else str(model)
    title = f"Regime: how hard acceleration is on model `{name}`"
    return [Section(title, note=note, tables=tables, figures=figures)]


def metrics_and_backends(inputs: ReportInputs) -> list[Section]:
    return [Section("Metrics and backends", tables=(metric_table(inputs.summary),))]


def failed_units(inputs: ReportInputs) -> list[Section]:
    errors = inputs.run.errors
    return [] if errors.empty else [Section("Failed units", tables=(errors,))]


def figures(inputs: ReportInputs) -> list[Section]:
    return [Section("Figures")] + [
        Section(caption, level=3, figures=(Figure(name, caption, png, f"figures/{name}.png"),))
        for name, (caption, png) in inputs.figures.items()
    ]


def videos(inputs: ReportInputs) -> list[Section]:
    """One section per grid (case and seed), its columns named in the note."""
    if not inputs.grids:
        return []
    sections = [Section("Videos: reference | ground truth | one column per setting")]
    for grid in inputs.grids:
        caption = f"{grid.case}, seed {grid.seed}"
        # case_grids writes the GIF preview beside the mp4.
        mp4_path = grid.mp4.relative_to(inputs.folder).as_posix()
        video = Video(
            f"{grid.case}-seed{grid.seed}",
            caption,
            grid.mp4,
            mp4_path,
            grid.gif,
            mp4_path.removesuffix(".mp4") + ".gif",
        )
        sections.append(Section(caption, level=3, note=" | ".join(grid.columns), videos=(video,)))
    return sections


SECTIONS: tuple[Callable[[ReportInputs], list[Section]], ...] = (
    title_and_manifest,
    lead,
    comparison,
    regime,
    metrics_and_backends,
    failed_units,
    figures,
    videos,
)


def mark_limited(sections: list[Section], run: Run) -> list[Section]:
    """Sections whose tables summarise the run say so when --limit left cases out."""
    if not run.limited:
        return sections
    return [
        replace(s, note=f"{run.limited.capitalize()}. {s.note}".strip())
        if s.tables and s.level > 1
        else s
        for s in sections
    ]


def report_sections(inputs: ReportInputs) -> list[Section]:
    """Every section of the report in order; the first is the title (level 1) over the manifest."""
    return mark_limited([section for build in SECTIONS for section in build(inputs)], inputs.run)
