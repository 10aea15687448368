"""FlashPortrait's face detector + 222-landmark tracker, run on tiny fake ONNX models."""

import math
import re

import numpy as np
import pytest
import torch

pytest.importorskip(
    "onnxruntime", reason="the face landmarker needs onnxruntime (flashbench[real])"
)
pytest.importorskip("cv2", reason="the face landmarker needs OpenCV (flashbench[real])")
from onnx_faces import GRID, detector_outputs, write_detector, write_landmark_net

from flashbench.models.flashportrait.face_landmarks import (
    FaceLandmarker,
    crop_matrix,
    crop_to_image,
    decode_boxes,
    detector_input,
    eye_angle,
    letterbox_matrix,
    select_boxes,
    smooth_landmarks,
)

HEIGHT, WIDTH = 480, 640
# A 640 x 480 frame is letterboxed into the 160 x 272 detector input at scale 1/4, 76 rows down.
# Anchor (stride 16, row 8, col 5) sits at (80, 128); sides 1, 2, 3, 4 strides give the input box
# (64, 96, 128, 192), i.e. (256, 80, 512, 464) in the frame: 256 wide, 384 high, centred (384, 272).
FACE = (16, 8, 5, 0.9, (1, 2, 3, 4))
FACE_CENTRE, FACE_SIDE = np.array([384.0, 272.0]), 384.0


def crop_points(seed: int = 0) -> np.ndarray:
    """[222, 2] crop-unit landmarks whose box is centred in the crop and spans 85% of it in x
    (108.8 of 128 pixels), with level eye corners: every re-crop then reproduces the first."""
    rng = np.random.default_rng(seed)
    pixels = np.column_stack([rng.uniform(20, 108, 222), rng.uniform(30, 98, 222)])
    pixels[0, 0], pixels[1, 0] = 64 - 54.4, 64 + 54.4
    pixels[2, 1], pixels[3, 1] = 20.0, 108.0
    pixels[74], pixels[96] = (40.0, 50.0), (88.0, 50.0)
    return (pixels / 128).astype(np.float32)


def expected_pixels(points: np.ndarray, centre: np.ndarray, side: float) -> np.ndarray:
    # The crop shows the box's longer side as 108.8 crop pixels around the crop centre (64, 64).
    return centre + (points.astype(np.float64) * 128 - 64) * side / 108.8


def grey(frames: int) -> torch.Tensor:
    return torch.full((frames, 3, HEIGHT, WIDTH), 0.5)


@pytest.fixture
def landmark_net(tmp_path):
    return write_landmark_net(tmp_path / "face_landmark.onnx", crop_points())


def test_landmarks_of_a_detected_face_come_back_in_frame_pixels(tmp_path, landmark_net):
    detector = write_detector(tmp_path / "face_det.onnx", [FACE])
    landmarks = FaceLandmarker(detector, landmark_net)(grey(3))
    assert landmarks.dtype == torch.float32 and landmarks.shape == (3, 222, 2)
    expected = expected_pixels(crop_points(), FACE_CENTRE, FACE_SIDE)
    for frame in landmarks:
        np.testing.assert_allclose(frame.numpy(), expected, atol=0.02)


def test_the_largest_of_two_faces_is_tracked(tmp_path, landmark_net):
    # 128 x 128 frame pixels around (128, 208) and 256 x 256 around (448, 208).
    small, large = (16, 8, 2, 0.8, (1, 1, 1, 1)), (16, 8, 7, 0.7, (2, 2, 2, 2))
    detector = write_detector(tmp_path / "face_det.onnx", [small, large])
    landmarks = FaceLandmarker(detector, landmark_net)(grey(2))
    expected = expected_pixels(crop_points(), np.array([448.0, 208.0]), 256.0)
    for frame in landmarks:
        np.testing.assert_allclose(frame.numpy(), expected, atol=0.02)


