"""The paper's claims (``reports/data/claims.toml``), each decided by a run of a shipped suite with 95% CIs.

A claim names a suite, a setting, a report label (``METRIC@REFERENCE`` or a derived speedup)
and one test: a bound on the setting's mean, a direction or relative bound on its paired
difference from another setting, the seed floor, or Pareto dominance. Verdicts:
``reproduces``, ``does not reproduce``, ``undecided`` (the CI straddles the line) or ``not
measured`` (no run of the suite, or it lacks the setting or the metric).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from reports.bootstrap import paired_diff_ci
from reports.load import Run
from reports.seed_floor import BEYOND, WITHIN, floor_table
from reports.tables import aggregate_rows, direction_of, format_flops, summary_table

CLAIMS_FILE = Path(__file__).parent / "data" / "claims.toml"
REPRODUCES, FAILS, UNDECIDED, UNMEASURED = (
    "reproduces",
    "does not reproduce",
    "undecided",
    "not measured",
)
COLUMNS = ["suite", "claim", "paper", "ours", "verdict"]


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
    seed_floor: bool = False
    dominates: bool = False


def load_claims(path: Path = CLAIMS_FILE) -> list[Claim]:
    with path.open("rb") as file:
        return [Claim(**entry) for entry in tomllib.load(file)["claims"]]


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


def _mean_ci(evidence: Evidence, setting: str, label: str) -> tuple[float, float, float] | None:
    summary = evidence.summary
    if label == "wall_efficiency":
        wall, flops = (
            _mean_ci(evidence, setting, name) for name in ("speedup_wall", "speedup_flops")
        )
        if wall is None or flops is None:
            return None
        # FLOPs are counted, not timed: the ratio's spread is the wall clock's.
        return wall[0] / flops[0], wall[1] / flops[0], wall[2] / flops[0]
    found = summary[(summary["setting"] == setting) & (summary["label"] == label)]
    if found.empty:
        return None
    row = found.iloc[0]
    return float(row["mean"]), float(row["ci_low"]), float(row["ci_high"])


def _paired(evidence: Evidence, claim: Claim) -> tuple[float, float, float, float] | None:
    """setting - versus on the units both measured: diff, low, high, and the versus mean."""
    rows = evidence.units
    metric, _, reference = claim.metric.partition("@")
    chosen = rows[(rows["metric"] == metric) & (rows["reference"] == reference)]
    found = paired_diff_ci(
        chosen[chosen["setting"] == claim.versus], chosen[chosen["setting"] == claim.setting]
    )
    if found is None:
        return None
    paired, diff, low, high = found
    return diff, low, high, float(paired["value_before"].mean())


def _side(low: float, high: float, at_least: float | None, at_most: float | None) -> str:
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
        ours = f"{row['diff']:+.3g} [{row['ci_low']:+.3g}, {row['ci_high']:+.3g}] vs floor {row['seed_floor']:.3g}"
        verdict = {WITHIN: REPRODUCES, BEYOND: FAILS}.get(row["verdict"], UNDECIDED)
        return ours, verdict
    if claim.versus is None:
        found = _mean_ci(evidence, claim.setting, claim.metric)
        if found is None:
            return None
        mean, low, high = found
        return f"{mean:.3g} [{low:.3g}, {high:.3g}]", _side(
            low, high, claim.at_least, claim.at_most
        )
    if claim.dominates:
        return _dominates(claim, evidence)
    found = _paired(evidence, claim)
    if found is None:
        return None
    diff, low, high, base = found
    if claim.at_most is not None:
        relative = (diff / base, low / base, high / base)
        ours = f"{relative[0]:+.1%} [{relative[1]:+.1%}, {relative[2]:+.1%}] vs {claim.versus}"
        return ours, _side(relative[1], relative[2], None, claim.at_most)
    ours = f"{diff:+.3g} [{low:+.3g}, {high:+.3g}] vs {claim.versus}"
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
    diff, low, high, _ = quality
    rows = evidence.units
    metric = claim.metric.partition("@")[0]
    higher = direction_of(rows[rows["metric"] == metric]["higher_is_better"].iloc[0])
    gain_low, gain_high = (low, high) if higher else (-high, -low)
    ours = (
        f"{format_flops(mine)} vs {format_flops(theirs)}; {claim.metric} {diff:+.3g} "
        f"[{low:+.3g}, {high:+.3g}]"
    )
    if gain_high < 0 and mine >= theirs:
        return ours, FAILS
    if gain_low > 0 and mine <= theirs:
        return ours, REPRODUCES
    return ours, UNDECIDED


def claims_table(evidence: dict[str, Evidence], claims: list[Claim] | None = None) -> pd.DataFrame:
    """Every claim's row, from the runs given by suite name."""
    rows = [check(claim, evidence.get(claim.suite)) for claim in claims or load_claims()]
    return pd.DataFrame.from_records(rows, columns=COLUMNS)
