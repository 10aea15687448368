"""The percentile bootstrap behind every confidence interval of the reports.

Percentile bootstrap after Efron, 1979, "Bootstrap methods: another look at the jackknife"
(Ann. Statist. 7(1)). What it resamples is the run's unit, one (case, seed) value
(``UNIT_KEY``), drawn with replacement: ``resample_indices`` is the one draw and
``percentile_ci`` the one interval, so every table, seed floor, claim, gate, comparison and
leaderboard resamples the same way, and a different resampling scheme (whole cases, say) is a
change here alone. Each estimate seeds its own ``np.random.default_rng(seed)``, so a figure does
not depend on which figures were computed before it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# One unit of a run: the value a bootstrap draw picks up or leaves out.
UNIT_KEY = ["case", "seed"]


def check_resamples(n_boot: int) -> None:
    """A bootstrap needs at least one resample (percentiles of none are undefined)."""
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 1:
        raise ValueError(
            f"n_boot={n_boot!r} bootstrap resamples must be an integer >= 1; use e.g. --bootstrap 2000"
        )


def resample_indices(rng: np.random.Generator, size: int, n_boot: int) -> np.ndarray:
    """``n_boot`` resamples of ``size`` units, with replacement: indices of shape (n_boot, size)."""
    return rng.integers(0, size, size=(n_boot, size))


def percentile_ci(
    estimates: np.ndarray, estimate: float, level: float
) -> tuple[float, float, float]:
    """``estimate`` and the central ``level`` percentile interval of its resampled ``estimates``.

    The interval is widened to hold ``estimate``: with few units the resampled estimates can
    all fall on one side of it.
    """
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(estimates, [tail, 100.0 - tail])
    return estimate, float(min(low, estimate)), float(max(high, estimate))


def bootstrap_mean_ci(
    values: np.ndarray, *, n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[float, float, float]:
    """Mean and percentile-bootstrap CI (Efron, 1979) of ``values`` over their entries."""
    check_resamples(n_boot)
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        raise ValueError("values is empty; a bootstrap needs at least one measurement")
    mean = float(values.mean())
    if values.size == 1:
        return mean, mean, mean
    index = resample_indices(np.random.default_rng(seed), values.size, n_boot)
    return percentile_ci(values[index].mean(axis=1), mean, level)


def bootstrap_ratio_ci(
    numerator: np.ndarray,
    denominator: np.ndarray,
    *,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float, float]:
    """Ratio of sums of paired arrays with a paired percentile-bootstrap CI (Efron, 1979)."""
    check_resamples(n_boot)
    numerator = np.asarray(numerator, dtype=float)
    denominator = np.asarray(denominator, dtype=float)
    if numerator.shape != denominator.shape or numerator.size == 0:
        raise ValueError(
            f"numerator and denominator must be paired and non-empty, got sizes "
            f"{numerator.size} and {denominator.size}"
        )
    ratio = float(numerator.sum() / denominator.sum())
    if numerator.size == 1:
        return ratio, ratio, ratio
    index = resample_indices(np.random.default_rng(seed), numerator.size, n_boot)
    ratios = numerator[index].sum(axis=1) / denominator[index].sum(axis=1)
    return percentile_ci(ratios, ratio, level)


def bootstrap_diff_ci(
    a: np.ndarray,
    b: np.ndarray,
    *,
    paired: bool,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float, float]:
    """mean(b) - mean(a) with a percentile-bootstrap CI (Efron, 1979), paired or independent."""
    check_resamples(n_boot)
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    diff = float(b.mean() - a.mean())
    rng = np.random.default_rng(seed)
    if paired:
        if a.shape != b.shape:
            raise ValueError(f"paired samples need equal sizes, got {a.size} and {b.size}")
        index = resample_indices(rng, a.size, n_boot)
        diffs = (b[index] - a[index]).mean(axis=1)
    else:
        # b's resamples are drawn before a's: the order fixes every published interval.
        means_b = b[resample_indices(rng, b.size, n_boot)].mean(axis=1)
        means_a = a[resample_indices(rng, a.size, n_boot)].mean(axis=1)
        diffs = means_b - means_a
    return percentile_ci(diffs, diff, level)


def paired_diff_ci(
    before: pd.DataFrame, after: pd.DataFrame, *, n_boot: int = 2000, seed: int = 0
) -> tuple[pd.DataFrame, float, float, float] | None:
    """after - before paired by unit (``UNIT_KEY``), with its bootstrap CI: the paired values
    (columns ``value_before``, ``value_after``), diff, low, high; None when no unit is in both."""
    paired = before[[*UNIT_KEY, "value"]].merge(
        after[[*UNIT_KEY, "value"]], on=UNIT_KEY, suffixes=("_before", "_after")
    )
    if paired.empty:
        return None
    diff, low, high = bootstrap_diff_ci(
        paired["value_before"].to_numpy(float),
        paired["value_after"].to_numpy(float),
        paired=True,
        n_boot=n_boot,
        seed=seed,
    )
    return paired, diff, low, high
