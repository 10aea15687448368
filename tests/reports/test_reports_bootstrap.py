import numpy as np
import pandas as pd
import pytest

from reports.bootstrap import (
    bootstrap_diff_ci,
    bootstrap_mean_ci,
    bootstrap_ratio_ci,
    check_resamples,
    paired_diff_ci,
    percentile_ci,
    resample_indices,
)


def test_bootstrap_is_seeded_and_brackets_the_mean():
    values = np.array([1.0, 2.0, 3.0, 10.0, 4.0])
    first = bootstrap_mean_ci(values, seed=3)
    assert first == bootstrap_mean_ci(values, seed=3)
    mean, low, high = first
    assert mean == pytest.approx(4.0) and low < mean < high
    assert bootstrap_mean_ci(np.array([7.0])) == (7.0, 7.0, 7.0)
    with pytest.raises(ValueError, match="empty"):
        bootstrap_mean_ci(np.array([]))


def test_ratio_bootstrap_is_a_ratio_of_sums():
    ratio, low, high = bootstrap_ratio_ci(np.array([8.0, 16.0]), np.array([2.0, 8.0]))
    assert ratio == pytest.approx(24.0 / 10.0) and low <= ratio <= high
    assert low >= 2.0 and high <= 4.0


def test_paired_difference_ci_excludes_zero_for_a_constant_shift():
    diff, low, high = bootstrap_diff_ci([1.0, 2.0, 3.0], [0.5, 1.5, 2.5], paired=True)
    assert (
        diff == pytest.approx(-0.5) and low == pytest.approx(-0.5) and high == pytest.approx(-0.5)
    )
    diff, low, high = bootstrap_diff_ci([1.0, 2.0, 3.0], [0.5, 1.5, 2.5], paired=False)
    assert low < diff < high and low < 0 < high


def test_intervals_are_unchanged_to_the_last_bit():
    # Pinned from the three copies the module replaced: reports re-made from a run must not move.
    assert bootstrap_mean_ci(np.array([1.0, 2.0, 3.0, 10.0, 4.0]), seed=3) == (4.0, 1.8, 7.0)
    assert bootstrap_ratio_ci(
        np.array([8.0, 16.0, 5.0]), np.array([2.0, 8.0, 4.0]), n_boot=500, seed=1
    ) == (2.0714285714285716, 1.25, 2.6666666666666665)
    a, b = [1.0, 2.0, 3.0, 7.0], [0.5, 1.5, 2.5, 9.0]
    assert bootstrap_diff_ci(a, b, paired=True, n_boot=300, seed=2) == (0.125, -0.5, 1.375)
    assert bootstrap_diff_ci(a[:3], b, paired=False, n_boot=300, seed=2) == (
        1.375,
        -1.25,
        5.129166666666663,
    )


def test_resamples_draw_units_with_replacement():
    index = resample_indices(np.random.default_rng(0), 5, 200)
    assert index.shape == (200, 5) and index.min() >= 0 and index.max() <= 4
    assert (index == resample_indices(np.random.default_rng(0), 5, 200)).all()


def test_percentile_interval_holds_its_estimate():
    # Resampled estimates all above the estimate still give an interval that holds it.
    estimate, low, high = percentile_ci(np.array([2.0, 3.0, 4.0]), 1.0, 0.95)
    assert (estimate, low) == (1.0, 1.0) and high == pytest.approx(3.95)


@pytest.mark.parametrize("n_boot", [0, -1, 2.5, True, "2000"])
def test_resample_count_must_be_a_positive_integer(n_boot):
    with pytest.raises(ValueError, match="integer >= 1"):
        check_resamples(n_boot)
    with pytest.raises(ValueError, match="integer >= 1"):
        bootstrap_diff_ci([1.0, 2.0], [1.0, 2.0], paired=True, n_boot=n_boot)


def test_paired_diff_pairs_by_case_and_seed_and_skips_disjoint_units():
    before = pd.DataFrame({"case": ["a", "a", "b"], "seed": [0, 1, 0], "value": [1.0, 2.0, 3.0]})
    after = pd.DataFrame({"case": ["b", "a", "c"], "seed": [0, 1, 0], "value": [4.0, 2.5, 9.0]})
    paired, diff, low, high = paired_diff_ci(before, after, n_boot=100)
    assert sorted(zip(paired["case"], paired["seed"], strict=True)) == [("a", 1), ("b", 0)]
    assert diff == pytest.approx(((2.5 - 2.0) + (4.0 - 3.0)) / 2) and low <= diff <= high
    assert paired_diff_ci(before, after.assign(case="z"), n_boot=100) is None
