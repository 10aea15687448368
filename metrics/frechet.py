"""Frechet distance between Gaussian fits of features, and the metric FID and FVD share.

The distance (Dowson & Landau 1982; used as FID by Heusel et al. 2017, arXiv:1706.08500) is

    d^2 = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^{1/2}).

`scipy.linalg.sqrtm` of the product takes ~19 s at 2048-d here. The trace only needs the
eigenvalues: with S1 = L L^T (Cholesky), S1 S2 is similar to L^T S2 L, which is symmetric
positive semi-definite, so tr((S1 S2)^{1/2}) = sum(sqrt(eigvalsh(L^T S2 L))): one Cholesky
and one symmetric eigenvalue solve in float64. When S1 is singular (fewer samples than
features) the symmetric square root S1^{1/2} (from `eigh`) takes L's place.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from torchmetrics import Metric

__all__ = ["FeatureSums", "FrechetFeatureDistance", "feature_statistics", "frechet_distance"]


def _drop_round_off(eigenvalues: Tensor) -> Tensor:
    """Zero the eigenvalues of a PSD matrix that are round-off (numerical-rank tolerance, as numpy's matrix_rank).

    With fewer samples than features a covariance is singular; its zero eigenvalues come out
    as +-1e-16 * scale, and their square roots (1e-8 * scale each) would swamp the result.
    """
    tolerance = eigenvalues.abs().max() * eigenvalues.shape[0] * torch.finfo(eigenvalues.dtype).eps
    return torch.where(eigenvalues > tolerance, eigenvalues, torch.zeros_like(eigenvalues))


def _symmetric_sqrt(matrix: Tensor) -> Tensor:
    eigenvalues, eigenvectors = torch.linalg.eigh(matrix)
    return (eigenvectors * _drop_round_off(eigenvalues).sqrt()) @ eigenvectors.T


def frechet_distance(mu1: Tensor, sigma1: Tensor, mu2: Tensor, sigma2: Tensor) -> Tensor:
    """Squared Frechet distance between N(mu1, sigma1) and N(mu2, sigma2), in float64."""
    mu1, mu2 = mu1.double(), mu2.double()
    sigma1, sigma2 = sigma1.double(), sigma2.double()
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(
            f"shapes differ: mu {tuple(mu1.shape)} vs {tuple(mu2.shape)}, "
            f"sigma {tuple(sigma1.shape)} vs {tuple(sigma2.shape)}; "
            "both sides must come from the same feature extractor"
        )
    factor, info = torch.linalg.cholesky_ex(sigma1)
    if info != 0:  # singular: Cholesky fails, the (slower) symmetric square root does not
        factor = _symmetric_sqrt(sigma1)
    inner = factor.T @ sigma2 @ factor
    inner = (inner + inner.T) / 2
    trace_covmean = _drop_round_off(torch.linalg.eigvalsh(inner)).sqrt().sum()
    diff = mu1 - mu2
    return diff.dot(diff) + sigma1.trace() + sigma2.trace() - 2 * trace_covmean


def feature_statistics(count: Tensor, total: Tensor, outer_total: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and unbiased covariance from running sums (n, sum x, sum x x^T)."""
    n = count.double()
    if n < 2:
        raise ValueError(
            f"need at least 2 samples for a covariance, got {int(n)}; update with more data"
        )
    mean = total / n
    covariance = (outer_total - n * torch.outer(mean, mean)) / (n - 1)
    return mean, covariance


@dataclass(frozen=True)
class FeatureSums:
    """Running sums of features (n, sum x, sum x x^T) in float64: what the metric keeps per side."""

    count: Tensor
    total: Tensor
    outer_total: Tensor

    @classmethod
    def of(cls, features: Tensor) -> FeatureSums:
        features = features.double().reshape(features.shape[0], -1)
        return cls(
            torch.tensor(float(features.shape[0]), dtype=torch.float64),
            features.sum(dim=0),
            features.T @ features,
        )

    def __add__(self, other: FeatureSums) -> FeatureSums:
        return FeatureSums(
            self.count + other.count, self.total + other.total, self.outer_total + other.outer_total
        )


class FrechetFeatureDistance(Metric):
    """Frechet distance between features of real and generated samples (FID, FVD, any feature).

    States are float64 running sums (count, sum x, sum x x^T) per side, so batching and DDP
    (sum-reduced) give the same answer as one pass over all data. `feature` maps a batch of
    inputs to [N, num_features]; subclasses supply the real backends (Inception, I3D).
    `update(inputs, real)` also takes precomputed `FeatureSums` (cached statistics, or
    `FeatureSums.of(features)` for features extracted elsewhere).
    """

    higher_is_better = False
    is_differentiable = False
    full_state_update = False

    def __init__(
        self,
        feature: Callable[[Tensor], Tensor],
        num_features: int,
        reset_real_features: bool = True,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if not callable(feature):
            raise TypeError(
                f"feature must be callable (an nn.Module or a function), got {type(feature).__name__}"
            )
        self.feature = feature
        self.num_features = int(num_features)
        self.reset_real_features = reset_real_features
        for side in ("real", "fake"):
            self.add_state(
                f"{side}_count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum"
            )
            self.add_state(
                f"{side}_sum",
                torch.zeros(self.num_features, dtype=torch.float64),
                dist_reduce_fx="sum",
            )
            self.add_state(
                f"{side}_outer_sum",
                torch.zeros(self.num_features, self.num_features, dtype=torch.float64),
                dist_reduce_fx="sum",
            )

    def extract(self, inputs: Tensor) -> Tensor:
        """Features [N, num_features] of a batch (no gradient)."""
        with torch.no_grad():
            features = self.feature(inputs)
        features = features.reshape(features.shape[0], -1)
        if features.shape[1] != self.num_features:
            raise ValueError(
                f"feature returned {features.shape[1]} features per sample, expected num_features={self.num_features}"
            )
        return features.double()

    def update(self, inputs: Tensor | FeatureSums, real: bool) -> None:
        sums = inputs if isinstance(inputs, FeatureSums) else FeatureSums.of(self.extract(inputs))
        if sums.total.shape != (self.num_features,):
            raise ValueError(
                f"statistics of {sums.total.shape[0]} features, expected num_features={self.num_features}"
            )
        side = "real" if real else "fake"
        setattr(self, f"{side}_count", getattr(self, f"{side}_count") + sums.count.to(self.device))
        setattr(self, f"{side}_sum", getattr(self, f"{side}_sum") + sums.total.to(self.device))
        setattr(
            self,
            f"{side}_outer_sum",
            getattr(self, f"{side}_outer_sum") + sums.outer_total.to(self.device),
        )

    def compute(self) -> Tensor:
        mu_real, sigma_real = feature_statistics(
            self.real_count, self.real_sum, self.real_outer_sum
        )
        mu_fake, sigma_fake = feature_statistics(
            self.fake_count, self.fake_sum, self.fake_outer_sum
        )
        return frechet_distance(mu_real, sigma_real, mu_fake, sigma_fake)

    def reset(self) -> None:
        if self.reset_real_features:
            super().reset()
            return
        kept = {
            name: getattr(self, name).clone()
            for name in ("real_count", "real_sum", "real_outer_sum")
        }
        super().reset()
        for name, value in kept.items():
            setattr(self, name, value)