def test_a_video_without_a_face_is_rejected_at_frame_zero(tmp_path, landmark_net):
    detector = write_detector(tmp_path / "face_det.onnx", [(16, 8, 5, 0.3, (1, 2, 3, 4))])
    with pytest.raises(ValueError, match="frame 0; the driving video must show one face"):
        FaceLandmarker(detector, landmark_net)(grey(2))


def test_a_face_lost_mid_video_names_the_frame(tmp_path):
    # Both nets see nothing in a black frame: the detector's scores and the landmark net's
    # probability drop to zero, so neither detection nor tracking can carry the face over.
    detector = write_detector(tmp_path / "face_det.onnx", [FACE], gate=0.0)
    net = write_landmark_net(tmp_path / "face_landmark.onnx", crop_points(), gate=0.0)
    landmarker = FaceLandmarker(detector, net)
    assert landmarker(grey(3)).shape == (3, 222, 2)
    frames = grey(4)
    frames[2] = 0.0
    with pytest.raises(ValueError, match="no face found in frame 2;"):
        landmarker(frames)


def test_decoding_recovers_a_box_from_an_anchor_and_its_side_bins():
    # Stride 32, row 8 (the detector's partial last row: 272 / 32 = 8.5), col 4: anchor (128, 256).
    scores, bins = detector_outputs([(32, 8, 4, 0.9, (2, 0, 1, 3))])
    boxes, confidences = decode_boxes(scores, bins)
    index = sum(rows * cols for rows, cols in (GRID[8], GRID[16])) + 8 * GRID[32][1] + 4
    assert len(boxes) == 34 * 20 + 17 * 10 + 9 * 5
    assert int(np.argmax(confidences)) == index and confidences[index] == pytest.approx(0.9)
    np.testing.assert_allclose(boxes[index], [128 - 64, 256 - 0, 128 + 32, 256 + 96], atol=1e-6)


def test_decoding_takes_the_expected_distance_of_spread_bins():
    scores, bins = detector_outputs([(8, 3, 4, 0.9, (2, 2, 2, 2))])
    anchor = 3 * GRID[8][1] + 4
    logits = bins[0].reshape(-1, 4, 8)
    logits[anchor, :, 3] = logits[anchor, :, 2]  # half the mass on bin 2, half on bin 3
    boxes, _ = decode_boxes(scores, [logits.reshape(1, -1, 32), *bins[1:]])
    np.testing.assert_allclose(boxes[anchor], [32 - 20, 24 - 20, 32 + 20, 24 + 20], atol=1e-6)


def test_nms_keeps_the_higher_scoring_of_overlapping_boxes_and_drops_low_scores():
    boxes = np.array(
        [
            [0, 0, 100, 100],
            [10, 10, 110, 110],  # IoU 0.68 with the first, scores higher
            [50, 10, 150, 110],  # IoU 0.29 with the first, 0.43 with the second
            [300, 300, 360, 360],
            [200, 200, 260, 260],  # alone but below the 0.4 score threshold
        ],
        dtype=np.float64,
    )
    scores = np.array([0.8, 0.9, 0.6, 0.7, 0.3])
    assert select_boxes(boxes, scores).tolist() == [1, 3]
    assert select_boxes(boxes[[0, 2]], scores[[0, 2]]).tolist() == [0, 1]


@pytest.mark.parametrize(
    ("width", "height", "top_left", "bottom_right"),
    [(640, 480, (0, 76), (160, 196)), (100, 400, (46, 0), (114, 272))],
)
def test_letterbox_fits_the_frame_centred_with_its_aspect_ratio(
    width, height, top_left, bottom_right
):
    matrix = letterbox_matrix(width, height)
    corners = np.array([[0, 0, 1], [width, height, 1]]) @ matrix.T
    np.testing.assert_allclose(corners[:, :2], [top_left, bottom_right], atol=1e-9)


