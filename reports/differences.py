"""Each setting's difference from the baseline, paired by unit, with bootstrap 95% CIs.

The baseline and every setting sample the same cases from the same noise, so per-unit
differences cancel what the cases share: the paired clustered bootstrap
(``reports.bootstrap.paired_diff_ci``) resamples cases, each with its seeds' differences. A CI
that excludes zero says the metric tells that setting apart from the baseline; the report
leads with the metrics that do. Fewer than three cases give no interval and the verdict
"undecided".
"""

from __future__ import annotations

import pandas as pd

from flashbench.run.rows import SPEED
from reports.bootstrap import format_interval, paired_diff_ci
from reports.load import RESEEDED, Run, metric_label
from reports.seed_floor import BETTER, BEYOND, UNDECIDED, WITHIN, floor_text
from reports.tables import aggregate_rows, direction_of

COLUMNS = [
    "setting", "metric", "higher_is_better", "n", "cases", "baseline_mean", "setting_mean",
    "diff", "ci_low", "ci_high", "verdict",
]  # fmt: skip


APART = ("better", "worse", "higher", "lower")


def _verdict(low: float, high: float, higher: bool | None) -> str:
    if pd.isna(low) or pd.isna(high):
        return UNDECIDED  # too few cases for an interval
    if low <= 0.0 <= high:
        return "no difference"
    if higher is None:
        return "higher" if low > 0 else "lower"
    return "better" if (low > 0) == higher else "worse"


def difference_table(run: Run, *, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Per setting and metric: setting - baseline over the units both measured, paired, with a CI."""
    rows = aggregate_rows(run.rows)
    # Figures against the baseline's own output, and the re-seeded baseline's change from the
    # baseline, are the seed-floor table's (reports/seed_floor.py).
    rows = rows[
        ~rows["metric"].isin(list(SPEED))
        & (rows["reference"] != "baseline")
        & (rows["setting"] != RESEEDED)
    ]
    base = rows[rows["setting"] == run.baseline]
    records = []
    for (setting, metric, reference), group in rows.groupby(["setting", "metric", "reference"]):
        if setting == run.baseline:
            continue
        mine = base[(base["metric"] == metric) & (base["reference"] == reference)]
        found = paired_diff_ci(mine, group, n_boot=n_boot, seed=seed)
        if found is None:
            continue
        paired, (diff, low, high, cases) = found
        higher = direction_of(group["higher_is_better"].iloc[0])
        records.append(
            {
                "setting": setting,
                "metric": metric_label(metric, reference),
                "higher_is_better": higher,
                "n": len(paired),
                "cases": cases,
                "baseline_mean": float(paired["value_before"].mean()),
                "setting_mean": float(paired["value_after"].mean()),
                "diff": diff,
                "ci_low": low,
                "ci_high": high,
                "verdict": _verdict(low, high, higher),
            }
        )
    return pd.DataFrame.from_records(records, columns=COLUMNS)


def discriminating_table(differences: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """Settings x the metrics that tell at least one setting apart: "diff [CI] verdict" cells."""
    if differences.empty:
        return pd.DataFrame()
    apart = differences[differences["verdict"].isin(APART)]
    labels = sorted(set(apart["metric"]))
    table = []
    for setting, group in differences.groupby("setting", sort=True):
        cells = group.set_index("metric")
        row = {"setting": setting}
        for label in labels:
            if label not in cells.index:
                row[label] = "–"
                continue
            c = cells.loc[label]
            marks = {"better": "✓", "worse": "✗", "no difference": "", UNDECIDED: "?"}
            mark = marks.get(c["verdict"], "≠")
            # "diff<mark> [CI]": the HTML report puts a "value [CI]" cell's CI on a line of its own.
            cell = format_interval(c["diff"], c["ci_low"], c["ci_high"], int(c["cases"]), sign="+")
            number, _, rest = cell.partition(" ")
            row[label] = f"{number}{mark} {rest}"
        table.append(row)
    return pd.DataFrame(table, columns=["setting", *labels])


VERDICT_MARKS = {WITHIN: "≈", BEYOND: "✗", BETTER: "✓", UNDECIDED: "?"}


def floor_matrix(floors: pd.DataFrame) -> pd.DataFrame:
    """The seed-floor table as metric x setting: each cell a verdict mark and the mean change."""
    records = []
    for metric, group in floors.groupby("metric", sort=True):
        first = group.iloc[0]
        # @baseline figures have no floor band: each setting is set against re-seeding's own
        # distance from the baseline, which is the figure to show.
        floor = (
            f"re-seeded: {first['reseeded_mean']:.3g}"
            if first["versus"] == RESEEDED
            else floor_text(first["seed_floor"], int(first["cases"]))
        )
        record = {"metric": metric, "seed floor": floor}
        for _, row in group.iterrows():
            mark = VERDICT_MARKS[row["verdict"]]
            if row["higher_is_better"] is None and mark in ("✗", "✓"):
                mark = "≠"  # no better or worse for this metric: only a difference
            record[row["setting"]] = mark if mark == "≈" else f"{mark} {row['diff']:+.3g}"
        records.append(record)
    settings = sorted(set(floors["setting"]))
    return pd.DataFrame.from_records(records, columns=["metric", "seed floor", *settings])


def lead_sections(
    run: Run, differences: pd.DataFrame, floors: pd.DataFrame
) -> list[tuple[str, str, pd.DataFrame]]:
    """The report's opening sections as (title, note, table): what discriminates, then the seed floor."""
    sections = []
    apart = discriminating_table(differences, run.baseline)
    if not apart.empty:
        sections.append(
            (
                "What tells the settings apart",
                f"Setting - baseline ({run.baseline}), paired by case and seed, with clustered "
                "bootstrap 95% CIs (cases resampled, each with its seeds); only metrics whose CI "
                "excludes zero for some setting. ✓ better, ✗ worse, ≠ differs (no direction), "
                "? undecided (fewer than 3 cases: no interval); a bare cell: no difference.",
                apart.set_index("setting").T.rename_axis("metric").reset_index(),
            )
        )
    if not floors.empty:
        sections.append(
            (
                "Seed floor",
                "How far re-sampling the baseline from another noise seed moves each metric "
                "(±floor), and each setting's change beside it, paired by case and seed with "
                "clustered bootstrap 95% CIs (cases resampled). Against the ground truth and other references the change is "
                "from the baseline and the floor is the larger end of re-seeding's own change's "
                "CI; @baseline figures are compared with re-seeding's distance from the baseline "
                "(shown as re-seeded: its mean). ≈ indistinguishable from re-seeding (CI within ±floor); ✗ worse "
                "beyond the floor (whole CI); ✓ better beyond it; ≠ beyond it for a metric "
                "without a direction; ? undecided (also: fewer than 3 cases, no interval). Pooled "
                "FVD/FID have one value each: no CI, judged on the values. Every CI is in the report folder's seed_floor.csv.",
                floor_matrix(floors),
            )
        )
    return sections
