"""The eigenvalue Frechet distance against scipy's sqrtm and pytorch-fid, and its metric's states."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
from hypothesis import given
from hypothesis import strategies as st
from pytorch_fid.fid_score import calculate_frechet_distance

from metrics.frechet import FrechetFeatureDistance, feature_statistics, frechet_distance


def random_gaussian(
    rng: np.random.Generator, dim: int, samples: int
) -> tuple[np.ndarray, np.ndarray]:
    features = rng.normal(size=(samples, dim)) @ rng.normal(size=(dim, dim)) + rng.normal(size=dim)
    return features.mean(axis=0), np.cov(features, rowvar=False)


def scipy_frechet(mu1, sigma1, mu2, sigma2) -> float:
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2).real
    return float(
        np.sum((mu1 - mu2) ** 2) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean)
    )


@pytest.mark.parametrize("dim", [2, 5, 16, 64])
@pytest.mark.parametrize("seed", range(3))
def test_eigenvalue_frechet_matches_scipy_sqrtm_to_1e6_relative(dim: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    mu1, sigma1 = random_gaussian(rng, dim, 4 * dim)
    mu2, sigma2 = random_gaussian(rng, dim, 4 * dim)
    expected = scipy_frechet(mu1, sigma1, mu2, sigma2)
    actual = frechet_distance(*(torch.from_numpy(a) for a in (mu1, sigma1, mu2, sigma2))).item()
    assert actual == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("seed", range(3))
def test_eigenvalue_frechet_matches_pytorch_fid(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    mu1, sigma1 = random_gaussian(rng, 32, 200)
    mu2, sigma2 = random_gaussian(rng, 32, 200)
    expected = calculate_frechet_distance(mu1, sigma1, mu2, sigma2)
    actual = frechet_distance(*(torch.from_numpy(a) for a in (mu1, sigma1, mu2, sigma2))).item()
    assert actual == pytest.approx(expected, rel=1e-6)


def test_frechet_of_a_distribution_with_itself_is_zero_and_distance_is_symmetric() -> None:
    rng = np.random.default_rng(7)
    mu1, sigma1 = (torch.from_numpy(a) for a in random_gaussian(rng, 24, 100))
    mu2, sigma2 = (torch.from_numpy(a) for a in random_gaussian(rng, 24, 100))
    assert abs(frechet_distance(mu1, sigma1, mu1, sigma1).item()) < 1e-9 * sigma1.trace().item()
    forward = frechet_distance(mu1, sigma1, mu2, sigma2).item()
    assert frechet_distance(mu2, sigma2, mu1, sigma1).item() == pytest.approx(forward, rel=1e-10)


def test_singular_covariances_give_a_finite_distance_like_scipy() -> None:
    rng = np.random.default_rng(3)
    mu1, sigma1 = random_gaussian(rng, 40, 10)  # rank 9 < 40
    mu2, sigma2 = random_gaussian(rng, 40, 10)
    actual = frechet_distance(*(torch.from_numpy(a) for a in (mu1, sigma1, mu2, sigma2))).item()
    assert np.isfinite(actual)
    assert actual == pytest.approx(scipy_frechet(mu1, sigma1, mu2, sigma2), rel=1e-5)


def test_feature_statistics_match_numpy_mean_and_cov() -> None:
    features = torch.randn(50, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    mean, cov = feature_statistics(torch.tensor(50.0), features.sum(0), features.T @ features)
    np.testing.assert_allclose(mean.numpy(), features.numpy().mean(0), rtol=1e-12)
    np.testing.assert_allclose(
        cov.numpy(), np.cov(features.numpy(), rowvar=False), rtol=1e-10, atol=1e-12
    )


def test_fewer_than_two_samples_is_a_clear_error() -> None:
    metric = FrechetFeatureDistance(lambda x: x, num_features=3)
    metric.update(torch.zeros(1, 3), real=True)
    metric.update(torch.zeros(4, 3), real=False)
    with pytest.raises(ValueError, match="at least 2 samples"):
        metric.compute()


def test_wrong_feature_width_names_both_numbers() -> None:
    metric = FrechetFeatureDistance(lambda x: x, num_features=3)
    with pytest.raises(ValueError, match=r"4 features.*num_features=3"):
        metric.update(torch.zeros(2, 4), real=True)


@given(
    real_splits=st.lists(st.integers(1, 7), min_size=1, max_size=4),
    fake_splits=st.lists(st.integers(1, 7), min_size=1, max_size=4),
)
def test_result_is_invariant_to_how_samples_are_split_into_batches(
    real_splits, fake_splits
) -> None:
    # At least 8 samples per side: with fewer than dim + 1 the covariance is singular and the
    # square root of a zero eigenvalue turns round-off of 1e-16 into 1e-8.
    generator = torch.Generator().manual_seed(0)
    real = torch.randn(sum(real_splits) + 8, 5, generator=generator)
    fake = torch.randn(sum(fake_splits) + 8, 5, generator=generator) + 0.5
    whole = FrechetFeatureDistance(torch.nn.Identity(), num_features=5)
    whole.update(real, real=True)
    whole.update(fake, real=False)
    split = FrechetFeatureDistance(torch.nn.Identity(), num_features=5)
    for chunk in torch.split(real, [*real_splits, 8]):
        split.update(chunk, real=True)
    for chunk in torch.split(fake, [*fake_splits, 8]):
        split.update(chunk, real=False)
    assert split.compute().item() == pytest.approx(whole.compute().item(), rel=1e-9, abs=1e-12)


def test_reset_keeps_real_statistics_when_asked() -> None:
    generator = torch.Generator().manual_seed(2)
    real, fake = torch.randn(20, 4, generator=generator), torch.randn(20, 4, generator=generator)
    metric = FrechetFeatureDistance(torch.nn.Identity(), num_features=4, reset_real_features=False)
    metric.update(real, real=True)
    metric.update(fake, real=False)
    first = metric.compute()
    metric.reset()
    assert metric.real_count.item() == 20 and metric.fake_count.item() == 0
    metric.update(fake, real=False)
    assert metric.compute().item() == pytest.approx(first.item(), rel=1e-12)
