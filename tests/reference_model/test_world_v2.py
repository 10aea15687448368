"""World v2: hidden scene dynamics beside an unchanged v1, selectable by name."""

import pytest
import torch
import torch.nn.functional as F

from reference_model.world import (
    driving_frames,
    expression_regions,
    identity_params,
    neutral_expression,
    random_expression,
    render,
)
from reference_model.world.hidden import HiddenConfig, hidden_state
from reference_model.world.renderer_v2 import expression_regions_v2, render_v2
from reference_model.world.versions import WORLDS, world


def _inputs(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return identity_params(torch.arange(n) * 37 + 5), random_expression(n, generator)


def test_world_v1_by_name_is_the_v1_renderer_bit_for_bit():
    identity, expression = _inputs(6)
    seeds, frames = torch.arange(6) + 100, torch.arange(6) * 11
    assert torch.equal(
        world("v1").render(identity, expression, seeds, frames, 64),
        render(identity, expression, 64),
    )


def test_unknown_world_names_the_closest():
    with pytest.raises(ValueError, match="v2"):
        world("v3")
    assert sorted(WORLDS) == ["v1", "v2"]


def test_v2_render_is_deterministic_and_chunk_independent():
    identity, expression = _inputs(10, seed=1)
    seeds, frames = torch.arange(10) % 3, torch.arange(10) * 7
    whole = render_v2(identity, expression, seeds, frames, 32)
    assert whole.shape == (10, 3, 32, 32) and whole.min() >= 0 and whole.max() <= 1
    assert torch.equal(whole, render_v2(identity, expression, seeds, frames, 32))
    assert torch.allclose(
        whole, render_v2(identity, expression, seeds, frames, 32, chunk=3), atol=1e-6
    )


def test_v2_video_rendered_in_pieces_equals_whole():
    """Every frame is a pure function of (identity, expression, hidden seed, frame index)."""
    identity = identity_params([10_600])
    motion = driving_frames(4, 0, 20)[None]
    v2 = world("v2")
    whole = v2.render_video(identity, motion, hidden_seed=9, start=0, size=32)
    first = v2.render_video(identity, motion[:, :7], hidden_seed=9, start=0, size=32)
    rest = v2.render_video(identity, motion[:, 7:], hidden_seed=9, start=7, size=32)
    assert torch.allclose(whole, torch.cat([first, rest], dim=2), atol=1e-6)


def test_hidden_content_varies_between_hidden_seeds_with_face_and_motion_fixed():
    identity, expression = _inputs(8, seed=2)
    frames = torch.full((8,), 30)
    a = render_v2(identity, expression, torch.full((8,), 1), frames, 64)
    b = render_v2(identity, expression, torch.full((8,), 2), frames, 64)
    assert (a - b).abs().mean() > 0.03
    # Not only grain: the frames differ at a quarter of their size too.
    low_a, low_b = F.avg_pool2d(a, 4), F.avg_pool2d(b, 4)
    assert (low_a - low_b).abs().mean() > 0.02


def test_hidden_content_moves_over_time_where_v1_stands_still():
    identity, expression = _inputs(1, seed=3)
    identity, expression = identity.expand(2, -1), expression.expand(2, -1)
    seeds, frames = torch.tensor([5, 5]), torch.tensor([0, 12])
    v1 = world("v1").render(identity, expression, seeds, frames, 64)
    v2 = render_v2(identity, expression, seeds, frames, 64)
    assert torch.equal(v1[0], v1[1])
    assert (v2[0] - v2[1]).abs().mean() > 0.02


def test_hidden_state_is_a_function_of_seed_and_frame():
    seeds, frames = torch.tensor([3, 4, 3]), torch.tensor([10, 10, 10])
    state = hidden_state(seeds, frames)
    for key, value in state.items():
        assert torch.equal(value[0], value[2]), key
    moved = [k for k, v in state.items() if not torch.equal(v[0], v[1])]
    assert {"sway", "gaze_x", "head_dx", "light", "blob_x", "clothing"} <= set(moved)
    with pytest.raises(ValueError, match="one per frame"):
        hidden_state(torch.tensor([1, 2]), torch.tensor([1]))
    quiet = HiddenConfig(grain=0.0)
    assert float(hidden_state(seeds, frames, quiet)["grain"].abs().max()) == 0.0


def test_v2_faces_move_with_expression_as_in_v1():
    """The driving features still move the same face parts, however the hidden scene is set."""
    identity, expression = _inputs(6, seed=4)
    seeds, frames = torch.arange(6), torch.arange(6) * 5
    v1 = expression_regions(identity, expression, 64)
    v2 = expression_regions_v2(identity, expression, seeds, frames, 64)
    area1, area2 = v1.mean(dim=(1, 2, 3)), v2.mean(dim=(1, 2, 3))
    assert (area2 > 0.04).all()
    assert torch.allclose(area1, area2, rtol=0.35)


def test_v2_render_of_fixed_faces_and_scenes_is_pinned():
    """The v2 networks and DiT were trained on these frames: a refactored renderer must draw the same."""
    # Values from the renderer the v2 pool was rendered with (commit b8e1bd2); identity 10600
    # wears glasses, frame 1 is turned and rolled.
    identity = identity_params([3, 10_600, 42])
    expression = neutral_expression(3)
    expression[1] = torch.tensor([0.5, -0.3, 0.25, 0.2, 0.9, 0.8, -0.7])
    expression[2] = torch.tensor([-0.45, 0.2, -0.1, 1.0, 0.0, 0.3, 0.9])
    frames = render_v2(identity, expression, torch.tensor([11, 12, 13]), torch.tensor([0, 17, 40]))
    means = [
        [0.3719240, 0.4050935, 0.4820483],
        [0.5714889, 0.3614742, 0.3708462],
        [0.2609825, 0.3285629, 0.2475341],
    ]
    frames = frames.double()
    assert torch.allclose(frames.mean((2, 3)), torch.tensor(means, dtype=torch.float64), atol=1e-6)
    generator = torch.Generator().manual_seed(0)
    weights = torch.rand(3, 64, 64, generator=generator, dtype=torch.float64) * 2 - 1
    projection = torch.tensor([0.0049084, 0.0031709, 0.0027459], dtype=torch.float64)
    assert torch.allclose((frames * weights).mean((1, 2, 3)), projection, atol=1e-6)
