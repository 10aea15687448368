"""Expression (AED) and pose (APD) error against a numpy reference, with injected extractors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from metrics.expression import ExpressionError, PoseError


class QuadrantExtractor:
    """Mean intensity of each image quadrant (4-d); no face where the frame is all black."""

    def __call__(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = torch.nn.functional.adaptive_avg_pool2d(
            frames.mean(dim=1, keepdim=True), 2
        ).flatten(1)
        return pooled, frames.amax(dim=(1, 2, 3)) > 0


def numpy_reference(generated: np.ndarray, driving: np.ndarray) -> tuple[float, int]:
    def features(videos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        b, _, t, h, w = videos.shape
        grey = (
            videos.mean(axis=1)
            .reshape(b, t, 2, h // 2, 2, w // 2)
            .mean(axis=(3, 5))
            .reshape(b, t, 4)
        )
        return grey, videos.max(axis=(1, 3, 4)) > 0

    g, g_found = features(generated)
    d, d_found = features(driving)
    found = g_found & d_found
    return float(np.abs(g - d).mean(axis=-1)[found].mean()), int((~found).sum())


@pytest.mark.parametrize("metric_class", [ExpressionError, PoseError])
def test_feature_error_matches_numpy_and_counts_frames_without_a_face(metric_class) -> None:
    generator = torch.Generator().manual_seed(0)
    generated = torch.rand(2, 3, 5, 8, 8, generator=generator, dtype=torch.float64)
    driving = torch.rand(2, 3, 5, 8, 8, generator=generator, dtype=torch.float64)
    generated[0, :, 1] = 0
    driving[1, :, 3] = 0
    metric = metric_class(QuadrantExtractor())
    metric.update(generated, driving)
    result = metric.compute()
    expected, missing = numpy_reference(generated.numpy(), driving.numpy())
    assert result["mean"].item() == pytest.approx(expected, rel=1e-12)
    assert result["not_found"].item() == missing == 2 and result["frames"].item() == 10


def test_plain_tensor_extractor_means_every_frame_has_a_face() -> None:
    metric = ExpressionError(lambda frames: frames.mean(dim=(2, 3)))
    generated, driving = torch.full((1, 3, 2, 4, 4), 0.75), torch.full((1, 3, 2, 4, 4), 0.25)
    metric.update(generated, driving)
    assert (
        metric.compute()["mean"].item() == pytest.approx(0.5)
        and metric.compute()["not_found"].item() == 0
    )


def test_mismatched_frame_counts_are_a_clear_error() -> None:
    with pytest.raises(ValueError, match="must agree in batch and frames"):
        PoseError(QuadrantExtractor()).update(torch.rand(1, 3, 4, 8, 8), torch.rand(1, 3, 5, 8, 8))


@given(splits=st.lists(st.integers(1, 3), min_size=1, max_size=4))
def test_expression_error_is_invariant_to_batch_splits(splits: list[int]) -> None:
    generator = torch.Generator().manual_seed(1)
    generated = torch.rand(sum(splits), 3, 3, 4, 4, generator=generator)
    driving = torch.rand(sum(splits), 3, 3, 4, 4, generator=generator)
    whole, split = ExpressionError(QuadrantExtractor()), ExpressionError(QuadrantExtractor())
    whole.update(generated, driving)
    for g, d in zip(torch.split(generated, splits), torch.split(driving, splits), strict=True):
        split.update(g, d)
    assert split.compute()["mean"].item() == pytest.approx(
        whole.compute()["mean"].item(), rel=1e-12
    )
