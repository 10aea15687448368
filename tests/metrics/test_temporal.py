"""Temporal stability on real renders of the world: the truth scores 1, a frozen video 0, noise as its model predicts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from metrics.temporal import TemporalStability
from reference_model.world import (
    driving_sequence,
    identity_params,
    render_video,
    split_ids,
    static_background,
)

CLIPS, FRAMES = 4, 24


@pytest.fixture(scope="module")
def world() -> dict[str, torch.Tensor]:
    """Four held-out identities, each under its own driving motion, and their static backgrounds."""
    identity = identity_params(list(split_ids("test"))[:CLIPS])
    motion = torch.stack([driving_sequence(10 + k, FRAMES) for k in range(CLIPS)])
    return {
        "truth": render_video(identity, motion),
        "background": static_background(identity, motion),
    }


def score(generated: torch.Tensor, world: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    metric = TemporalStability()
    metric.update(generated, world["truth"], world["background"])
    return metric.compute()


def test_the_truth_scores_one_and_a_frozen_video_zero(world) -> None:
    truth = score(world["truth"], world)
    assert truth["ratio"].item() == 1.0
    assert truth["per_clip_ratio"].tolist() == [1.0] * CLIPS
    assert truth["per_frame_ratio"].tolist() == [1.0] * (FRAMES - 1)
    assert truth["noise_std"].item() == truth["background_noise_std"].item() == 0.0
    frozen = score(world["truth"][:, :, :1].expand_as(world["truth"]), world)
    assert frozen["ratio"].item() == 0.0 and frozen["per_clip_ratio"].tolist() == [0.0] * CLIPS
    assert frozen["change"].item() == 0.0 and frozen["background_noise_std"].item() == 0.0
    # The world's background is static where the mask says so: its change is float rounding.
    assert truth["background_reference_change"].item() < 1e-10
    assert 0.4 < world["background"].double().mean().item() < 0.7  # measured 0.50-0.57


def test_flicker_ladder_follows_the_noise_model(world) -> None:
    """Truth plus i.i.d. noise sigma per frame: ratio - 1 = 2 sigma^2 / reference change, noise_std = sigma."""
    generator = torch.Generator().manual_seed(0)
    reference_change = score(world["truth"], world)["reference_change"].item()
    ratios = []
    for sigma in (0.0025, 0.005, 0.01, 0.02):
        noise = sigma * torch.randn(world["truth"].shape, generator=generator)
        result = score(world["truth"] + noise, world)
        predicted = 1.0 + 2.0 * sigma**2 / reference_change
        # measured: 1.557 (1.560), 3.238 (3.238), 9.957 (9.954), 36.78 (36.82)
        assert result["ratio"].item() - 1.0 == pytest.approx(predicted - 1.0, rel=0.03)
        assert result["noise_std"].item() == pytest.approx(sigma, rel=0.02)
        assert result["background_noise_std"].item() == pytest.approx(sigma, rel=0.02)
        assert (result["per_clip_ratio"] > 1.0).all()
        ratios.append(result["ratio"].item())
    assert ratios == sorted(ratios) and ratios[0] > 1.0


def test_grain_growing_through_the_clip_shows_in_the_per_frame_curve(world) -> None:
    generator = torch.Generator().manual_seed(1)
    sigma = 0.001 * torch.arange(FRAMES, dtype=torch.float32)  # no noise on frame 0
    noise = sigma[None, None, :, None, None] * torch.randn(
        world["truth"].shape, generator=generator
    )
    result = score(world["truth"] + noise, world)
    # The step t-1 -> t adds sigma_{t-1}^2 + sigma_t^2 to the mean squared change.
    expected = ((sigma[1:].square() + sigma[:-1].square()) / 2).sqrt().double()
    measured = result["per_frame_background_noise_std"]
    torch.testing.assert_close(measured, expected, rtol=0.05, atol=0.0)
    assert (result["per_frame_ratio"][1:] > result["per_frame_ratio"][:-1]).float().mean() > 0.8


def numpy_reference(generated, reference, mask):
    def change(videos, weight):
        squared = np.square(np.diff(videos, axis=2)).sum(axis=1)  # [B, T-1, H, W]
        return (squared * weight).sum(axis=(2, 3))

    weight = mask[:, 1:] * mask[:, :-1]
    pixels = 3 * generated.shape[3] * generated.shape[4]
    ones = np.ones_like(weight)
    g, r = change(generated, ones) / pixels, change(reference, ones) / pixels
    bg, br, bw = change(generated, weight), change(reference, weight), 3 * weight.sum(axis=(2, 3))
    noise = np.sqrt(np.clip((bg.sum(1) - br.sum(1)) / bw.sum(1), 0, None) / 2)
    return {
        "ratio": g.sum() / r.sum(),
        "per_clip_ratio": g.sum(1) / r.sum(1),
        "per_frame_ratio": g.sum(0) / r.sum(0),
        "per_clip_background_noise_std": noise,
        "background_change": bg.sum() / bw.sum(),
    }


def test_matches_a_numpy_reference_with_soft_per_frame_masks() -> None:
    generator = torch.Generator().manual_seed(2)
    generated = torch.rand(3, 3, 5, 6, 7, generator=generator, dtype=torch.float64)
    reference = torch.rand(3, 3, 5, 6, 7, generator=generator, dtype=torch.float64)
    mask = torch.rand(3, 5, 6, 7, generator=generator, dtype=torch.float64)
    metric = TemporalStability()
    metric.update(generated, reference, mask)
    result = metric.compute()
    expected = numpy_reference(generated.numpy(), reference.numpy(), mask.numpy())
    for key, value in expected.items():
        np.testing.assert_allclose(result[key].numpy(), value, rtol=1e-12, err_msg=key)


def test_without_a_mask_the_background_figures_are_nan() -> None:
    metric = TemporalStability()
    metric.update(torch.rand(1, 3, 3, 4, 4), torch.rand(1, 3, 3, 4, 4))
    result = metric.compute()
    assert torch.isnan(result["background_noise_std"]) and torch.isnan(result["background_change"])
    assert torch.isfinite(result["ratio"])


@given(splits=st.lists(st.integers(1, 3), min_size=1, max_size=4), frames=st.integers(2, 5))
def test_result_is_invariant_to_batch_splits(splits: list[int], frames: int) -> None:
    generator = torch.Generator().manual_seed(3)
    generated = torch.rand(sum(splits), 3, frames, 4, 4, generator=generator)
    reference = torch.rand(sum(splits), 3, frames, 4, 4, generator=generator)
    mask = torch.rand(sum(splits), 4, 4, generator=generator) > 0.3
    whole, split = TemporalStability(), TemporalStability()
    whole.update(generated, reference, mask)
    for g, r, m in zip(
        *(torch.split(x, splits) for x in (generated, reference, mask)), strict=True
    ):
        split.update(g, r, m)
    expected, actual = whole.compute(), split.compute()
    for key in expected:
        torch.testing.assert_close(
            actual[key], expected[key], rtol=1e-12, atol=1e-15, equal_nan=True
        )


def test_bad_inputs_are_clear_errors() -> None:
    video = torch.rand(1, 3, 4, 8, 8)
    with pytest.raises(ValueError, match="must have one shape"):
        TemporalStability().update(video, torch.rand(1, 3, 5, 8, 8))
    with pytest.raises(ValueError, match="at least 2 frames"):
        TemporalStability().update(video[:, :, :1], video[:, :, :1])
    with pytest.raises(ValueError, match=r"background must be \[B, H, W\]"):
        TemporalStability().update(video, video, torch.ones(1, 8, 7))
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        TemporalStability().update(video, video, torch.full((1, 8, 8), 2.0))
    with (
        pytest.raises(ValueError, match="before update"),
        pytest.warns(UserWarning, match="called before the ``update``"),
    ):
        TemporalStability().compute()
