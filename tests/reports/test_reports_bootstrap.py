import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from reports.bootstrap import (
    MIN_CASES,
    bootstrap_diff_ci,
    bootstrap_mean_ci,
    bootstrap_means,
    bootstrap_ratio_ci,
    check_resamples,
    format_interval,
    paired_diff_ci,
    percentile_ci,
    resample_cases,
)

# Three cases of two seeds each, in the order (a,0), (a,1), (b,0), (b,1), (c,0), (c,1).
CASES = np.array(["a", "a", "b", "b", "c", "c"])


def test_bootstrap_is_seeded_and_brackets_the_mean():
    values = np.array([1.0, 2.0, 3.0, 10.0, 4.0, 5.0, 0.0, 1.0])
    cases = np.array(["a", "a", "b", "b", "c", "c", "d", "d"])
    first = bootstrap_mean_ci(values, cases, seed=3)
    assert first == bootstrap_mean_ci(values, cases, seed=3)
    mean, low, high, count = first
    assert mean == pytest.approx(3.25) and low < mean < high and count == 4
    with pytest.raises(ValueError, match="empty"):
        bootstrap_mean_ci(np.array([]), np.array([]))
    with pytest.raises(ValueError, match="give each value its case"):
        bootstrap_mean_ci(values, cases[:3])


def test_a_draw_keeps_a_cases_seeds_together():
    # Seeds disagree wildly within each case, but every case averages 1: every draw of whole
    # cases averages 1, so the interval is a point. Units drawn alone would scatter widely.
    values = np.array([0.0, 2.0, 1.0, 1.0, 2.0, 0.0])
    assert bootstrap_mean_ci(values, CASES) == (1.0, 1.0, 1.0, 3)
    _, low, high, units = bootstrap_mean_ci(values, np.arange(6))
    assert units == 6 and high - low > 0.5


def test_three_cases_give_an_interval_spanning_the_case_means():
    # With three cases the expanded 95% tail (t with 2 degrees of freedom) is below 1e-6, so
    # the interval runs from the lowest to the highest case mean.
    values = np.array([1.0, 3.0, 5.0, 7.0, 2.0, 2.0])
    assert bootstrap_mean_ci(values, CASES, seed=1) == (pytest.approx(10 / 3), 2.0, 6.0, 3)


@pytest.mark.parametrize("cases", [1, 2])
def test_fewer_than_three_cases_give_no_interval(cases):
    values, labels = np.arange(2.0 * cases), np.repeat(np.arange(cases), 2)
    for interval in (
        bootstrap_mean_ci(values, labels),
        bootstrap_ratio_ci(values + 1, values + 2, labels),
        bootstrap_diff_ci(values, values + 1, labels, paired=True),
        bootstrap_diff_ci(values, np.arange(6.0), labels, CASES, paired=False),
    ):
        assert not interval.shown and math.isnan(interval.low) and math.isnan(interval.high)
        assert interval.cases == cases
    assert MIN_CASES == 3
    text = format_interval(0.5, math.nan, math.nan, cases)
    assert text == f"0.5 (n = {cases}: no interval)" and "[" not in text


def test_format_interval_shows_a_shown_interval_in_brackets():
    assert format_interval(4.0, 1.8, 7.0, 5) == "4 [1.8, 7]"
    assert format_interval(-0.5, -1.25, 0.25, 3, sign="+") == "-0.5 [-1.25, +0.25]"


def test_ratio_bootstrap_is_a_ratio_of_sums_over_cases():
    numerator = np.array([8.0, 8.0, 16.0, 16.0, 5.0, 5.0])
    denominator = np.array([2.0, 2.0, 8.0, 8.0, 4.0, 4.0])
    ratio, low, high, cases = bootstrap_ratio_ci(numerator, denominator, CASES)
    assert ratio == pytest.approx(58.0 / 28.0) and cases == 3
    # A draw of three copies of one case gives that case's ratio: 1.25 and 4 at the ends.
    assert low == pytest.approx(1.25) and high == pytest.approx(4.0)


def test_paired_difference_ci_excludes_zero_for_a_constant_shift():
    a = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    assert bootstrap_diff_ci(a, a - 0.5, CASES, paired=True) == (-0.5, -0.5, -0.5, 3)
    diff, low, high, cases = bootstrap_diff_ci(a, a - 0.5, CASES, CASES, paired=False)
    assert low < diff < high and low < 0 < high and cases == 3
    with pytest.raises(ValueError, match="clusters_b"):
        bootstrap_diff_ci(a, a, CASES, paired=False)


