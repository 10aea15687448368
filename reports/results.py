"""The results page: the paper's claims decided by runs of the shipped suites, then each run's tables and figures.

``flashbench results RUN [RUN ...] --out docs/results`` writes ``results.md`` (and a
self-contained ``results.html``) with ``figures/``, into a new or empty folder or one holding
only those (as ``flashbench run`` does for run directories).
Each run is one suite; the page names the command that re-makes it. The narrative (what the
verdicts mean) is written beside the generated page, not by it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from flashbench.run.folders import check_own_folder
from reports.claims import Evidence, claims_table, regime_table
from reports.differences import difference_table
from reports.html import render_html
from reports.load import Run, load_run
from reports.markdown import render_markdown
from reports.plots import figure_png, report_figures
from reports.rankings import ranking_sections
from reports.regime import load_profiles, regime_figure
from reports.sections import Figure, Section, manifest_table, mark_limited
from reports.tables import quality_table, speed_table


def _evidence(runs: Sequence[Run], n_boot: int, seed: int) -> list[Evidence]:
    found: dict[tuple[str, str], Evidence] = {}
    for run in runs:
        key = (run.suite, run.testbed)
        if key in found:
            raise ValueError(
                f"two runs of suite {run.suite!r} on {run.testbed} ({found[key].run.path} and "
                f"{run.path}); give one run per suite and testbed"
            )
        found[key] = Evidence.of(run, n_boot=n_boot, seed=seed)
    return list(found.values())


def testbed_profiles(runs: Sequence[Run]) -> dict[str, pd.DataFrame]:
    """ "TESTBED (SUITE)" -> the velocity profiles of each testbed's first run that recorded them."""
    profiles: dict[str, pd.DataFrame] = {}
    drawn: set[str] = set()
    for run in runs:
        profile = load_profiles(run) if run.testbed not in drawn else pd.DataFrame()
        if not profile.empty:
            drawn.add(run.testbed)
            profiles[f"{run.testbed} ({run.suite})"] = profile
    return profiles


def _regime_figure(runs: Sequence[Run]) -> tuple[Figure, ...]:
    """Each testbed's velocity profile beside Wan2.1's."""
    profiles = testbed_profiles(runs)
    if not profiles:
        return ()
    caption = "Each testbed's velocity profile along its baseline's path, with MagCache's published Wan2.1 ratios"
    png = figure_png(regime_figure(profiles))
    return (Figure("regimes", caption, png, "figures/regimes.png"),)


def _remake(run: Run) -> str:
    args = f" --model-args '{json.dumps(run.model_args)}'" if run.model_args else ""
    return f"flashbench run {run.suite}{args} --out {run.path}"


def _suite_sections(
    evidence: Evidence, several_testbeds: bool, n_boot: int, seed: int
) -> list[Section]:
    run, summary = evidence.run, evidence.summary
    version = run.manifest.get("suite_version", "?")
    differences = difference_table(run, n_boot=n_boot, seed=seed)
    figures = report_figures(
        run.rows, run.traces, summary, differences, run.baseline, run.setting_order
    )
    limited = f", {run.limited}" if run.limited else ""
    # One suite may run on several testbeds: its figures are named for both.
    prefix = run.suite
    if several_testbeds:
        prefix += "_" + "_".join(run.testbed.lower().split())
    on = f" on {run.testbed}" if several_testbeds else ""
    sections = [
        Section(
            f"`{run.suite}`{on} (v{version}{limited})",
            note=f"Re-make with `{_remake(run)}`; baseline "
            f"`{run.baseline}`. Means with clustered bootstrap 95% CIs (cases resampled, each "
            "with its seeds; fewer than 3 cases: no interval).",
            tables=(manifest_table(run),),
        ),
        Section("Speed", level=3, tables=(speed_table(summary, run.baseline),)),
        Section("Quality", level=3, tables=(quality_table(summary, run.baseline),)),
        *(
            Section(
                caption,
                level=3,
                figures=(Figure(name, caption, png, f"figures/{prefix}_{name}.png"),),
            )
            for name, (caption, png) in figures.items()
        ),
    ]
    return mark_limited(sections, run)


def results_sections(
    runs: Sequence[Run], out: Path, *, n_boot: int = 2000, seed: int = 0
) -> list[Section]:
    """The page written to ``out``: the claims table over every run, then one section per run in the order given."""
    evidence = _evidence(runs, n_boot, seed)
    claims = claims_table(evidence)
    counts = claims["verdict"].value_counts()
    tally = ", ".join(f"{count} {verdict}" for verdict, count in counts.items())
    remake = " ".join(str(run.path) for run in runs)
    testbeds = {e.run.testbed for e in evidence}
    sections = [
        Section(
            "FlashBench results: FlashPortrait's claims on FlashBench's testbeds",
            level=1,
            note=f"Made by `flashbench results {remake} --out {out}` from the run directories below.",
        ),
        Section(
            "The paper's claims",
            note=f"{len(claims)} verdicts ({tally}); each claim is decided on each run of its "
            "suite, one per testbed, with 95% CIs (`reports/data/claims.toml` states the test).",
            tables=(claims,),
        ),
    ]
    if len(testbeds) > 1:
        sections.append(
            Section(
                "Across regimes",
                note="Each claim's verdict per testbed (a claim and its exact-ODE counterpart "
                "share a row): which hold in every regime and which flip.",
                tables=(regime_table(evidence),),
                figures=_regime_figure(runs),
            )
        )
        sections += ranking_sections(evidence, n_boot=n_boot, seed=seed)
    for found in evidence:
        sections += _suite_sections(found, len(testbeds) > 1, n_boot, seed)
    return sections


def is_results_entry(path: Path) -> bool:
    """Whether ``path`` (an entry of a results folder) is one that ``results`` writes."""
    if path.name in ("results.md", "results.html"):
        return path.is_file()
    return (
        path.name == "figures"
        and path.is_dir()
        and all(f.is_file() and f.suffix == ".png" for f in path.iterdir())
    )


def results(
    runs: Sequence[str | Path], out: str | Path, *, n_boot: int = 2000, seed: int = 0
) -> Path:
    """Write ``out/results.md``, ``out/results.html`` and the figures from the run directories; return the Markdown page's path."""
    if not runs:
        raise ValueError("give at least one run directory (one per suite)")
    folder = Path(out)
    check_own_folder(
        folder, is_results_entry, "a results folder", "only results.md, results.html, figures/*.png"
    )
    page = folder / "results.md"
    sections = results_sections([load_run(r) for r in runs], folder, n_boot=n_boot, seed=seed)
    for figure in (f for section in sections for f in section.figures):
        (folder / figure.path).parent.mkdir(parents=True, exist_ok=True)
        (folder / figure.path).write_bytes(figure.png)
    page.write_text(render_markdown(sections), encoding="utf-8")
    (folder / "results.html").write_text(render_html(sections), encoding="utf-8")
    return page
