"""Calibrated identity distance: the world's identity ladder, drift over a clip, and ArcFace on its own face set."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from metrics.identity_distance import IdentityCalibration, IdentityDistance, calibrate_identity
from metrics.weights import WEIGHTS
from reference_model.calibration import load_identity_calibration
from reference_model.identity import load_identity_encoder
from reference_model.world import (
    blend_identities,
    driving_sequence,
    identity_ladder,
    identity_params,
    render,
    render_video,
    split_ids,
)

LADDER = (0.0, 0.05, 0.1, 0.2, 0.5, 1.0)
PAIRS, FRAMES = 12, 16


def bootstrap_ci(values: torch.Tensor, seed: int = 0, resamples: int = 4000) -> tuple[float, float]:
    """95% percentile bootstrap interval of the mean of ``values`` (resampled with replacement)."""
    generator = torch.Generator().manual_seed(seed)
    picks = torch.randint(len(values), (resamples, len(values)), generator=generator)
    means = values[picks].mean(dim=1)
    return means.quantile(0.025).item(), means.quantile(0.975).item()


@pytest.fixture(scope="module")
def world_metric() -> IdentityDistance:
    return IdentityDistance(load_identity_encoder(), load_identity_calibration())


def clip_distance(metric: IdentityDistance, reference: torch.Tensor, video: torch.Tensor) -> dict:
    metric.reset()
    metric.update(reference[None], video[None])
    return metric.compute()


@pytest.fixture(scope="module")
def ladder_distances(world_metric) -> torch.Tensor:
    """[PAIRS, len(LADDER)]: mean distance of each rung's frames to identity A's reference image."""
    test_ids = list(split_ids("test"))
    distances = torch.zeros(PAIRS, len(LADDER), dtype=torch.float64)
    for pair in range(PAIRS):
        motion = driving_sequence(100 + pair, FRAMES)
        rungs = identity_ladder(test_ids[pair], test_ids[250 + pair], LADDER, motion)
        reference = rungs[0, :, 0]  # rung a = 0 is A's ground truth; its first frame the reference
        for rung, video in enumerate(rungs):
            distances[pair, rung] = clip_distance(world_metric, reference, video)["mean"]
    return distances


def test_identity_ladder_is_monotone_and_separates_a_tenth_from_none(ladder_distances) -> None:
    mean = ladder_distances.mean(dim=0)
    # measured: 0.0002, 0.0074, 0.0288, 0.0947, 0.418, 1.247 (10 of 12 pairs monotone alone)
    assert (mean[1:] > mean[:-1]).all(), mean
    assert abs(mean[0].item()) < 0.01 and 0.5 < mean[-1].item() < 2.0
    low, high = bootstrap_ci(ladder_distances[:, LADDER.index(0.1)] - ladder_distances[:, 0])
    assert low > 0.0, (low, high)  # measured: [0.014, 0.046]
    low, _ = bootstrap_ci(ladder_distances[:, LADDER.index(0.05)] - ladder_distances[:, 0])
    assert low > 0.0  # measured: [0.0035, 0.012]


def test_identity_drifting_through_a_clip_rises_along_the_per_frame_curve(world_metric) -> None:
    """Four identities each blended into another over 24 frames: the mean curve rises with the blend."""
    ids = list(split_ids("test"))
    first, second = identity_params(ids[300:304]), identity_params(ids[320:324])
    a = torch.linspace(0.0, 1.0, 24)[:, None]
    motion = driving_sequence(7, 24)
    drifting = [
        render(blend_identities(f, s, a), motion).transpose(0, 1)
        for f, s in zip(first, second, strict=True)
    ]
    still = render_video(first, motion[None].expand(4, -1, -1))
    world_metric.reset()
    world_metric.update(still[:, :, 0], torch.stack(drifting))
    curve = world_metric.compute()["per_frame"]  # mean over the four clips at each frame
    world_metric.reset()
    world_metric.update(still[:, :, 0], still)
    held = world_metric.compute()["per_frame"]
    ranks = curve.argsort().argsort().double()
    spearman = torch.corrcoef(torch.stack([ranks, torch.arange(24.0, dtype=torch.float64)]))[0, 1]
    assert spearman > 0.95, curve  # measured: 1.00
    assert curve[-1] > 0.3 and held.abs().max() < 0.02, (curve, held)  # measured: 1.29 and 0.0009


def test_calibration_levels_are_the_medians_of_own_and_other_distances() -> None:
    # A 2-d "encoder" that reads the embedding off the frame: distances are known in closed form.
    angles = torch.tensor([[0.0, 0.1, 0.3], [1.0, 1.2, 1.0], [2.0, 2.0, 2.2]], dtype=torch.float64)
    views = torch.zeros(3, 3, 3, 2, 2, dtype=torch.float64)
    views[..., 0, 0, 0], views[..., 0, 0, 1] = angles.cos(), angles.sin()

    def encoder(images: torch.Tensor) -> torch.Tensor:
        return images[:, 0, 0, :]

    calibration = calibrate_identity(encoder, views, backend="angle")
    d = 1.0 - (angles[None, :, 1:] - angles[:, None, :1]).cos()  # [reference i, identity j, view]
    own = np.median([d[i, i].mean().item() for i in range(3)])
    other = np.median([d[i, j].mean().item() for i in range(3) for j in range(3) if i != j])
    assert calibration.own == pytest.approx(own, rel=1e-12)
    assert calibration.other == pytest.approx(other, rel=1e-12)  # six pairs: between the middle two
    assert calibration.identities == 3 and calibration.frames == 6
    assert calibration.scale(torch.tensor(calibration.other)).item() == pytest.approx(1.0)


def test_a_calibration_must_put_other_identities_beyond_own_frames() -> None:
    with pytest.raises(ValueError, match="must exceed own"):
        IdentityCalibration(own=0.2, other=0.1, backend="x", identities=2, frames=2, made_with="")
    with pytest.raises(ValueError, match="needs a calibration"):
        IdentityDistance(encoder=lambda images: images.mean(dim=(2, 3)))


ARCFACE = WEIGHTS["arcface-w600k_mbf"]
_arcface_path = ARCFACE.default_path()


@pytest.mark.skipif(
    _arcface_path is None or not _arcface_path.is_file(),
    reason=f"ArcFace weight file {ARCFACE.relative_path} is absent ({ARCFACE.obtain})",
)
def test_arcface_calibrated_on_its_face_set_tells_own_faces_from_others() -> None:
    from metrics.identity_distance import arcface_face_set

    metric = IdentityDistance("arcface")
    calibration = metric.calibration
    assert calibration.identities == 7 and calibration.frames == 35
    assert calibration.own < 0.2 < 0.8 < calibration.other  # measured: 0.034 and 0.969
    held_out = arcface_face_set(metric.encoder, views=4, seed=1)  # other jitters than calibration's
    own, others = [], []
    for person in range(7):
        own.append(clip_distance(metric, held_out[person, 0], held_out[person, 1:].transpose(0, 1)))
        other = held_out[(person + 1) % 7, 1:].transpose(0, 1)
        others.append(clip_distance(metric, held_out[person, 0], other))
    own_mean = torch.stack([r["mean"] for r in own])
    other_mean = torch.stack([r["mean"] for r in others])
    # measured: own -0.004..0.035, other 0.84..1.05
    assert own_mean.abs().max() < 0.3 and other_mean.min() > 0.6, (own_mean, other_mean)