def test_resamples_draw_case_counts_with_replacement():
    draws = resample_cases(np.random.default_rng(0), 5, 200)
    assert draws.shape == (200, 5) and (draws.sum(axis=1) == 5).all() and draws.min() >= 0
    assert (draws == resample_cases(np.random.default_rng(0), 5, 200)).all()


def test_percentile_interval_holds_its_estimate():
    # Resampled estimates all above the estimate still give an interval that holds it.
    low, high = percentile_ci(np.array([2.0, 3.0, 4.0]), 1.0, 0.95, 30)
    assert low == 1.0 and 3.9 < high <= 4.0


@pytest.mark.parametrize("n_boot", [0, -1, 2.5, True, "2000"])
def test_resample_count_must_be_a_positive_integer(n_boot):
    with pytest.raises(ValueError, match="integer >= 1"):
        check_resamples(n_boot)
    with pytest.raises(ValueError, match="integer >= 1"):
        bootstrap_diff_ci([1.0, 2.0], [1.0, 2.0], ["a", "b"], paired=True, n_boot=n_boot)


def test_paired_diff_pairs_by_case_and_seed_and_skips_disjoint_units():
    before = pd.DataFrame({"case": ["a", "a", "b"], "seed": [0, 1, 0], "value": [1.0, 2.0, 3.0]})
    after = pd.DataFrame({"case": ["b", "a", "c"], "seed": [0, 1, 0], "value": [4.0, 2.5, 9.0]})
    paired, interval = paired_diff_ci(before, after, n_boot=100)
    assert sorted(zip(paired["case"], paired["seed"], strict=True)) == [("a", 1), ("b", 0)]
    assert interval.estimate == pytest.approx(((2.5 - 2.0) + (4.0 - 3.0)) / 2)
    assert interval.cases == 2 and not interval.shown
    assert paired_diff_ci(before, after.assign(case="z"), n_boot=100) is None


@given(
    st.lists(st.floats(-100, 100), min_size=6, max_size=6),
    st.lists(st.floats(-100, 100), min_size=6, max_size=6),
    st.integers(0, 2**16),
)
def test_a_curves_bands_are_the_intervals_of_its_points(left, right, seed):
    # Points measured on the same cases share one draw: each band is that point's own interval.
    values = np.array(left + right)
    cases = np.concatenate([CASES, CASES])
    groups = np.repeat([0, 1], 6)
    bands = bootstrap_means(values, cases, groups, n_boot=300, seed=seed)
    first = bootstrap_mean_ci(values[:6], CASES, n_boot=300, seed=seed)
    assert tuple(bands.loc[0]) == pytest.approx((*first[:3], 3))
    assert list(bands["cases"]) == [3, 3]


def test_bands_over_too_few_cases_are_empty():
    bands = bootstrap_means(np.arange(8.0), list("aabbccdd"), [0, 0, 0, 0, 1, 1, 1, 1])
    assert bands["low"].isna().all() and list(bands["cases"]) == [2, 2]
    assert list(bands["estimate"]) == [1.5, 5.5]


def test_clustered_interval_covers_a_known_mean_at_its_nominal_rate():
    # 8 cases x 2 seeds, the seeds of a case strongly correlated (case sd 1, seed sd 0.3):
    # the clustered 95% interval covers the true mean (0) 93-97% of the time; resampling
    # (case, seed) units as if independent is too narrow and covers clearly less. Vectorised:
    # each repeat is one group of bootstrap_means, whose bands are bootstrap_mean_ci's
    # intervals (test above), all repeats sharing one draw of 2000 resamples.
    repeats, cases, seeds = 4000, 8, 2
    rng = np.random.default_rng(20261207)
    data = rng.normal(0.0, 1.0, (repeats, cases, 1)) + rng.normal(0.0, 0.3, (repeats, cases, seeds))
    repeat = np.repeat(np.arange(repeats), cases * seeds)

    def coverage(labels: np.ndarray) -> float:
        bands = bootstrap_means(data.ravel(), np.tile(labels, repeats), repeat, n_boot=2000)
        return float(((bands["low"] <= 0.0) & (bands["high"] >= 0.0)).mean())

    clustered = coverage(np.repeat(np.arange(cases), seeds))
    units = coverage(np.arange(cases * seeds))
    assert 0.93 <= clustered <= 0.97, clustered
    assert units < 0.88, units
