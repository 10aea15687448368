"""Expression (AED) and pose (APD) error against a numpy reference, with injected extractors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from metrics.expression import ExpressionError, FeatureL1Error, PoseError
from metrics.landmarks import EXPRESSION_PARTS


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


# Real faces: InsightFace's 106-point landmarks on crops of t1.jpg.


@pytest.fixture(scope="module")
def landmarks():
    from metrics.faces import FaceDetector
    from metrics.landmarks import FaceLandmarks

    # Crops fill the frame, so a 320 detector input finds them at a quarter of the default cost.
    return FaceLandmarks(detector=FaceDetector(detection_size=(320, 320)))


@pytest.fixture(scope="module")
def faces(landmarks) -> list[torch.Tensor]:
    """A 160x160 crop around each of t1.jpg's six faces (twice the face's size), left to right."""
    import cv2

    from metrics.faces import insightface_photo

    bgr = cv2.imread(str(insightface_photo("t1.jpg")))
    photo = torch.from_numpy(np.ascontiguousarray(bgr[:, :, ::-1])).permute(2, 0, 1) / 255
    _, boxes = landmarks.faces(photo)
    crops = []
    for x1, y1, x2, y2 in sorted(boxes.tolist()):
        half, cx, cy = max(x2 - x1, y2 - y1), (x1 + x2) / 2, (y1 + y2) / 2
        crop = photo[
            :, max(int(cy - half), 0) : int(cy + half), max(int(cx - half), 0) : int(cx + half)
        ]
        crops.append(
            torch.nn.functional.interpolate(crop[None], size=(160, 160), mode="bilinear")[0]
        )
    return crops


def video(*frames: torch.Tensor) -> torch.Tensor:
    return torch.stack(frames, dim=1)[None]


def with_noise(face: torch.Tensor, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return (face + 0.02 * torch.randn(face.shape, generator=generator)).clamp(0, 1)


def open_mouth(landmarks, face: torch.Tensor) -> torch.Tensor:
    """The face with its mouth region stretched to twice its height about its centre."""
    from metrics.landmarks import LANDMARK_GROUPS

    points, found = landmarks(face[None])
    assert found.item()
    mouth = points[0, list(LANDMARK_GROUPS["mouth"])]
    x1, y1 = (mouth.amin(0) - 4).long().tolist()
    x2, y2 = (mouth.amax(0) + 4).long().tolist()
    tall = torch.nn.functional.interpolate(
        face[None, :, y1:y2, x1:x2], size=(2 * (y2 - y1), x2 - x1), mode="bilinear"
    )[0]
    top = (y1 + y2) // 2 - (y2 - y1)
    edited = face.clone()
    edited[:, top : top + tall.shape[1], x1:x2] = tall
    return edited


def test_real_aed_and_apd_of_a_video_against_itself_are_zero(landmarks, faces) -> None:
    from metrics.landmarks import LandmarkExpression, LandmarkPose

    clip = video(faces[0], faces[1], faces[3])
    for metric in (
        ExpressionError(LandmarkExpression(landmarks)),
        PoseError(LandmarkPose(landmarks)),
    ):
        metric.update(clip, clip)
        result = metric.compute()
        assert result["mean"].item() == 0 and result["not_found"].item() == 0
        assert result["frames"].item() == 3


def test_real_aed_grows_when_the_mouth_is_edited_and_between_people(landmarks, faces) -> None:
    from metrics.landmarks import LandmarkExpression

    def aed(generated: list[torch.Tensor], driving: list[torch.Tensor], parts) -> float:
        metric = ExpressionError(LandmarkExpression(landmarks, parts=parts))
        metric.update(video(*generated), video(*driving))
        return metric.compute()["mean"].item()

    mouth, eyes = ("mouth",), ("image_left_eye", "image_right_eye")
    driving = [faces[0], faces[3]]
    noisy = [with_noise(face, seed) for seed, face in enumerate(driving)]
    edited = [open_mouth(landmarks, face) for face in driving]
    # Measured: mouth AED 0.007 with noise, 0.042 with the mouth opened (eyes 0.005 then);
    # all parts 0.004 with noise, 0.15 between people.
    assert aed(edited, driving, mouth) > 3 * aed(noisy, driving, mouth)
    assert aed(edited, driving, mouth) > 2 * aed(edited, driving, eyes)
    others = [faces[1], faces[2], faces[4]]
    people = [faces[0], faces[3], faces[5]]
    noisy_people = [with_noise(face, 10 + seed) for seed, face in enumerate(people)]
    assert aed(others, people, EXPRESSION_PARTS) > 3 * aed(noisy_people, people, EXPRESSION_PARTS)


def test_real_apd_counts_frames_without_a_face(landmarks, faces) -> None:
    from metrics.landmarks import LandmarkPose

    blank = torch.full_like(faces[0], 0.5)
    metric = PoseError(LandmarkPose(landmarks))
    metric.update(video(faces[0], blank, faces[1]), video(faces[0], faces[2], blank))
    result = metric.compute()
    assert result["not_found"].item() == 2 and result["frames"].item() == 3
    assert result["mean"].item() == 0  # the one frame with faces on both sides is the same face
    assert metric.backend_info() == {
        "backend": "insightface-2d106det-pose",
        "weights": landmarks.weight_hashes,
    }
    assert set(landmarks.weight_hashes) == {"scrfd_500m_bnkps.onnx", "2d106det.onnx"}


@pytest.mark.parametrize("splits", [[1, 1, 1], [2, 1], [1, 2]])
def test_real_aed_is_invariant_to_batch_splits(landmarks, faces, splits: list[int]) -> None:
    from metrics.landmarks import LandmarkExpression

    generated = torch.cat([video(faces[index]) for index in (0, 1, 2)])
    driving = torch.cat([video(with_noise(faces[index], index)) for index in (0, 1, 2)])
    whole, split = (
        ExpressionError(LandmarkExpression(landmarks)),
        ExpressionError(LandmarkExpression(landmarks)),
    )
    whole.update(generated, driving)
    for g, d in zip(torch.split(generated, splits), torch.split(driving, splits), strict=True):
        split.update(g, d)
    assert split.compute()["mean"].item() == pytest.approx(
        whole.compute()["mean"].item(), rel=1e-12
    )
    assert whole.compute()["mean"].item() > 0


def test_landmarks_by_name_builds_the_real_extractors_and_other_names_are_refused() -> None:
    assert (
        ExpressionError("landmarks").backend_info()["backend"] == "insightface-2d106det-expression"
    )
    assert PoseError("landmarks").backend_info()["weights"]["2d106det.onnx"].startswith("f001b856")
    with pytest.raises(
        ValueError, match=r"extractor='arcface': PoseError takes 'landmarks' or a callable"
    ):
        PoseError("arcface")
    with pytest.raises(ValueError, match=r"extractor='landmarks': FeatureL1Error takes a callable"):
        FeatureL1Error("landmarks")
