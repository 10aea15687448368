"""The world's exact ladders: identity blends, frozen parameters, where the background shows, blink events."""

import pytest
import torch

from reference_model.world import (
    EXPRESSION_NAMES,
    background_colours,
    background_visibility,
    blend_identities,
    blink_centres,
    driving_sequence,
    freeze_parameters,
    identity_ladder,
    identity_params,
    render,
    render_video,
    split_ids,
    static_background,
)


def test_identity_ladder_ends_are_the_two_identities_and_rungs_share_the_motion():
    motion = driving_sequence(3, 6)
    first, second = list(split_ids("test"))[:2]
    ladder = identity_ladder(first, second, (0.0, 0.5, 1.0), motion, size=32)
    ends = render_video(identity_params([first, second]), motion[None].expand(2, -1, -1), 32)
    assert ladder.shape == (3, 3, 6, 32, 32)
    # Equal up to the renderer's feature windows, sized per batch (coverage below 1e-6 outside).
    torch.testing.assert_close(ladder[[0, 2]], ends, atol=1e-6, rtol=0)
    middle = blend_identities(*identity_params([first, second]), 0.5)
    torch.testing.assert_close(
        ladder[1], render_video(middle[None], motion[None], 32)[0], atol=1e-6, rtol=0
    )
    assert (ladder[1] - ladder[0]).abs().max() > 0.1


def test_blend_rejects_weights_outside_zero_one():
    first, second = identity_params([1, 2])
    with pytest.raises(ValueError, match=r"a must lie in \[0, 1\]"):
        blend_identities(first, second, 1.5)


def test_freeze_parameters_holds_only_the_named_columns():
    motion = driving_sequence(5, 30)
    frozen = freeze_parameters(motion, ["eye_open"])
    eye = EXPRESSION_NAMES.index("eye_open")
    assert (frozen[:, eye] == 0.85).all()
    others = [i for i in range(len(EXPRESSION_NAMES)) if i != eye]
    assert torch.equal(frozen[:, others], motion[:, others])
    assert torch.equal(freeze_parameters(motion, ["smile"], [0.5])[:, -1], torch.full((30,), 0.5))
    with pytest.raises(ValueError, match="unknown expression parameters"):
        freeze_parameters(motion, ["blink"])


def test_background_visibility_recomposes_the_frame_exactly():
    """frame = frame with another background + (background - other background) * visibility."""
    identity = identity_params(list(split_ids("test"))[:6])
    expression = driving_sequence(2, 6)
    visibility = background_visibility(identity, expression)
    frames = render(identity, expression)
    other = identity.clone()
    other[:, 17:19] = torch.tensor([0.3, 0.1])  # background hue and lightness
    recomposed = render(other, expression) + visibility * (
        background_colours(identity) - background_colours(other)
    )
    torch.testing.assert_close(recomposed, frames, atol=2e-6, rtol=0)
    assert (visibility[:, :, 0, 0] == 1).all() and (visibility[:, :, 32, 32] == 0).all()


def test_the_ground_truth_is_still_on_its_static_background():
    identity = identity_params(list(split_ids("test"))[:3])
    motion = torch.stack([driving_sequence(seed, 40) for seed in range(3)])
    mask = static_background(identity, motion)
    video = render_video(identity, motion)
    change = (video[:, :, 1:] - video[:, :, :-1]).abs().amax(dim=(1, 2))  # [B, H, W]
    assert change[mask].max() < 2e-4  # measured 1e-4: sigmoid tails of soft edges
    assert change[~mask].max() > 0.1  # the head moves
    assert 0.4 < mask.double().mean() < 0.7


def test_blink_centres_are_where_the_driving_eyes_close():
    for seed in range(10):
        eye = driving_sequence(seed, 300)[:, EXPRESSION_NAMES.index("eye_open")]
        for centre in blink_centres(seed, 0, 300):
            assert eye[round(centre.item())] < 0.1 * eye.max()
    assert blink_centres(0, 50, 50).numel() == 0
