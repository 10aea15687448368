"""The paper's claims (``reports/data/claims.toml``), each decided by a run of a shipped suite with 95% CIs.

A claim names a suite, a setting, a report label (``METRIC@REFERENCE`` or a derived speedup)
and one test: a bound on the setting's mean, a direction, relative bound or absolute bound on
its paired difference from another setting, the seed floor, or Pareto dominance. Every CI is
the clustered bootstrap's (``reports.bootstrap``: cases resampled, each with its seeds).
Verdicts: ``reproduces``, ``does not reproduce``, ``undecided`` (the CI straddles the line, or
fewer than three cases give no interval) or ``not measured`` (no run of the suite, or it
lacks the setting or the metric).

A relative bound divides by the other setting's mean, so it means nothing where that mean sits
near a zero that is the metric's best: calibrated distances (``id_dist``: 0 = the reference's
own frames, 1 = another identity) and temporal stability (``temporal_deviation``, the
flicker figures) are judged against the seed floor or an absolute bound in the metric's own
units (``at_most_change``); ``load_claims`` refuses a relative bound on them.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from reports.bootstrap import Interval, format_interval, no_interval, paired_diff_ci
from reports.load import RESEEDED, Run
from reports.seed_floor import BEYOND, WITHIN, floor_table, floor_text
from reports.tables import (
    aggregate_rows,
    direction_of,
    format_flops,
    summary_row,
    summary_table,
)

CLAIMS_FILE = Path(__file__).parent / "data" / "claims.toml"
REPRODUCES, FAILS, UNDECIDED, UNMEASURED = (
    "reproduces",
    "does not reproduce",
    "undecided",
    "not measured",
)
COLUMNS = ["suite", "testbed", "claim", "paper", "ours", "verdict"]
# The regime table's testbeds first in this order (reports.load.testbed_name), others after.
TESTBED_ORDER = ("reference v1", "reference v2", "exact ODE")
SAME, FLIPS, PARTLY, OPEN, ONE = (
    "same in every regime",
    "flips",
    "decided in some regimes only",
    "undecided in every regime",
    "one regime measured",
)
# Metrics whose best is a zero the values sit near: no relative bound (module docstring).
NO_RELATIVE_BOUND = {
    "id_dist": "a calibrated distance (0 = the reference's own frames, 1 = another identity)",
    "temporal_deviation": "temporal stability's distance from the truth's (0 = as stable)",
    "temporal": "temporal stability (a ratio whose best is 1, not a scale from 0)",
    "temporal_noise": "an excess flicker (0 = none)",
    "background_noise": "an excess flicker on the background (0 = none)",
}


@dataclass(frozen=True)
class Claim:
    """One claim and the comparison that decides it (see the data file's header for the kinds)."""

    suite: str
    statement: str
    paper: str
    setting: str
    metric: str
    versus: str | None = None
    at_least: float | None = None
    at_most: float | None = None
    expect: str | None = None
    at_most_change: float | None = None
    seed_floor: bool = False
    dominates: bool = False
    # The statement of the claim that this one tests on another testbed's suite (the exact
    # ODE's): the regime table puts both in one row.
    same_as: str | None = None

    def __post_init__(self) -> None:
        metric = self.metric.partition("@")[0]
        if self.versus is not None and self.at_most is not None and metric in NO_RELATIVE_BOUND:
            raise ValueError(
                f"claim {self.statement!r}: a relative bound (versus + at_most) on {self.metric}, "
                f"{NO_RELATIVE_BOUND[metric]}, divides by a near-zero base; use seed_floor = true "
                "or at_most_change (a bound in the metric's units)"
            )


def load_claims(path: Path = CLAIMS_FILE) -> list[Claim]:
    with path.open("rb") as file:
        claims = [Claim(**entry) for entry in tomllib.load(file)["claims"]]
    statements = {claim.statement for claim in claims}
    for claim in claims:
        if claim.same_as is not None and claim.same_as not in statements:
            raise ValueError(
                f"{path}: claim {claim.statement!r} has same_as = {claim.same_as!r}, which is no "
                "claim's statement; give the statement of the claim it tests on another testbed"
            )
    return claims


@dataclass(frozen=True)
class Evidence:
    """What a suite's run says: its summary (reports.tables), one value per unit, and seed floors."""

    run: Run
    summary: pd.DataFrame
    units: pd.DataFrame  # reports.tables.aggregate_rows of the run
    floors: pd.DataFrame

    @classmethod
    def of(cls, run: Run, *, n_boot: int = 2000, seed: int = 0) -> Evidence:
        units = aggregate_rows(run.rows)
        floors = floor_table(units, run.baseline, n_boot=n_boot, seed=seed)
        return cls(run, summary_table(run, n_boot=n_boot, seed=seed), units, floors)


def _mean_ci(evidence: Evidence, setting: str, label: str) -> Interval | None:
    if label == "wall_efficiency":
        wall, flops = (
            _mean_ci(evidence, setting, name) for name in ("speedup_wall", "speedup_flops")
        )
        if wall is None or flops is None:
            return None
        # FLOPs are counted, not timed: the ratio's spread is the wall clock's.
        return Interval(wall[0] / flops[0], wall[1] / flops[0], wall[2] / flops[0], wall.cases)
    row = summary_row(evidence.summary, setting, label)
    if row is None:
        return None
    return Interval(
        float(row["mean"]), float(row["ci_low"]), float(row["ci_high"]), int(row["cases"])
    )


def _unit(evidence: Evidence, claim: Claim) -> str:
    metric = claim.metric.partition("@")[0]
    units = evidence.units[evidence.units["metric"] == metric]["unit"]
    return str(units.iloc[0]) if len(units) and units.iloc[0] else "units"


def _paired(evidence: Evidence, claim: Claim) -> tuple[Interval, float] | None:
    """setting - versus on the units both measured, with its CI, and the versus mean."""
    rows = evidence.units
    metric, _, reference = claim.metric.partition("@")
    chosen = rows[(rows["metric"] == metric) & (rows["reference"] == reference)]
    found = paired_diff_ci(
        chosen[chosen["setting"] == claim.versus], chosen[chosen["setting"] == claim.setting]
    )
    if found is None:
        return None
    paired, interval = found
    return interval, float(paired["value_before"].mean())


def _side(low: float, high: float, at_least: float | None, at_most: float | None) -> str:
    if math.isnan(low) or math.isnan(high):
        return UNDECIDED  # no interval: too few cases
    if at_least is not None:
        return REPRODUCES if low >= at_least else FAILS if high < at_least else UNDECIDED
    assert at_most is not None
    return REPRODUCES if high <= at_most else FAILS if low > at_most else UNDECIDED


def check(claim: Claim, evidence: Evidence | None) -> dict[str, str]:
    """The claim's row of the results page: what we measured and the verdict."""
    row = {"suite": claim.suite, "claim": claim.statement, "paper": claim.paper}
    verdict = _check(claim, evidence) if evidence is not None else None
    if verdict is None:
        return {**row, "ours": "–", "verdict": UNMEASURED}
    ours, decided = verdict
    return {**row, "ours": ours, "verdict": decided}


def _check(claim: Claim, evidence: Evidence) -> tuple[str, str] | None:
    if claim.seed_floor:
        floors = evidence.floors
        found = floors[(floors["setting"] == claim.setting) & (floors["metric"] == claim.metric)]
        if found.empty:
            return None
        row = found.iloc[0]
        change = format_interval(
            row["diff"], row["ci_low"], row["ci_high"], int(row["cases"]), sign="+"
        )
        if row["versus"] == RESEEDED:
            # @baseline: the change is from re-seeding's own distance, which must not be exceeded.
            ours = f"{change} vs the re-seeded baseline ({row['reseeded_mean']:.3g})"
        else:
            floor = floor_text(row["seed_floor"], int(row["cases"]))
            ours = f"{change} vs floor {floor} (seed floor, in the metric's units)"
        verdict = {WITHIN: REPRODUCES, BEYOND: FAILS}.get(row["verdict"], UNDECIDED)
        return ours, verdict
    if claim.versus is None:
        found = _mean_ci(evidence, claim.setting, claim.metric)
        if found is None:
            return None
        return format_interval(*found), _side(found.low, found.high, claim.at_least, claim.at_most)
    if claim.dominates:
        return _dominates(claim, evidence)
    found = _paired(evidence, claim)
    if found is None:
        return None
    (diff, low, high, cases), base = found
    if claim.at_most is not None:
        relative = (diff / base, low / base, high / base)
        if math.isnan(low):
            ours = f"{relative[0]:+.1%} ({no_interval(cases)})"
        else:
            ours = f"{relative[0]:+.1%} [{relative[1]:+.1%}, {relative[2]:+.1%}]"
        ours += f" vs {claim.versus} (relative bound {claim.at_most:+.1%})"
        return ours, _side(relative[1], relative[2], None, claim.at_most)
    change = format_interval(diff, low, high, cases, sign="+")
    if claim.at_most_change is not None:
        bound = f"{claim.at_most_change:+.3g} {_unit(evidence, claim)}"
        ours = f"{change} vs {claim.versus} (absolute bound {bound})"
        return ours, _side(low, high, None, claim.at_most_change)
    ours = f"{change} vs {claim.versus}"
    if math.isnan(low):
        return ours, UNDECIDED
    if claim.expect == "same":
        return ours, REPRODUCES if low <= 0 <= high else FAILS
    if low <= 0 <= high:
        return ours, UNDECIDED
    return ours, REPRODUCES if (high < 0) == (claim.expect == "lower") else FAILS


def _dominates(claim: Claim, evidence: Evidence) -> tuple[str, str] | None:
    """No more FLOPs than ``versus`` and a better metric (its direction from the rows).

    FLOPs, not full passes: a partial pass or a window's overlap costs too. Cheaper and worse,
    or dearer and better, is a trade-off, not dominance either way: undecided.
    """
    cost = [_mean_ci(evidence, s, "flops") for s in (claim.setting, claim.versus)]
    quality = _paired(evidence, claim)
    if None in cost or quality is None:
        return None
    mine, theirs = (c[0] for c in cost)
    (diff, low, high, cases), _ = quality
    rows = evidence.units
    metric = claim.metric.partition("@")[0]
    higher = direction_of(rows[rows["metric"] == metric]["higher_is_better"].iloc[0])
    gain_low, gain_high = (low, high) if higher else (-high, -low)
    change = format_interval(diff, low, high, cases, sign="+")
    ours = f"{format_flops(mine)} vs {format_flops(theirs)}; {claim.metric} {change}"
    if math.isnan(low):
        return ours, UNDECIDED
    if gain_high < 0 and mine >= theirs:
        return ours, FAILS
    if gain_low > 0 and mine <= theirs:
        return ours, REPRODUCES
    return ours, UNDECIDED


def claims_table(evidence: Sequence[Evidence], claims: list[Claim] | None = None) -> pd.DataFrame:
    """Every claim's row on every run of its suite (one per testbed), or "not measured" without one."""
    rows = []
    for claim in claims or load_claims():
        runs = [e for e in evidence if e.run.suite == claim.suite]
        rows += [{**check(claim, e), "testbed": e.run.testbed} for e in runs] or [
            {**check(claim, None), "testbed": "–"}
        ]
    return pd.DataFrame.from_records(rows, columns=COLUMNS)


def testbed_key(testbed: str) -> tuple[int, str]:
    """Sort key of a testbed on the page: ``TESTBED_ORDER`` first, others after by name."""
    known = testbed in TESTBED_ORDER
    return (TESTBED_ORDER.index(testbed) if known else len(TESTBED_ORDER), testbed)


def regime_table(evidence: Sequence[Evidence], claims: list[Claim] | None = None) -> pd.DataFrame:
    """Each claim's verdict with a column per testbed, and whether it holds across them.

    A claim and those that test it on another testbed's suite (``same_as``) share a row.
    "flips": it reproduces on one testbed and fails on another; "same in every regime": one
    verdict on two or more testbeds; "decided in some regimes only": undecided beside a decided
    verdict; "one regime measured": one testbed measured it; "not measured": none did.
    """
    claims = claims or load_claims()
    present = {e.run.testbed for e in evidence}
    testbeds = sorted(present, key=testbed_key)
    cells: dict[str, dict[str, str]] = {}
    for claim in claims:
        row = cells.setdefault(claim.same_as or claim.statement, {})
        for found in (e for e in evidence if e.run.suite == claim.suite):
            row[found.run.testbed] = check(claim, found)["verdict"]
    records = []
    for statement, verdicts in cells.items():
        measured = [v for v in verdicts.values() if v != UNMEASURED]
        decided = {v for v in measured if v in (REPRODUCES, FAILS)}
        if not measured:
            across = UNMEASURED
        elif len(measured) == 1:
            across = ONE
        elif decided == {REPRODUCES, FAILS}:
            across = FLIPS
        elif set(measured) in ({REPRODUCES}, {FAILS}):
            across = SAME
        else:
            across = PARTLY if decided else OPEN
        records.append(
            {"claim": statement, **{t: verdicts.get(t, "–") for t in testbeds}, "across": across}
        )
    return pd.DataFrame.from_records(records, columns=["claim", *testbeds, "across"])
