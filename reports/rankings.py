"""Peer rankings across regimes: the settings that runs on several testbeds share, in their order of
fidelity on each testbed, and the pairs whose order holds or flips.

A suite's runs on several testbeds form one family, with the runs of a suite that tests its
claims on another testbed (the exact ODE's ``exact_ode``, whose claims are ``same_as`` claims of
``acceleration``). On each testbed two settings' order is decided where the clustered
95% CI of their paired difference in fidelity to the run's own reference answer
(``psnr@baseline``: the un-accelerated baseline, or the exact ODE's near-exact solve) excludes
0. A pair "holds" when every testbed decides it the same way, "flips" when two testbeds decide
it opposite ways, and is "open" otherwise. Kendall's tau compares two testbeds' orders of the
means (1: the same order, -1: reversed).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import pandas as pd
from scipy.stats import kendalltau

from reports.bootstrap import Interval, format_interval, paired_diff_ci
from reports.claims import Claim, Evidence, load_claims, testbed_key
from reports.sections import Section
from reports.tables import summary_row

LABEL = "psnr@baseline"
HOLDS, FLIPS, OPEN = "holds", "flips", "open"


def counterparts(claims: Sequence[Claim]) -> dict[str, set[str]]:
    """Suite -> the suites whose claims it tests on another testbed (its claims' ``same_as``)."""
    suite_of = {c.statement: c.suite for c in claims}
    joins: dict[str, set[str]] = {}
    for claim in claims:
        if claim.same_as:
            joins.setdefault(claim.suite, set()).add(suite_of[claim.same_as])
    return joins


def families(
    evidence: Sequence[Evidence], claims: Sequence[Claim] | None = None
) -> dict[str, list[Evidence]]:
    """Suite -> its runs and its counterparts' (a counterpart may join several), one per testbed
    in page order, where there are two or more testbeds."""
    joins = counterparts(load_claims() if claims is None else claims)
    grouped: dict[str, list[Evidence]] = {}
    for found in evidence:
        for suite in sorted(joins.get(found.run.suite) or {found.run.suite}):
            grouped.setdefault(suite, []).append(found)
    return {
        suite: sorted(runs, key=lambda found: testbed_key(found.run.testbed))
        for suite, runs in grouped.items()  # in the order the runs were given
        if len({r.run.testbed for r in runs}) > 1
    }


def _values(found: Evidence, label: str) -> pd.DataFrame:
    metric, _, reference = label.partition("@")
    units = found.units
    return units[(units["metric"] == metric) & (units["reference"] == reference)]


def shared_settings(family: Sequence[Evidence], label: str = LABEL) -> list[str]:
    """Settings that two or more runs of the family measured ``label`` for, in the runs' order."""
    counts: dict[str, int] = {}
    for found in family:
        present = set(_values(found, label)["setting"])
        order = found.run.setting_order or sorted(present)
        measured = present - {found.run.baseline}
        for setting in (s for s in order if s in measured):
            counts[setting] = counts.get(setting, 0) + 1
    return [setting for setting, count in counts.items() if count > 1]


def _measured(found: Evidence, settings: Sequence[str], label: str) -> list[str]:
    present = set(_values(found, label)["setting"])
    return [s for s in settings if s in present]


def _mean(found: Evidence, setting: str, label: str) -> float:
    row = summary_row(found.summary, setting, label)
    return math.nan if row is None else float(row["mean"])


def _decided(interval: Interval | None) -> int:
    """+1: the first setting of the pair is ahead, -1: the second, 0: undecided."""
    if interval is None or not interval.shown:
        return 0
    return 1 if interval.low > 0 else -1 if interval.high < 0 else 0


def pair_table(
    family: Sequence[Evidence], label: str = LABEL, *, n_boot: int = 2000, seed: int = 0
) -> pd.DataFrame:
    """Every pair of settings measured together on two or more testbeds: its difference (first -
    second) per testbed (None where not both measured) and whether its order holds there."""
    settings = shared_settings(family, label)
    values_of = [(found.run.testbed, _values(found, label)) for found in family]
    records = []
    for first, second in itertools.combinations(settings, 2):
        record: dict[str, object] = {"first": first, "second": second}
        signs = []
        for testbed, values in values_of:
            paired = paired_diff_ci(
                values[values["setting"] == second],
                values[values["setting"] == first],
                n_boot=n_boot,
                seed=seed,
            )
            record[testbed] = paired[1] if paired else None
            if paired:
                signs.append(_decided(paired[1]))
        if len(signs) < 2:
            continue  # measured together on one testbed only: nothing to compare across
        decided = {s for s in signs if s}
        if decided == {1, -1}:
            record["across"] = FLIPS
        elif len(decided) == 1 and all(signs):
            record["across"] = HOLDS
        else:
            record["across"] = OPEN
        records.append(record)
    testbeds = [testbed for testbed, _ in values_of]
    return pd.DataFrame.from_records(records, columns=["first", "second", *testbeds, "across"])


def rank_table(family: Sequence[Evidence], label: str = LABEL) -> pd.DataFrame:
    """One row per shared setting: on each testbed its mean ``label`` with its rank, and its full passes.

    Passes, not speedups: each run's speedups are over its own baseline, which on the exact ODE
    is a 1,000-step solve. A cache's passes depend on the model it skips on."""
    settings = shared_settings(family, label)
    table = pd.DataFrame({"setting": settings})
    ranks = []
    for found in family:
        # NaN where this testbed did not measure the setting: no rank, a dash.
        means = pd.Series([_mean(found, s, label) for s in settings])
        rank = means.rank(ascending=False, method="min").astype("Int64")
        ranks.append(rank)
        passes = [_mean(found, s, "nfe") for s in settings]
        testbed = found.run.testbed
        table[f"{label}, {testbed} (rank)"] = [
            "–" if pd.isna(r) else f"{m:.3g} ({r})" for m, r in zip(means, rank, strict=True)
        ]
        table[f"passes, {testbed}"] = [
            "–" if pd.isna(m) else f"{p:.3g}" for m, p in zip(means, passes, strict=True)
        ]
    table["rank moves by"] = pd.concat(ranks, axis=1).max(axis=1) - pd.concat(ranks, axis=1).min(
        axis=1
    )
    return table


def _tau(a: Evidence, b: Evidence, settings: Sequence[str], label: str) -> str:
    both = [s for s in _measured(a, settings, label) if s in _measured(b, settings, label)]
    tau = kendalltau([_mean(a, s, label) for s in both], [_mean(b, s, label) for s in both])
    return f"{a.run.testbed} vs {b.run.testbed} {tau.statistic:+.2f} ({len(both)} settings)"


def ranking_sections(
    evidence: Sequence[Evidence],
    claims: Sequence[Claim] | None = None,
    label: str = LABEL,
    *,
    n_boot: int = 2000,
    seed: int = 0,
) -> list[Section]:
    """A section per family: the settings' ranks per testbed, then the pairs whose order flips."""
    sections = []
    for suite, family in families(evidence, claims).items():
        settings = shared_settings(family, label)
        if len(settings) < 2:
            continue
        pairs = pair_table(family, label, n_boot=n_boot, seed=seed)
        counts = pairs["across"].value_counts()
        testbeds = [f.run.testbed for f in family]
        taus = ", ".join(
            _tau(family[i], family[j], settings, label)
            for i, j in itertools.combinations(range(len(family)), 2)
        )
        flips = pairs[pairs["across"] == FLIPS]
        tables = [rank_table(family, label)]
        if not flips.empty:
            tables.append(
                pd.DataFrame(
                    {
                        "pair (first - second)": flips["first"] + " - " + flips["second"],
                        **{
                            t: [format_interval(*i, sign="+") if i else "–" for i in flips[t]]
                            for t in testbeds
                        },
                    }
                )
            )
        named = [f"`{f.run.suite}` on {f.run.testbed}" for f in family]
        runs = ", ".join(named[:-1]) + f" and {named[-1]}"
        sections.append(
            Section(
                f"Peer rankings across regimes: `{suite}`",
                note=f"The {len(settings)} settings that two or more of {runs} measured, by "
                f"`{label}` (fidelity "
                "to each run's own reference answer; higher is closer), with each testbed's "
                "rank and full passes (a cache's passes depend on the model it runs on). "
                f"Of their {len(pairs)} pair{'s' * (len(pairs) != 1)}, "
                f"{counts.get(HOLDS, 0)} hold their order on every testbed that measured both, "
                f"{counts.get(FLIPS, 0)} flip (decided both ways; listed below with each "
                f"testbed's paired difference and clustered 95% CI), and "
                f"{counts.get(OPEN, 0)} {'is' if counts.get(OPEN, 0) == 1 else 'are'} undecided on some testbed. Kendall's tau of the "
                f"orders: {taus}.",
                tables=tuple(tables),
            )
        )
    return sections
