"""Report commands: ``report``, ``leaderboard``, ``compare`` and ``gate`` (plain functions + argparse)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from reports.compare import compare_runs
from reports.differences import difference_table
from reports.gate import baseline_floors, gate_failures, parse_floor
from reports.grid import case_grids
from reports.html import render_html
from reports.json_output import compare_document, dumps, gate_document, leaderboard_document
from reports.leaderboard import leaderboard_table
from reports.load import incomplete_units, load_run
from reports.markdown import markdown_table, render_markdown
from reports.plots import report_figures
from reports.results import results
from reports.sections import ReportInputs, report_sections
from reports.seed_floor import floor_table
from reports.tables import aggregate_rows, summary_table, timing_warnings

log = logging.getLogger(__name__)
# Incomplete units printed one per line by gate; the rest are counted (--json lists them all).
MAX_LISTED = 20
JSON_HELP = "print one JSON document instead of Markdown (schema: docs/reports-json.md)"


def _write_table(table: pd.DataFrame, stem: Path) -> None:
    table.to_csv(stem.with_suffix(".csv"), index=False)
    table.to_parquet(stem.with_suffix(".parquet"), index=False)


def report(
    run: str | Path,
    out: str | Path | None = None,
    *,
    videos: bool = True,
    n_boot: int = 2000,
    seed: int = 0,
) -> Path:
    """Write report.md, report.html, figures, grids and the tidy tables; return the folder."""
    loaded = load_run(run)
    summary = summary_table(loaded, n_boot=n_boot, seed=seed)
    for line in timing_warnings(loaded, summary):
        log.warning("%s", line)
    folder = Path(out) if out is not None else loaded.path / "report"
    folder.mkdir(parents=True, exist_ok=True)
    _write_table(loaded.rows, folder / "rows")
    _write_table(summary, folder / "summary")
    differences = difference_table(loaded, n_boot=n_boot, seed=seed)
    _write_table(differences, folder / "differences")
    floors = floor_table(aggregate_rows(loaded.rows), loaded.baseline, n_boot=n_boot, seed=seed)
    _write_table(floors, folder / "seed_floor")
    figures = report_figures(
        loaded.rows, loaded.traces, summary, differences, loaded.baseline, loaded.setting_order
    )
    settings = sorted(set(summary["setting"]), key=lambda s: (s != loaded.baseline, s))
    grids = []
    if videos:
        for case, files in loaded.videos.items():
            grids += case_grids(files, case, settings, folder / "grids")
    sections = report_sections(
        ReportInputs(loaded, summary, differences, floors, figures, grids, folder)
    )
    for figure in (figure for section in sections for figure in section.figures):
        (folder / figure.path).parent.mkdir(exist_ok=True)
        (folder / figure.path).write_bytes(figure.png)
    (folder / "report.md").write_text(render_markdown(sections), encoding="utf-8")
    (folder / "report.html").write_text(render_html(sections), encoding="utf-8")
    return folder


def leaderboard(
    runs: Sequence[str | Path],
    floors: Sequence[str] = (),
    out: str | Path | None = None,
    *,
    n_boot: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """Rank settings across runs of one protocol; ``floors`` like ``"psnr@baseline>=30"``."""
    table = leaderboard_table(
        [load_run(run) for run in runs], [parse_floor(f) for f in floors], n_boot=n_boot, seed=seed
    )
    if out is not None:
        _write_table(table, Path(out).with_suffix(""))
    return table


def compare(
    a: str | Path, b: str | Path, *, n_boot: int = 2000, seed: int = 0, as_json: bool = False
) -> int:
    """Print B - A per metric with CIs (Markdown, or ``as_json``: docs/reports-json.md); exit
    code 1 when B significantly regressed or lost a measurement, else 0."""
    table = compare_runs(load_run(a), load_run(b), n_boot=n_boot, seed=seed)
    regressions = table[table["regression"]]
    # Measurements of A that B lacks (units failed or never run): a gate must not pass them.
    lost = table[table["lost"]]
    status = 1 if len(regressions) or len(lost) else 0
    if as_json:
        print(dumps(compare_document(a, b, table)))
        return status
    print(markdown_table(_rounded(table)))
    for row in regressions.itertuples(index=False):
        print(
            f"REGRESSION {row.setting} {row.metric}: {row.mean_a:.4g} -> {row.mean_b:.4g} "
            f"(diff {row.diff:+.4g}, 95% CI [{row.ci_low:+.4g}, {row.ci_high:+.4g}])"
        )
    for row in lost.itertuples(index=False):
        print(f"MISSING {row.setting} {row.metric}: {row.note}")
    return status


def gate(run: str | Path, *, floors: Sequence[str] = (), statistic: str = "mean",
         seed_floor: Sequence[str] = (), as_json: bool = False, n_boot: int = 2000,
         **minimums: float) -> int:  # fmt: skip
    """Exit code 1 when an accelerated setting is below a floor (e.g. ``min_psnr=30``), not shown
    within the seed floor on a ``seed_floor`` metric (``METRIC[@REFERENCE]``, reports/seed_floor.py),
    or a planned unit failed or has no rows; prints why (Markdown, or ``as_json``:
    docs/reports-json.md)."""
    loaded = load_run(run)
    parsed = baseline_floors(**minimums) + [parse_floor(f) for f in floors]
    failures = gate_failures(loaded, parsed, statistic, seed_floor, n_boot=n_boot)
    parsed += [f"{m} within the seed floor" for m in seed_floor]
    # A setting that failed everywhere has no rows to fall below a floor: judge the plan too.
    incomplete = incomplete_units(loaded)
    if as_json:
        print(dumps(gate_document(run, parsed, statistic, failures, incomplete)))
        return 0 if failures.empty and incomplete.empty else 1
    for row in incomplete.head(MAX_LISTED).itertuples(index=False):
        print(f"INCOMPLETE {row.unit} ({row.setting}): {row.problem}")
    if len(incomplete) > MAX_LISTED:
        print(f"... and {len(incomplete) - MAX_LISTED} more incomplete units")
    if failures.empty and incomplete.empty:
        print(f"gate passed: every setting meets {', '.join(map(str, parsed))}")
        return 0
    if not failures.empty:
        print(markdown_table(_rounded(failures)))
        print(f"gate FAILED for settings: {', '.join(sorted(set(failures['setting'])))}")
    if not incomplete.empty:
        print(
            f"gate FAILED: {len(incomplete)} planned unit(s) failed or have no rows (settings "
            f"{', '.join(sorted(set(incomplete['setting'])))}); see {loaded.path / 'errors'} and "
            "finish the run with `flashbench run SUITE --out RUN --resume`"
        )
    return 1


def _rounded(table: pd.DataFrame) -> pd.DataFrame:
    """Floats to 4 significant digits and missing values to a dash, for printing."""

    def show(column: pd.Series) -> pd.Series:
        if column.dtype.kind == "f":
            return column.map(lambda v: "–" if pd.isna(v) else f"{v:.4g}")
        return column.map(lambda v: "–" if v is None or v is pd.NA else v)

    return table.apply(show)


# ---------------------------------------------------------------- argparse


def _guarded(function):
    """Turn data errors into a message and exit code 2 (1 is reserved for regressions)."""

    def run(args: argparse.Namespace) -> int:
        try:
            return function(args)
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
        except OSError as error:  # an unreadable run, an --out that cannot be written
            where = f" ({error.filename})" if error.filename else ""
            print(
                f"error: {error.strerror or error}{where}; check the path, its permissions and free space",
                file=sys.stderr,
            )
        return 2

    return run


def _report_command(args: argparse.Namespace) -> int:
    folder = report(args.run, args.out, videos=not args.no_videos, n_boot=args.bootstrap)
    print(f"wrote {folder / 'report.html'} and {folder / 'report.md'}")
    return 0


def _results_command(args: argparse.Namespace) -> int:
    page = results(args.runs, args.out, n_boot=args.bootstrap)
    print(f"wrote {page}")
    return 0


def _leaderboard_command(args: argparse.Namespace) -> int:
    table = leaderboard(args.runs, args.floor, args.out, n_boot=args.bootstrap)
    if args.json:
        floors = [parse_floor(floor) for floor in args.floor]
        print(dumps(leaderboard_document(args.runs, floors, table)))
    else:
        print(markdown_table(_rounded(table)))
    return 0


def _compare_command(args: argparse.Namespace) -> int:
    return compare(args.run_a, args.run_b, n_boot=args.bootstrap, as_json=args.json)


def _gate_command(args: argparse.Namespace) -> int:
    minimums = {
        "min_psnr": args.min_psnr,
        "min_ssim": args.min_ssim,
        "min_id_sim": args.min_id_sim,
        "max_lpips": args.max_lpips,
    }
    floors, seed_floor = args.floor, args.within_seed_floor
    return gate(
        args.run,
        floors=floors,
        statistic=args.statistic,
        seed_floor=seed_floor,
        as_json=args.json,
        n_boot=args.bootstrap,
        **minimums,
    )


def add_subcommands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``report``, ``results``, ``leaderboard``, ``compare``, ``gate``; each sets ``func(args) -> int``."""
    sub = subparsers.add_parser("report", help="render report.md / report.html for a run")
    sub.add_argument("run", help="run directory")
    sub.add_argument("--out", default=None, help="output folder (default RUN/report)")
    sub.add_argument("--no-videos", action="store_true", help="skip the video grids")
    sub.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples")
    sub.set_defaults(func=_guarded(_report_command))

    sub = subparsers.add_parser(
        "results", help="the results page: the paper's claims decided by runs of the suites"
    )
    sub.add_argument("runs", nargs="+", help="run directories, one per suite")
    sub.add_argument("--out", default="docs/results", help="folder of results.md and its figures")
    sub.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples")
    sub.set_defaults(func=_guarded(_results_command))

    sub = subparsers.add_parser("leaderboard", help="rank settings across runs of one protocol")
    sub.add_argument("runs", nargs="+", help="run directories of the same protocol")
    sub.add_argument(
        "--floor", action="append", default=[],
        help="quality floor, e.g. 'psnr@baseline>=30' or 'fvd@ground_truth<=150' (repeatable)",
    )  # fmt: skip
    sub.add_argument("--out", default=None, help="write the table as OUT.csv and OUT.parquet")
    sub.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples")
    sub.add_argument("--json", action="store_true", help=JSON_HELP)
    sub.set_defaults(func=_guarded(_leaderboard_command))

    sub = subparsers.add_parser(
        "compare", help="per-metric difference B - A; exit 1 on a regression or a lost measurement"
    )
    sub.add_argument("run_a", help="reference run")
    sub.add_argument("run_b", help="candidate run")
    sub.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples")
    sub.add_argument("--json", action="store_true", help=JSON_HELP)
    sub.set_defaults(func=_guarded(_compare_command))

    sub = subparsers.add_parser("gate", help="exit 1 when a setting falls below fidelity floors")
    sub.add_argument("run", help="run directory")
    sub.add_argument("--min-psnr", type=float, default=None, help="dB against the baseline")
    sub.add_argument("--min-ssim", type=float, default=None, help="SSIM against the baseline")
    sub.add_argument("--min-id-sim", type=float, default=None, help="ID cosine vs the baseline")
    sub.add_argument("--max-lpips", type=float, default=None, help="LPIPS against the baseline")
    sub.add_argument(
        "--floor", action="append", default=[],
        help="any other floor, e.g. 'aed@baseline<=0.1' (repeatable)",
    )  # fmt: skip
    sub.add_argument(
        "--within-seed-floor", action="append", default=[], metavar="METRIC[@REFERENCE]",
        help="METRIC[@REFERENCE] no worse than the baseline beyond re-seeding's change, e.g. "
        "psnr@baseline, temporal_deviation@ground_truth or fvd@ground_truth (repeatable)",
    )  # fmt: skip
    sub.add_argument(
        "--statistic", choices=["mean", "ci"], default="mean",
        help="judge the mean, or the pessimistic end of its 95%% CI",
    )  # fmt: skip
    sub.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples")
    sub.add_argument("--json", action="store_true", help=JSON_HELP)
    sub.set_defaults(func=_guarded(_gate_command))


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry point (``python -m reports.cli``) until flashbench's CLI wires these."""
    parser = argparse.ArgumentParser(prog="flashbench-reports")
    add_subcommands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
