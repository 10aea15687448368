"""The clustered percentile bootstrap behind every confidence interval of the reports.

A run measures cases (an identity, a driving clip, a reference) under several noise seeds.
Two seeds of one case share everything but the noise, so the independent draws are the
cases, not the (case, seed) units: a bootstrap draw resamples whole cases with replacement,
keeping all of a case's seeds and rows together (the cluster or case bootstrap: Davison &
Hinkley 1997, "Bootstrap Methods and their Application", sec. 3.8; Field & Welsh 2007,
"Bootstrapping clustered data", J. R. Statist. Soc. B 69(3)). Paired differences pair by
(case, seed) (``UNIT_KEY``) and then resample cases. The percentile interval (Efron 1979,
"Bootstrap methods: another look at the jackknife", Ann. Statist. 7(1)) of a mean over K
cases is too narrow for small K (its spread is that of a z interval with the sample's
(K-1)/K variance); it is expanded as Hesterberg 2015 ("What teachers should know about the
bootstrap", Amer. Statist. 69(4)) proposes: the percentiles are taken at the tail alpha' with
z(alpha') = sqrt(K / (K-1)) t(alpha, K-1), which makes it a t interval for normal data.

Fewer than ``MIN_CASES`` cases give no interval: an :class:`Interval`'s bounds are NaN and
callers print ``n = 2: no interval`` (``format_interval``), JSON writes null bounds beside
the count, and a verdict that needs an interval is undecided. ``resample_cases`` is the one
draw and ``percentile_ci`` the one interval, so every table, seed floor, claim, gate,
comparison, leaderboard and figure band resamples the same way. Each estimate seeds its own
``np.random.default_rng(seed)``, so a figure does not depend on which were computed before it.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import stats

# One unit of a run, the key paired differences pair by; the bootstrap resamples its case.
UNIT_KEY = ["case", "seed"]
CLUSTER = "case"
# An interval over fewer independent cases says nothing its points do not.
MIN_CASES = 3


class Interval(NamedTuple):
    """An estimate, its bootstrap interval [low, high] (NaN: no interval) and the cases it rests on."""

    estimate: float
    low: float
    high: float
    cases: int

    @property
    def shown(self) -> bool:
        """Whether there is an interval (at least ``MIN_CASES`` cases)."""
        return not (math.isnan(self.low) or math.isnan(self.high))


def no_interval(cases: int) -> str:
    """What stands where an interval over ``cases`` cases cannot: ``"n = 2: no interval"``."""
    return f"n = {cases}: no interval"


def format_interval(
    estimate: float, low: float, high: float, cases: int, *, digits: int = 3, sign: str = ""
) -> str:
    """``"4 [1.8, 7]"``, or ``"4 (n = 2: no interval)"``; ``sign="+"`` signs every number."""
    number = f"{{:{sign}.{digits}g}}"
    text = number.format(estimate)
    if math.isnan(low) or math.isnan(high):
        return f"{text} ({no_interval(cases)})"
    return f"{text} [{number.format(low)}, {number.format(high)}]"


def check_resamples(n_boot: int) -> None:
    """A bootstrap needs at least one resample (percentiles of none are undefined)."""
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 1:
        raise ValueError(
            f"n_boot={n_boot!r} bootstrap resamples must be an integer >= 1; use e.g. --bootstrap 2000"
        )


def resample_cases(rng: np.random.Generator, cases: int, n_boot: int) -> np.ndarray:
    """``n_boot`` draws of ``cases`` cases with replacement, as counts: shape (n_boot, cases),
    entry (b, k) the number of times draw b picked case k (each row sums to ``cases``)."""
    index = rng.integers(0, cases, size=(n_boot, cases))
    flat = index + cases * np.arange(n_boot)[:, None]
    return np.bincount(flat.ravel(), minlength=n_boot * cases).reshape(n_boot, cases)


def percentile_ci(
    estimates: np.ndarray, estimate: float, level: float, cases: int
) -> tuple[float, float]:
    """The expanded central ``level`` percentile interval of resampled ``estimates`` over ``cases`` cases.

    The tail is Hesterberg's (module docstring). The interval is widened to hold ``estimate``:
    with few cases the resampled estimates can all fall on one side of it.
    """
    low, high = np.percentile(estimates, _tails(level, cases))
    return float(min(low, estimate)), float(max(high, estimate))


@functools.cache
def _tails(level: float, cases: int) -> list[float]:
    """The expanded percentiles (in %) of a central ``level`` interval over ``cases`` cases."""
    t = stats.t.ppf(0.5 + level / 2.0, cases - 1)
    tail = float(stats.norm.sf(math.sqrt(cases / (cases - 1)) * t)) * 100.0
    return [tail, 100.0 - tail]


def _codes(values: np.ndarray, clusters: np.ndarray | pd.Series | list) -> tuple[np.ndarray, int]:
    """Each value's case as 0..K-1, and K."""
    clusters = np.asarray(clusters)
    if clusters.shape != values.shape:
        raise ValueError(
            f"clusters has {clusters.size} labels for {values.size} values; give each value its case"
        )
    labels, codes = np.unique(clusters.astype(str), return_inverse=True)
    return codes.reshape(values.shape), len(labels)


