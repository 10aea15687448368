"""Expression following per part: constructed tracks with known answers, then real renders of the world."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from metrics.blinks import WORLD_BLINK_THRESHOLD, blink_runs
from metrics.expression import WORLD_PARTS, ExpressionError, ExpressionFollowing, PoseError
from reference_model.expression import load_expression_extractor
from reference_model.world import (
    EXPRESSION_NAMES,
    blink_centres,
    driving_sequence,
    freeze_parameters,
    identity_params,
    render_video,
    split_ids,
)

# ---- constructed tracks: the frame carries its own features ------------------------------


def read_features(frames: torch.Tensor) -> torch.Tensor:
    """An "extractor" that reads 7 features off the first row of the red channel."""
    return frames[:, 0, 0, :7]


def as_video(tracks: torch.Tensor) -> torch.Tensor:
    """[B, T, 7] feature tracks -> [B, 3, T, 1, 7] videos that `read_features` reads back."""
    return tracks[:, None, :, None, :].expand(-1, 3, -1, -1, -1).contiguous()


def constructed_pair() -> tuple[torch.Tensor, torch.Tensor]:
    t = torch.arange(40, dtype=torch.float64)
    driving = torch.stack(
        [torch.sin(2 * math.pi * t / period) for period in (20, 25, 30, 1, 17, 9, 23)], dim=1
    )
    eye = torch.full((40,), 0.8, dtype=torch.float64)
    eye[[5, 6, 7, 20, 21, 22, 33, 34]] = 0.1  # three blinks
    driving[:, 3] = eye
    generated = driving.clone()
    generated_eye = torch.full((40,), 0.8, dtype=torch.float64)
    generated_eye[[6, 7]] = 0.2  # follows the first blink
    generated_eye[[23, 24]] = 0.2  # the second, two frames late
    generated_eye[[12, 13]] = 0.2  # blinks where the driving does not
    generated_eye[28] = 0.2  # one frame: not a blink
    generated[:, 3] = generated_eye  # and misses the third
    generated[:, 4] = driving[:, 4] + 0.1  # brows offset: error 0.1, correlation 1
    generated[:, 5] = -driving[:, 5]  # mouth inverted: correlation -1
    generated[:, 6] = 2 * driving[:, 6] + 0.3  # smile scaled: correlation 1
    return generated[None], driving[None]


def test_constructed_tracks_give_known_errors_correlations_and_blink_counts() -> None:
    generated, driving = constructed_pair()
    metric = ExpressionFollowing(read_features)
    metric.update(as_video(generated), as_video(driving))
    result = metric.compute()
    assert result["error_pose"].item() == 0.0 and result["correlation_pose"].item() == 1.0
    assert result["error_brows"].item() == pytest.approx(0.1, rel=1e-12)
    assert result["correlation_brows"].item() == pytest.approx(1.0, rel=1e-12)
    assert result["correlation_mouth"].item() == pytest.approx(-1.0, rel=1e-12)
    expected_smile = (driving[0, :, 6] + 0.3).abs().mean().item()
    assert result["error_smile"].item() == pytest.approx(expected_smile, rel=1e-12)
    assert result["correlation_smile"].item() == pytest.approx(1.0, rel=1e-12)
    counts = [result[k].item() for k in ("blinks", "blinks_followed", "blinks_missed")]
    assert counts == [3, 2, 1] and result["blinks_spurious"].item() == 1
    assert result["frames"].item() == 40 and result["not_found"].item() == 0


def test_a_frozen_generated_track_correlates_zero_and_a_still_driving_one_is_left_out() -> None:
    generated, driving = constructed_pair()
    generated[0, :, 0] = 0.5  # yaw frozen: that feature follows nothing
    driving[0, :, 1] = 0.2  # pitch still: nothing to follow, left out of the pose mean
    metric = ExpressionFollowing(read_features)
    metric.update(as_video(generated), as_video(driving))
    assert metric.compute()["correlation_pose"].item() == pytest.approx(0.5, rel=1e-12)


def test_blink_runs_need_min_frames_and_treat_missing_frames_as_open() -> None:
    eye = torch.tensor([0.9, 0.1, 0.9, 0.1, 0.1, float("nan"), 0.1, 0.1, 0.1])
    assert blink_runs(eye, 0.325, 2) == [(3, 5), (6, 9)]
    assert blink_runs(eye, 0.325, 1) == [(1, 2), (3, 5), (6, 9)]


@given(splits=st.lists(st.integers(1, 3), min_size=1, max_size=4))
def test_result_is_invariant_to_batch_splits(splits: list[int]) -> None:
    generator = torch.Generator().manual_seed(4)
    generated = torch.rand(sum(splits), 12, 7, generator=generator, dtype=torch.float64)
    driving = torch.rand(sum(splits), 12, 7, generator=generator, dtype=torch.float64)
    whole, split = ExpressionFollowing(read_features), ExpressionFollowing(read_features)
    whole.update(as_video(generated), as_video(driving))
    for g, d in zip(torch.split(generated, splits), torch.split(driving, splits), strict=True):
        split.update(as_video(g), as_video(d))
    expected, actual = whole.compute(), split.compute()
    for key in expected:
        torch.testing.assert_close(actual[key], expected[key], rtol=1e-12, atol=1e-15)


# ---- the world: blinks the motion model places, read back by the shipped extractor -----


def test_world_blink_threshold_separates_open_eyes_from_every_blink() -> None:
    """On the motion's own eye track, the runs below the threshold are exactly the world's blinks."""
    frames = 600
    for seed in range(40):
        eye = driving_sequence(seed, frames)[:, EXPRESSION_NAMES.index("eye_open")]
        centres = blink_centres(seed, -3, frames + 3)  # blinks centred just outside reach in
        away = torch.ones(frames, dtype=torch.bool)
        for centre in centres:
            away &= (torch.arange(frames) - centre).abs() > 2.5  # outside the closure bump
        assert eye[away].min() > 1.9 * WORLD_BLINK_THRESHOLD  # open eyes: measured >= 0.65
        runs = blink_runs(eye, WORLD_BLINK_THRESHOLD, 2)
        for start, stop in runs:  # no run without a blink
            assert any(start - 1 <= c <= stop for c in centres), (seed, start, stop)
        for centre in centres[(centres >= 2) & (centres < frames - 2)]:  # no blink without a run
            assert any(start <= round(centre.item()) < stop for start, stop in runs), (seed, centre)


CLIP_FRAMES = 75


def seeds_with_blinks(count: int) -> list[int]:
    seeds, seed = [], 40
    while len(seeds) < count:
        if len(blink_centres(seed, 3, CLIP_FRAMES - 3)) > 0:
            seeds.append(seed)
        seed += 1
    return seeds


@pytest.fixture(scope="module")
def world() -> dict:
    """Four clips with blinks: identity A (truth) and B (driving) under one motion, plus altered copies of A."""
    seeds = seeds_with_blinks(4)
    ids = list(split_ids("test"))
    first, second = identity_params(ids[:4]), identity_params(ids[200:204])
    motion = torch.stack([driving_sequence(seed, CLIP_FRAMES) for seed in seeds])
    shifted = torch.stack([driving_sequence(seed, CLIP_FRAMES + 5)[5:] for seed in seeds])
    extractor = load_expression_extractor()
    return {
        "blinks": sum(len(blink_centres(seed, 0, CLIP_FRAMES)) for seed in seeds),
        "truth": render_video(first, motion),
        "driving": render_video(second, motion),
        "eyes_open": render_video(first, freeze_parameters(motion, ["eye_open"])),
        "shifted": render_video(first, shifted),
        "extractor": extractor,
    }


def follow(world: dict, generated: str, driving: str = "driving") -> dict:
    metric = ExpressionFollowing(world["extractor"])
    metric.update(world[generated], world[driving])
    return metric.compute()


def test_the_truth_follows_itself_exactly_and_every_blink(world) -> None:
    result = follow(world, "truth", "truth")
    for part in WORLD_PARTS:
        assert result[f"correlation_{part}"].item() == pytest.approx(1.0, abs=1e-12)
        assert result[f"error_{part}"].item() == 0.0
    assert result["blinks"].item() == world["blinks"] >= 4  # the world's own blink count
    assert result["blinks_followed"].item() == world["blinks"]
    assert result["blinks_spurious"].item() == 0


def test_another_identity_driving_the_same_motion_is_followed_part_by_part(world) -> None:
    result = follow(world, "truth")
    # measured: pose 0.996, eyes 0.960, brows 0.959, mouth 0.999, smile 0.766 (one clip whose
    # smile hardly moves scores 0.43: the extractor's error is most of what varies there)
    for part, least in {"pose": 0.9, "eyes": 0.9, "brows": 0.9, "mouth": 0.9, "smile": 0.6}.items():
        assert result[f"correlation_{part}"].item() > least, (part, result)
    assert result["blinks"].item() == result["blinks_followed"].item() == world["blinks"]
    assert result["blinks_spurious"].item() == 0


def test_eyes_held_open_miss_every_blink_and_only_the_eyes_stop_following(world) -> None:
    followed, held = follow(world, "truth"), follow(world, "eyes_open")
    assert held["blinks"].item() == held["blinks_missed"].item() == world["blinks"]
    assert held["blinks_followed"].item() == 0
    assert held["correlation_eyes"].item() < 0.3  # measured: -0.07
    for part in ("pose", "brows", "mouth", "smile"):
        assert held[f"correlation_{part}"].item() == pytest.approx(
            followed[f"correlation_{part}"].item(), abs=0.03
        )


def test_a_time_shifted_copy_follows_every_part_less(world) -> None:
    followed, shifted = follow(world, "truth"), follow(world, "shifted")
    for part in WORLD_PARTS:
        assert shifted[f"correlation_{part}"] < followed[f"correlation_{part}"], part
    # measured: pose 0.887, eyes -0.086, brows 0.902, mouth 0.431, smile 0.557; every blink missed
    assert shifted["correlation_mouth"].item() < 0.7  # syllables come every 4 frames
    assert shifted["blinks_followed"].item() == 0


def test_per_part_errors_average_to_aed_and_apd(world) -> None:
    result = follow(world, "truth")
    extractor = world["extractor"]
    aed = ExpressionError(lambda frames: extractor(frames)[:, 3:])
    apd = PoseError(lambda frames: extractor(frames)[:, :3])
    aed.update(world["truth"], world["driving"])
    apd.update(world["truth"], world["driving"])
    expression_parts = [result[f"error_{p}"] for p in ("eyes", "brows", "mouth", "smile")]
    assert torch.stack(expression_parts).mean().item() == pytest.approx(
        aed.compute()["mean"].item(), rel=1e-6
    )
    assert result["error_pose"].item() == pytest.approx(apd.compute()["mean"].item(), rel=1e-6)