def test_the_detector_sees_a_bgr_imagenet_normalised_letterbox():
    from flashbench.models.flashportrait.face_landmarks import to_bgr_uint8

    red = torch.zeros(1, 3, HEIGHT, WIDTH)
    red[:, 0] = 1.0
    image = to_bgr_uint8(red)[0]
    assert image.shape == (HEIGHT, WIDTH, 3) and image[0, 0].tolist() == [0, 0, 255]
    net_input, _ = detector_input(image)
    assert net_input.shape == (1, 3, 272, 160) and net_input.dtype == np.float32
    mean, std = np.array([103.53, 116.28, 123.675]), np.array([57.375, 57.12, 58.395])
    np.testing.assert_allclose(net_input[0, :, 136, 80], (np.array([0, 0, 255]) - mean) / std, 1e-5)
    np.testing.assert_allclose(net_input[0, :, 10, 80], -mean / std, rtol=1e-5)  # padding row


def test_a_box_crop_centres_the_box_with_its_longer_side_at_85_percent():
    matrix = crop_matrix(np.array([100.0, 50.0, 300.0, 150.0]))
    corners = np.array([[100.0, 50.0], [300.0, 150.0]])
    mapped = corners @ matrix[:, :2].T + matrix[:, 2]
    np.testing.assert_allclose(mapped, [[64 - 54.4, 64 - 27.2], [64 + 54.4, 64 + 27.2]])
    np.testing.assert_allclose(crop_to_image(mapped, matrix), corners, atol=1e-9)


def test_a_landmark_crop_levels_the_eyes_and_fits_the_points():
    # Crop-style points, rotated by 30 degrees (clockwise on screen), scaled 3x and moved.
    theta = math.radians(30)
    rotation = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    points = (crop_points().astype(np.float64) * 128) @ rotation.T * 3 + [500, 300]
    assert math.degrees(eye_angle(points)) == pytest.approx(30)
    matrix = crop_matrix(points, math.degrees(eye_angle(points)))
    mapped = points @ matrix[:, :2].T + matrix[:, 2]
    assert mapped[74, 1] == pytest.approx(mapped[96, 1]) and mapped[74, 0] < mapped[96, 0]
    np.testing.assert_allclose((mapped.min(0) + mapped.max(0)) / 2, [64, 64], atol=1e-9)
    assert np.ptp(mapped, axis=0).max() == pytest.approx(108.8)


def one_euro_reference(move: float, period: float, speed: float = 0.0) -> tuple[float, float]:
    """The textbook One-Euro step (min cutoff 1, derivative cutoff 1, beta = period): the filtered
    step for a raw ``move`` and the new speed estimate, given the previous one."""

    def alpha(cutoff: float) -> float:
        tau = 1 / (2 * math.pi * cutoff)
        return 1 / (1 + tau / period)

    speed = alpha(1.0) * move / period + (1 - alpha(1.0)) * speed
    return alpha(1.0 + period * abs(speed)) * move, speed


def test_smoothing_follows_the_one_euro_filter_per_landmark_group():
    previous = np.random.default_rng(1).uniform(0, 200, (222, 2))
    still, velocities = smooth_landmarks(previous.copy(), previous, [0.0] * 8, 100.0)
    np.testing.assert_array_equal(still, previous)
    assert np.all(np.isfinite(np.concatenate([np.ravel(v) for v in velocities])))
    # Moves of 5% of the face size (past the 2% knee) filter every group at its fastest; the
    # second move's filter remembers the first's speed.
    move = np.array([5.0, 0.0])
    first, velocities = smooth_landmarks(previous + move, previous, velocities, 100.0)
    second, _ = smooth_landmarks(first + move, first, velocities, 100.0)
    for points, fastest in [(range(0, 33), 0.3), (range(48, 74), 0.5), (range(118, 182), 0.7)]:
        step, speed = one_euro_reference(5.0, fastest)
        np.testing.assert_allclose((first - previous)[points, 0], step, rtol=1e-9)
        step, _ = one_euro_reference(5.0, fastest, speed)
        np.testing.assert_allclose((second - first)[points, 0], step, rtol=1e-9)
        np.testing.assert_allclose(second[points, 1], previous[points, 1], atol=1e-9)


