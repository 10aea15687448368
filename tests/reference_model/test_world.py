"""The synthetic portrait world: identities, splits, renderer and driving motion."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from reference_model.world import (
    EXPRESSION_NAMES,
    EXPRESSION_RANGES,
    ID_ATTRIBUTES,
    SPLITS,
    driving_chunks,
    driving_frames,
    driving_sequence,
    expression_regions,
    identity_params,
    neutral_expression,
    random_expression,
    render,
    render_video,
    sample_ids,
    split_ids,
)


def test_splits_are_disjoint_and_nonempty():
    names = sorted(SPLITS)
    assert names == ["test", "train", "val"]
    for i, a in enumerate(names):
        assert len(split_ids(a)) > 0
        for b in names[i + 1 :]:
            assert not set(split_ids(a)) & set(split_ids(b))


def test_unknown_split_names_the_choices():
    with pytest.raises(ValueError, match="train"):
        split_ids("training")


def test_identity_params_are_a_function_of_id_alone():
    batch = identity_params(torch.tensor([7, 3, 10_600, 3]))
    assert batch.shape == (4, len(ID_ATTRIBUTES)) and len(ID_ATTRIBUTES) >= 8
    assert torch.equal(batch[1], batch[3])
    assert torch.equal(batch[0], identity_params([7])[0])
    assert not torch.equal(batch[0], batch[1])
    assert not torch.equal(identity_params([7], world_seed=1), identity_params([7]))
    many = identity_params(split_ids("val"))
    assert many.min() >= 0.0 and many.max() < 1.0
    # Hash-drawn attributes spread over the unit interval.
    assert (many.mean(0) - 0.5).abs().max() < 0.06


def test_render_shapes_and_range_at_64_and_32():
    generator = torch.Generator().manual_seed(0)
    identity = identity_params(torch.arange(6))
    expression = random_expression(6, generator)
    for size in (64, 32):
        frames = render(identity, expression, size)
        assert frames.shape == (6, 3, size, size)
        assert frames.dtype == torch.float32
        assert frames.min() >= 0.0 and frames.max() <= 1.0
        assert frames.std() > 0.1  # a face, not a flat colour


def test_render_is_deterministic_and_chunk_independent():
    generator = torch.Generator().manual_seed(1)
    identity = identity_params(torch.arange(10))
    expression = random_expression(10, generator)
    whole = render(identity, expression, 32)
    assert torch.equal(whole, render(identity, expression, 32))
    assert torch.allclose(whole, render(identity, expression, 32, chunk=3), atol=1e-6)


def test_render_of_fixed_faces_is_pinned():
    """The shipped networks were trained on these frames: a faster renderer must draw the same."""
    # Values from the renderer the networks were trained on (commit 9647cf0), which drew every
    # shape over the whole frame; identity 10600 wears glasses, frame 1 is turned and rolled.
    identity = identity_params([3, 10_600, 42])
    expression = neutral_expression(3)
    expression[1] = torch.tensor([0.5, -0.3, 0.25, 0.2, 0.9, 0.8, -0.7])
    expression[2] = torch.tensor([-0.45, 0.2, -0.1, 1.0, 0.0, 0.3, 0.9])
    frames = render(identity, expression, 64).double()
    means = [
        [0.3978797, 0.4115801, 0.4893868],
        [0.6112667, 0.3886287, 0.3938995],
        [0.2707797, 0.3489446, 0.2426536],
    ]
    assert torch.allclose(frames.mean((2, 3)), torch.tensor(means, dtype=torch.float64), atol=1e-6)
    generator = torch.Generator().manual_seed(0)
    weights = torch.rand(3, 64, 64, generator=generator, dtype=torch.float64) * 2 - 1
    projection = torch.tensor([0.0051838, 0.0034359, 0.0029592], dtype=torch.float64)
    assert torch.allclose((frames * weights).mean((1, 2, 3)), projection, atol=1e-6)
    # Red channel over the eyes, brows, nose, mouth and glasses.
    rows, cols = [14, 22, 27, 30, 38, 45], [20, 26, 32, 38, 44]
    red = [
        [
            [0.30805, 0.29493, 0.30582, 0.29791, 0.30821],
            [0.35001, 0.85412, 0.83646, 0.84689, 0.30119],
            [0.73067, 0.3157, 0.80948, 0.30154, 0.56503],
            [0.82171, 0.59934, 0.79423, 0.50065, 0.72016],
            [0.81175, 0.85893, 0.72825, 0.85904, 0.6807],
            [0.3421, 0.84785, 0.84352, 0.83956, 0.2967],
        ],
        [
            [0.65032, 0.63107, 0.59495, 0.63346, 0.64802],
            [0.57185, 0.73213, 0.59148, 0.51775, 0.57901],
            [0.61144, 0.75055, 0.46006, 0.4417, 0.28969],
            [0.69638, 0.75198, 0.5981, 0.4771, 0.28367],
            [0.74754, 0.75775, 0.65746, 0.27993, 0.58722],
            [0.59401, 0.75724, 0.72175, 0.64938, 0.58671],
        ],
        [
            [0.18278, 0.19071, 0.22642, 0.16105, 0.17921],
            [0.46665, 0.58014, 0.60162, 0.62147, 0.26378],
            [0.54734, 0.56926, 0.5865, 0.61278, 0.59352],
            [0.40851, 0.53584, 0.21793, 0.60722, 0.62149],
            [0.53534, 0.53694, 0.58029, 0.60265, 0.61257],
            [0.35586, 0.44258, 0.54744, 0.59318, 0.35993],
        ],
    ]
    picked = frames[:, 0][:, rows][:, :, cols]
    assert torch.allclose(picked, torch.tensor(red, dtype=torch.float64), atol=2e-5)


def test_each_expression_parameter_changes_the_frame_smoothly():
    identity = identity_params([11]).expand(3, -1)
    for k, name in enumerate(EXPRESSION_NAMES):
        expression = neutral_expression(3)
        low, high = EXPRESSION_RANGES[name]
        expression[:, k] = low + (high - low) * torch.tensor([0.2, 0.21, 0.7])
        frames = render(identity, expression, 64)
        small = (frames[1] - frames[0]).abs().max()
        large = (frames[2] - frames[0]).abs().max()
        assert large > 0.1, f"{name} barely changes the frame"
        assert small < 0.1 * large + 0.02, f"{name} is not smooth"


def test_identities_differ_more_than_expressions_of_one_identity():
    generator = torch.Generator().manual_seed(2)
    expression = random_expression(2, generator)
    same = render(identity_params([5, 5]), expression, 32)
    other = render(identity_params([5, 6]), expression[:1].expand(2, -1), 32)
    assert (other[0] - other[1]).abs().mean() > 0.05
    assert (same[0] - same[1]).abs().mean() > 0.005


def test_render_rejects_bad_shapes():
    with pytest.raises(ValueError, match="identity"):
        render(torch.zeros(2, 3), torch.zeros(2, 7))
    with pytest.raises(ValueError, match="expression"):
        render(identity_params([1, 2]), torch.zeros(2, 5))
    with pytest.raises(ValueError, match="rows"):
        render(identity_params([1, 2]), torch.zeros(3, 7))


def test_render_video_matches_frame_renders():
    motion = driving_sequence(4, 5)[None].expand(2, -1, -1)
    identity = identity_params([1, 2])
    video = render_video(identity, motion, 32)
    assert video.shape == (2, 3, 5, 32, 32)
    assert torch.allclose(video[1, :, 3], render(identity[1:], motion[1, 3:4], 32)[0], atol=1e-6)


@given(
    seed=st.integers(0, 2**31 - 1),
    length=st.integers(0, 300),
    chunk=st.integers(1, 97),
)
def test_motion_is_the_same_whatever_the_chunk_size(seed, length, chunk):
    whole = driving_sequence(seed, length)
    chunks = list(driving_chunks(seed, length, chunk))
    assert all(len(c) <= chunk for c in chunks)
    joined = torch.cat(chunks) if chunks else torch.zeros(0, 7)
    assert torch.equal(joined, whole)


def test_motion_is_deterministic_per_seed_and_starts_anywhere():
    a = driving_sequence(3, 400)
    assert torch.equal(a, driving_sequence(3, 400))
    assert not torch.equal(a, driving_sequence(4, 400))
    # A window far into a long sequence is computed without the frames before it.
    far = driving_frames(3, 14_990, 15_000)
    assert far.shape == (10, 7)
    assert torch.equal(driving_frames(3, 100, 200), a[100:200])


def test_motion_is_smooth_blinks_and_talks_within_ranges():
    motion = driving_sequence(9, 2000)
    low = torch.tensor([-0.6, -0.35, -0.3, 0.0, 0.0, 0.0, -1.0])
    high = torch.tensor([0.6, 0.35, 0.3, 1.0, 1.0, 1.0, 1.0])
    assert (motion >= low).all() and (motion <= high).all()
    head_step = (motion[1:, :3] - motion[:-1, :3]).abs().max()
    assert head_step < 0.05  # radians per frame: smooth head motion
    eye = motion[:, 3]
    blinks = ((eye[1:] < 0.2) & (eye[:-1] >= 0.2)).sum()
    assert 10 <= blinks <= 60  # 80 s of video: a blink every few seconds
    mouth = motion[:, 5]
    assert mouth.max() > 0.8 and (mouth < 0.05).float().mean() > 0.1  # talks, and pauses
    assert (mouth[1:] - mouth[:-1]).abs().mean() > 0.03  # syllables, not a slow drift


def test_motion_rejects_bad_arguments():
    with pytest.raises(ValueError, match="chunk_frames"):
        next(driving_chunks(0, 10, 0))
    with pytest.raises(ValueError, match="start"):
        driving_frames(0, 5, 2)


def test_expression_regions_cover_the_moving_face_parts_only():
    g = torch.Generator().manual_seed(3)
    identity = identity_params(sample_ids("train", 6, g))
    expression = random_expression(6, g)
    regions = expression_regions(identity, expression)
    assert regions.shape == (6, 1, 64, 64) and set(regions.unique().tolist()) <= {0.0, 1.0}
    # Eyes, brows and mouth: a few percent of the frame, never the corners (background).
    share = regions.mean(dim=(1, 2, 3))
    assert (share > 0.02).all() and (share < 0.25).all(), share
    assert regions[:, :, :6, :6].sum() == 0
    # Changing only the expression (not the pose) changes pixels inside the masks only.
    moved = expression.clone()
    moved[:, 3:] = random_expression(6, g)[:, 3:]
    diff = (render(identity, moved) - render(identity, expression)).abs().amax(dim=1, keepdim=True)
    assert diff[regions == 0].max() < 0.06
    # The masks follow the head: turning it moves them.
    turned = expression.clone()
    turned[:, 0] = -turned[:, 0].sign() * 0.5
    assert not torch.equal(expression_regions(identity, turned), regions)


def test_eye_regions_are_the_part_of_the_face_masks_that_eye_opening_moves():
    g = torch.Generator().manual_seed(4)
    identity = identity_params(sample_ids("train", 6, g))
    expression = random_expression(6, g)
    regions = expression_regions(identity, expression)
    eyes = expression_regions(identity, expression, params=("eye_open",))
    assert eyes.sum() > 0 and (eyes <= regions).all()
    assert (eyes.mean(dim=(1, 2, 3)) < 0.5 * regions.mean(dim=(1, 2, 3))).all()
    # Opening or closing the eyes changes pixels inside the eye masks only.
    blink = expression.clone()
    blink[:, 3] = random_expression(6, g)[:, 3]
    diff = (render(identity, blink) - render(identity, expression)).abs().amax(dim=1, keepdim=True)
    assert diff[eyes == 0].max() < 0.06
    with pytest.raises(ValueError, match="not expression parameters"):
        expression_regions(identity, expression, params=("nose",))