def _case_sums(values: np.ndarray, codes: np.ndarray, cases: int) -> np.ndarray:
    return np.bincount(codes, weights=values, minlength=cases)


def _check_values(values: np.ndarray, name: str = "values") -> np.ndarray:
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        raise ValueError(f"{name} is empty; a bootstrap needs at least one measurement")
    return values


def bootstrap_mean_ci(
    values: np.ndarray,
    clusters: np.ndarray | pd.Series | list,
    *,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> Interval:
    """Mean of ``values`` with the clustered bootstrap interval; ``clusters``: each value's case."""
    values = _check_values(values)
    # A mean is the ratio of the values' sum to their count, resampled the same way (cases may
    # hold different numbers of rows).
    return bootstrap_ratio_ci(
        values, np.ones_like(values), clusters, n_boot=n_boot, seed=seed, level=level
    )


def bootstrap_ratio_ci(
    numerator: np.ndarray,
    denominator: np.ndarray,
    clusters: np.ndarray | pd.Series | list,
    *,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> Interval:
    """sum(numerator) / sum(denominator) of paired arrays with the clustered bootstrap interval."""
    check_resamples(n_boot)
    numerator = np.asarray(numerator, dtype=float)
    denominator = np.asarray(denominator, dtype=float)
    if numerator.shape != denominator.shape or numerator.size == 0:
        raise ValueError(
            f"numerator and denominator must be paired and non-empty, got sizes "
            f"{numerator.size} and {denominator.size}"
        )
    codes, cases = _codes(numerator, clusters)
    ratio = float(numerator.sum() / denominator.sum())
    if cases < MIN_CASES:
        return Interval(ratio, math.nan, math.nan, cases)
    draws = resample_cases(np.random.default_rng(seed), cases, n_boot)
    ratios = (draws @ _case_sums(numerator, codes, cases)) / (
        draws @ _case_sums(denominator, codes, cases)
    )
    return Interval(ratio, *percentile_ci(ratios, ratio, level, cases), cases)


def bootstrap_diff_ci(
    a: np.ndarray,
    b: np.ndarray,
    clusters_a: np.ndarray | pd.Series | list,
    clusters_b: np.ndarray | pd.Series | list | None = None,
    *,
    paired: bool,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> Interval:
    """mean(b) - mean(a) with the clustered bootstrap interval.

    ``paired``: a[i] and b[i] are one unit measured twice, in case ``clusters_a[i]``; the
    differences are resampled by case. Otherwise each side's cases are resampled on their own
    (``clusters_b`` is b's), and the interval rests on the smaller side's cases.
    """
    check_resamples(n_boot)
    a, b = _check_values(a, "a"), _check_values(b, "b")
    diff = float(b.mean() - a.mean())
    rng = np.random.default_rng(seed)
    if paired:
        if a.shape != b.shape:
            raise ValueError(f"paired samples need equal sizes, got {a.size} and {b.size}")
        return bootstrap_mean_ci(b - a, clusters_a, n_boot=n_boot, seed=seed, level=level)
    if clusters_b is None:
        raise ValueError("unpaired samples need clusters_b, the case of each value of b")
    codes_a, cases_a = _codes(a, clusters_a)
    codes_b, cases_b = _codes(b, clusters_b)
    cases = min(cases_a, cases_b)
    if cases < MIN_CASES:
        return Interval(diff, math.nan, math.nan, cases)
    # b's resamples are drawn before a's: the order fixes every published interval.
    means = []
    for values, codes, k in ((b, codes_b, cases_b), (a, codes_a, cases_a)):
        draws = resample_cases(rng, k, n_boot)
        means.append((draws @ _case_sums(values, codes, k)) / (draws @ np.bincount(codes)))
    return Interval(diff, *percentile_ci(means[0] - means[1], diff, level, cases), cases)


def paired_diff_ci(
    before: pd.DataFrame, after: pd.DataFrame, *, n_boot: int = 2000, seed: int = 0
) -> tuple[pd.DataFrame, Interval] | None:
    """after - before paired by unit (``UNIT_KEY``), resampling cases: the paired values
    (columns ``case``, ``seed``, ``value_before``, ``value_after``) and the Interval; None when
    no unit is in both."""
    paired = before[[*UNIT_KEY, "value"]].merge(
        after[[*UNIT_KEY, "value"]], on=UNIT_KEY, suffixes=("_before", "_after")
    )
    if paired.empty:
        return None
    interval = bootstrap_diff_ci(
        paired["value_before"].to_numpy(float),
        paired["value_after"].to_numpy(float),
        paired[CLUSTER].to_numpy(),
        paired=True,
        n_boot=n_boot,
        seed=seed,
    )
    return paired, interval


def bootstrap_means(
    values: np.ndarray | pd.Series,
    clusters: np.ndarray | pd.Series,
    groups: np.ndarray | pd.Series,
    *,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> pd.DataFrame:
    """Per group (a frame index, a video length) the mean of its values with the clustered
    bootstrap interval: columns estimate, low, high, cases, indexed by group, sorted.

    A figure's band: groups measured on the same cases share their draws (one draw of cases
    for the whole curve, vectorised), so a curve costs one bootstrap, not one per point.
    """
    check_resamples(n_boot)
    table = pd.DataFrame(
        {
            "value": np.asarray(values, dtype=float),
            "case": np.asarray(clusters),
            "group": np.asarray(groups),
        }
    )
    sums = table.pivot_table(
        index="case", columns="group", values="value", aggfunc="sum", fill_value=0.0
    )
    counts = table.pivot_table(
        index="case", columns="group", values="value", aggfunc="count", fill_value=0
    )
    result = pd.DataFrame(
        index=sums.columns, columns=["estimate", "low", "high", "cases"], dtype=float
    )
    result["estimate"] = sums.sum() / counts.sum()
    present = counts > 0
    result["cases"] = present.sum()
    rng = np.random.default_rng(seed)
    patterns = present.T.drop_duplicates()
    for _, pattern in patterns.iterrows():
        cases = pattern.to_numpy()
        if cases.sum() < MIN_CASES:
            continue
        same = (pattern == present.T).all(axis=1).to_numpy()
        draws = resample_cases(rng, int(cases.sum()), n_boot)
        means = (draws @ sums.loc[cases, same].to_numpy()) / (
            draws @ counts.loc[cases, same].to_numpy()
        )
        low, high = np.percentile(means, _tails(level, int(cases.sum())), axis=0)
        estimate = result.loc[same, "estimate"].to_numpy()
        # Widened to hold the estimate, as percentile_ci does.
        result.loc[same, "low"] = np.minimum(low, estimate)
        result.loc[same, "high"] = np.maximum(high, estimate)
    result["cases"] = result["cases"].astype(int)
    return result
