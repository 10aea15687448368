"""Seam discontinuity: a jump at a window boundary shows, a smooth video does not."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from metrics.seams import SeamDiscontinuity


def test_seam_ratio_matches_a_numpy_reference() -> None:
    generator = torch.Generator().manual_seed(0)
    videos = torch.rand(2, 3, 12, 6, 6, generator=generator, dtype=torch.float64)
    metric = SeamDiscontinuity()
    metric.update(videos, boundaries=[4, 8])
    result = metric.compute()
    change = np.abs(np.diff(videos.numpy(), axis=2)).mean(
        axis=(1, 3, 4)
    )  # [B, T-1]; index t-1 is step t-1 -> t
    boundary = change[:, [3, 7]].mean()
    interior = np.delete(change, [3, 7], axis=1).mean()
    assert result["ratio"].item() == pytest.approx(boundary / interior, rel=1e-12)
    assert result["boundary_change"].item() == pytest.approx(boundary, rel=1e-12)


def test_a_jump_at_the_boundary_scores_high_and_a_smooth_video_about_one() -> None:
    time = torch.linspace(0, 1, 16, dtype=torch.float64)
    smooth = (0.3 + 0.4 * time).view(1, 1, 16, 1, 1).expand(1, 3, 16, 4, 4).clone()
    jumpy = smooth.clone()
    jumpy[:, :, 8:] += 0.2
    for video, low, high in ((smooth, 0.99, 1.01), (jumpy, 5.0, float("inf"))):
        metric = SeamDiscontinuity()
        metric.update(video, boundaries=[8])
        assert low <= metric.compute()["ratio"].item() <= high


def test_boundaries_outside_the_video_are_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"boundaries \[0, 16\] outside 1..15"):
        SeamDiscontinuity().update(torch.rand(1, 3, 16, 4, 4), boundaries=[0, 8, 16])


def test_no_boundary_gives_nan_ratio() -> None:
    metric = SeamDiscontinuity()
    metric.update(torch.rand(1, 3, 4, 4, 4), boundaries=[])
    assert torch.isnan(metric.compute()["ratio"])
