"""The seed floor: how much re-sampling the baseline from another noise seed moves each metric.

A suite that lists ``reseeded`` among its references samples the baseline setting again from
another noise seed and measures that output like a setting: rows of the pseudo-setting
``reseeded`` against every reference (its ``metric@baseline`` rows are its distance from the
baseline's output), and pooled rows (FVD, FID) from its saved videos. Every metric that both
the baseline and ``reseeded`` have (or, for ``@baseline`` figures, ``reseeded`` alone) has a
floor; a setting's verdict against it comes from paired (case, seed) differences and their
clustered bootstrap 95% CIs, which resample cases (``reports.bootstrap.paired_diff_ci``):

- Against the ground truth, driving signal or reference image, or against nothing
  (``temporal``, ``id_dist``, ``psnr@ground_truth``, ``aed@driving``, ``seam``...): the
  floor F is how far re-seeding moves the metric, the larger |bound| of the CI of
  M(reseeded) - M(baseline). A setting's change M(setting) - M(baseline), signed so that
  positive is worse, is "beyond the seed floor" when its whole CI lies above F,
  "indistinguishable from re-seeding" when its CI lies within [-F, F], "better beyond the seed
  floor" when its whole CI lies below -F, and "undecided" otherwise (more cases or seeds decide).
- Against the baseline (``psnr@baseline``...): the baseline has no distance from itself, so
  a setting is paired with re-seeding's own distance, M(setting) - M(reseeded), and F = 0:
  beyond when the CI of that worsening lies above 0, indistinguishable when it lies at or
  below 0 (no farther from the baseline than a re-seed), undecided when it straddles 0.
- Pooled metrics (FVD, FID) have one value per setting, so the same rules apply to single
  values without a CI: F = |FVD(reseeded) - FVD(baseline)| (one re-seed, itself noisy), and
  a setting is within when |FVD(setting) - FVD(baseline)| <= F; such verdicts are never
  undecided, which overstates their certainty (the table's n = 1 says so).
- A metric without a direction is judged two-sided: within [-F, F], beyond when the CI lies
  wholly outside it, else undecided.
- Fewer than three cases give no interval (``reports.bootstrap.MIN_CASES``): a per-unit
  metric's floor is then unknown (NaN) and every verdict on it, or on a setting's change
  without an interval, is undecided.

``gate --within-seed-floor`` passes a setting whose verdict is indistinguishable or better.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

import pandas as pd

from flashbench.run.rows import POOLED_CASE
from reports.bootstrap import UNIT_KEY, format_interval, no_interval, paired_diff_ci
from reports.load import RESEEDED, metric_label
from reports.tables import direction_of

WITHIN = "indistinguishable from re-seeding"
BEYOND = "beyond the seed floor"
BETTER = "better beyond the seed floor"
UNDECIDED = "undecided"
PASSING = (WITHIN, BETTER)
COLUMNS = [
    "setting", "metric", "higher_is_better", "versus", "n", "cases", "setting_mean",
    "reseeded_mean", "diff", "ci_low", "ci_high", "seed_floor", "verdict",
]  # fmt: skip


@dataclass(frozen=True)
class SeedFloor:
    """One metric's seed floor: the band a setting's paired change from ``versus`` must stay in."""

    label: str
    metric: str
    reference: str
    higher_is_better: bool | None
    floor: float  # F, in the metric's units; 0 for @baseline figures; NaN: too few cases
    versus: str  # the setting a setting is paired with: the baseline, or reseeded for @baseline
    reseeded_mean: float
    cases: int  # the cases F rests on


def _values(rows: pd.DataFrame, setting: str, metric: str, reference: str) -> pd.DataFrame:
    match = rows[
        (rows["setting"] == setting) & (rows["metric"] == metric) & (rows["reference"] == reference)
    ]
    return match[[*UNIT_KEY, "value"]]


def seed_floors(
    rows: pd.DataFrame, baseline: str, *, n_boot: int = 2000, seed: int = 0
) -> dict[str, SeedFloor]:
    """{label: SeedFloor} for every metric of the pseudo-setting ``reseeded`` (rows: one per unit)."""
    floors = {}
    reseeded = rows[rows["setting"] == RESEEDED]
    for (metric, reference), group in reseeded.groupby(["metric", "reference"], sort=True):
        higher = direction_of(group["higher_is_better"].iloc[0])
        floor, versus, cases = 0.0, RESEEDED, group["case"].nunique()
        if reference != "baseline":
            found = paired_diff_ci(
                _values(rows, baseline, metric, reference), group, n_boot=n_boot, seed=seed
            )
            if found is None:
                continue
            paired, (diff, low, high, cases) = found
            if _pooled(paired):
                low = high = diff  # one pooled value each: the floor is the one difference
            floor, versus = max(abs(low), abs(high)), baseline  # NaN without an interval
        label = metric_label(metric, reference)
        floors[label] = SeedFloor(
            label, metric, reference, higher, floor, versus, float(group["value"].mean()), cases
        )
    return floors


def _pooled(paired: pd.DataFrame) -> bool:
    return bool((paired["case"] == POOLED_CASE).all())


def floor_verdict(
    low: float, high: float, floor: float, higher_is_better: bool | None, *, one_sided: bool
) -> str:
    """Verdict of a paired change with 95% CI [low, high] against floor F (module docstring).

    ``one_sided``: an @baseline figure, where being closer to the baseline than re-seeding is
    as good as being as close. A NaN bound or floor (too few cases) is undecided.
    """
    if any(map(pd.isna, (low, high, floor))):
        return UNDECIDED
    if higher_is_better is None:
        if low > floor or high < -floor:
            return BEYOND
        return WITHIN if -floor <= low and high <= floor else UNDECIDED
    worse_low, worse_high = (-high, -low) if higher_is_better else (low, high)
    if worse_low > floor:
        return BEYOND
    if worse_high <= floor and (one_sided or worse_low >= -floor):
        return WITHIN
    if worse_high < -floor:
        return BETTER
    return UNDECIDED


def floor_table(
    rows: pd.DataFrame, baseline: str, *, n_boot: int = 2000, seed: int = 0
) -> pd.DataFrame:
    """Per metric with a floor and setting: its paired change from ``versus`` with a CI, the floor, the verdict.

    ``rows`` has one value per unit (``reports.tables.aggregate_rows``).
    """
    floors = seed_floors(rows, baseline, n_boot=n_boot, seed=seed)
    settings = sorted(set(rows["setting"]) - {baseline, RESEEDED})
    records = []
    for label, floor in sorted(floors.items()):
        versus = _values(rows, floor.versus, floor.metric, floor.reference)
        for setting in settings:
            found = paired_diff_ci(
                versus,
                _values(rows, setting, floor.metric, floor.reference),
                n_boot=n_boot,
                seed=seed,
            )
            if found is None:
                continue
            paired, (diff, low, high, cases) = found
            # Pooled rows (FVD, FID) have one value per setting: judged on the values, no CI.
            judged = (diff, diff) if _pooled(paired) else (low, high)
            one_sided = floor.reference == "baseline"
            records.append(
                {
                    "setting": setting,
                    "metric": label,
                    "higher_is_better": floor.higher_is_better,
                    "versus": floor.versus,
                    "n": len(paired),
                    "cases": cases,
                    "setting_mean": float(paired["value_after"].mean()),
                    "reseeded_mean": floor.reseeded_mean,
                    "diff": diff,
                    "ci_low": low,
                    "ci_high": high,
                    "seed_floor": floor.floor,
                    "verdict": floor_verdict(
                        *judged, floor.floor, floor.higher_is_better, one_sided=one_sided
                    ),
                }
            )
    return pd.DataFrame.from_records(records, columns=COLUMNS)


def floor_text(floor: float, cases: int, digits: int = 3) -> str:
    """``"±0.045"``, or ``"±? (n = 2: no interval)"`` for a floor too few cases leave unknown."""
    return f"±? ({no_interval(cases)})" if pd.isna(floor) else f"±{floor:.{digits}g}"


def resolve_floor(name: str, floors: dict[str, SeedFloor]) -> str:
    """The floor label ``METRIC[@REFERENCE]`` names; a bare metric must have one floor only."""
    if name in floors:
        return name
    if "@" not in name:
        matches = sorted(label for label, f in floors.items() if f.metric == name)
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise ValueError(
                f"seed floor {name!r} is ambiguous: {name} has floors {matches}; name one, "
                f"e.g. --within-seed-floor {matches[0]}"
            )
    if not floors:
        raise ValueError(
            f"no seed floor for {name!r}: the run has no rows of the re-seeded baseline; "
            "add 'reseeded' to metrics.references and run the suite again"
        )
    close = difflib.get_close_matches(name, list(floors), n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(map(repr, close))}? " if close else ""
    raise ValueError(
        f"no seed floor for {name!r} in the run; {hint}metrics with a floor: {sorted(floors)}"
    )


def worse_than_floor(
    rows: pd.DataFrame, baseline: str, names: list[str], *, n_boot: int = 2000, seed: int = 0
) -> pd.DataFrame:
    """Gate: one failing row (setting, floor, value, reason) per setting and named floor it misses.

    A setting passes a floor when its verdict is indistinguishable from re-seeding or better
    beyond the floor; beyond the floor, undecided, or unmeasured, it fails.
    """
    floors = seed_floors(rows, baseline, n_boot=n_boot, seed=seed)
    labels = [resolve_floor(name, floors) for name in names]
    table = floor_table(rows, baseline, n_boot=n_boot, seed=seed).set_index(["metric", "setting"])
    failures = []
    for label in labels:
        floor = floors[label]
        what = f"{label} within the seed floor {floor_text(floor.floor, floor.cases, 4)} vs {floor.versus}"
        for setting in sorted(set(rows["setting"]) - {baseline, RESEEDED}):
            if (label, setting) not in table.index:
                failures.append((setting, what, float("nan"), "no rows for this metric"))
                continue
            row = table.loc[(label, setting)]
            if row["verdict"] not in PASSING:
                change = format_interval(
                    row["diff"],
                    row["ci_low"],
                    row["ci_high"],
                    int(row["cases"]),
                    digits=4,
                    sign="+",
                )
                reason = f"{row['verdict']}: {change}"
                failures.append((setting, what, float(row["diff"]), reason))
    return pd.DataFrame(failures, columns=["setting", "floor", "value", "reason"])