def test_smoothing_damps_jitter_more_than_large_moves():
    previous = np.random.default_rng(2).uniform(0, 200, (222, 2))
    shares = []
    for move in (0.1, 5.0):  # 0.1% and 5% of a 100-pixel face
        smoothed, _ = smooth_landmarks(previous + move, previous, [0.0] * 8, 100.0)
        shares.append((smoothed - previous)[118:182] / move)  # mouth
    assert np.all((shares[0] > 0) & (shares[0] < shares[1]) & (shares[1] < 1))


@pytest.mark.parametrize("which", ["face_det.onnx", "face_landmark.onnx"])
def test_a_missing_model_file_is_named_with_what_to_put_there(tmp_path, landmark_net, which):
    detector = write_detector(tmp_path / "face_det.onnx", [FACE])
    files = {"face_det.onnx": detector, "face_landmark.onnx": landmark_net}
    files[which] = tmp_path / "missing" / which
    message = f"{re.escape(str(files[which]))}: no such file; put FlashPortrait's released {which}"
    with pytest.raises(ValueError, match=message):
        FaceLandmarker(files["face_det.onnx"], files["face_landmark.onnx"])


def test_a_file_that_is_not_onnx_is_rejected_by_name(tmp_path, landmark_net):
    broken = tmp_path / "face_det.onnx"
    broken.write_bytes(b"not a protobuf")
    with pytest.raises(ValueError, match=f"{re.escape(str(broken))} is not a valid ONNX model"):
        FaceLandmarker(broken, landmark_net)


@pytest.mark.parametrize(
    ("detector_kwargs", "landmark_kwargs"),
    [
        ({"num_outputs": 5}, {}),
        ({"input_shape": (1, 3, 320, 320)}, {}),
        ({}, {"input_shape": (1, 3, 112, 112)}),
        ({}, {"points": crop_points()[:68]}),
    ],
    ids=["detector-5-outputs", "detector-320-input", "landmarks-112-input", "68-landmarks"],
)
def test_a_model_with_other_inputs_or_outputs_is_rejected_by_name(
    tmp_path, detector_kwargs, landmark_kwargs
):
    detector = write_detector(tmp_path / "face_det.onnx", [FACE], **detector_kwargs)
    points = landmark_kwargs.get("points", crop_points())
    shape = landmark_kwargs.get("input_shape", (1, 3, 128, 128))
    net = write_landmark_net(tmp_path / "face_landmark.onnx", points, input_shape=shape)
    wrong = detector if detector_kwargs else net
    with pytest.raises(ValueError, match=f"{re.escape(str(wrong))} does not have .*inputs/outputs"):
        FaceLandmarker(detector, net)


@pytest.mark.parametrize(
    "frames",
    [
        torch.zeros(3, HEIGHT, WIDTH),
        torch.zeros(2, 1, HEIGHT, WIDTH),
        torch.zeros(2, HEIGHT, WIDTH, 3),
        torch.zeros(0, 3, HEIGHT, WIDTH),
        torch.zeros(2, 3, HEIGHT, WIDTH, dtype=torch.uint8),
    ],
    ids=["no-time-axis", "one-channel", "channels-last", "no-frames", "uint8"],
)
def test_frames_of_the_wrong_shape_or_type_are_rejected(tmp_path, landmark_net, frames):
    landmarker = FaceLandmarker(write_detector(tmp_path / "face_det.onnx", [FACE]), landmark_net)
    with pytest.raises(ValueError, match=re.escape("expected frames [T, 3, H, W] float RGB")):
        landmarker(frames)
