"""Face detection and 222-point landmark tracking for FlashPortrait's driving videos.

FlashPortrait (Ma et al. 2025, arXiv 2512.16900) aligns every driving frame for its PD-FGC
expression extractor by 222 landmarks tracked over the video. This is our implementation of that
tracker, written from the behaviour of the released code (``wan/models/face_det.py``,
``face_align.py``, ``face_model.py``, ``face_utils.py``, driven by ``pdf.det_landmarks``), running
the two released ONNX files with onnxruntime:

- ``face_det.onnx``: a NanoDet-style detector on a 160 x 272 (width x height) letterboxed BGR frame,
  normalised by the BGR ImageNet mean/std. Outputs: face scores per anchor for strides 8, 16, 32,
  then per anchor a distribution over 8 distance bins for each side (left, top, right, bottom).
- ``face_landmark.onnx``: on a 128 x 128 BGR crop scaled to [0, 1]; outputs 222 landmarks (all x,
  then all y, in crop units), Euler angles (pitch, yaw in radians) and a face probability.

Tracking follows det_landmarks: a first pass over the video only yields each frame's face box;
the second starts from the first frame's box, then crops each frame around the previous frame's
smoothed landmarks while fresh detections compete as candidates, overlapping candidates resolving
to the larger. Where the released code would silently drop a frame without a face (shifting
later landmarks onto earlier frames) we raise instead. Nothing is downloaded; onnxruntime and
OpenCV come with ``flashbench[flashportrait]``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import torch
from scipy.special import softmax
from torch import Tensor
from torchvision.ops import box_iou

NUM_LANDMARKS = 222
DET_WIDTH, DET_HEIGHT = 160, 272
STRIDES = (8, 16, 32)
NUM_BINS = 8  # distance bins 0..7 (in strides) per box side
BGR_MEAN = np.array([103.53, 116.28, 123.675], dtype=np.float32)
BGR_STD = np.array([57.375, 57.12, 58.395], dtype=np.float32)
SCORE_THRESHOLD = 0.4
NMS_IOU = 0.3
NMS_CANDIDATES = 200
CROP_SIZE = 128
CROP_MARGIN = 0.15  # the face fills 85% of the crop's longer side
ITERATIONS = 3  # landmark passes per face and frame, each re-cropped from the last
MIN_FACE_PROB = 1e-4
MIN_FACE_SIZE = 96  # pixels: tracks whose landmarks span less (in x or y) are dropped
TRACK_IOU = 0.12  # tracks overlapping more than this are one face
LEFT_EYE_CORNER, RIGHT_EYE_CORNER = 74, 96

# One-Euro smoothing per landmark group: (points, points whose mean motion sets the strength,
# motion at which the strength reaches `slow`, `slow`, `fast`). Motion is in face sizes per frame;
# the strength ramps 0 -> slow -> fast as motion goes 0 -> knee -> SMOOTH_FULL, then stays at fast.
SMOOTH_FULL = 0.02
SMOOTHING_GROUPS = (
    (slice(0, 33), slice(9, 24), 0.005, 0.05, 0.3),  # contour, driven by its lower part
    (slice(33, 48), slice(33, 48), 0.003, 0.03, 0.7),  # nose
    (slice(48, 74), slice(48, 74), 0.003, 0.02, 0.5),  # eyebrows
    (slice(74, 96), slice(74, 96), 0.003, 0.03, 0.7),  # left eye
    (slice(96, 118), slice(96, 118), 0.003, 0.03, 0.7),  # right eye
    (slice(118, 182), slice(118, 182), 0.003, 0.05, 0.7),  # mouth
    (slice(182, 202), slice(182, 202), 0.003, 0.03, 0.7),  # left pupil
    (slice(202, 222), slice(202, 222), 0.003, 0.03, 0.7),  # right pupil
)


def to_bgr_uint8(frames: Tensor) -> np.ndarray:
    """``[T, 3, H, W]`` float RGB in [0, 1] -> ``[T, H, W, 3]`` uint8 BGR, as OpenCV decodes video."""
    shape = tuple(frames.shape)
    if len(shape) != 4 or shape[1] != 3 or 0 in shape or not frames.is_floating_point():
        raise ValueError(
            f"expected frames [T, 3, H, W] float RGB in [0, 1], got {shape} {frames.dtype}"
        )
    pixels = frames.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8)
    return np.ascontiguousarray(pixels.permute(0, 2, 3, 1).flip(-1).cpu().numpy())


def letterbox_matrix(width: int, height: int) -> np.ndarray:
    """3 x 3 map from image pixels to the detector input: scaled to fit, centred, ratio kept."""
    ratio = min(DET_WIDTH / width, DET_HEIGHT / height)
    shift_x, shift_y = (DET_WIDTH - ratio * width) / 2, (DET_HEIGHT - ratio * height) / 2
    return np.array([[ratio, 0.0, shift_x], [0.0, ratio, shift_y], [0.0, 0.0, 1.0]])


def detector_input(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """BGR uint8 ``[H, W, 3]`` -> the detector's ``[1, 3, 272, 160]`` input and its letterbox matrix."""
    matrix = letterbox_matrix(image.shape[1], image.shape[0])
    resized = cv2.warpPerspective(image, matrix, (DET_WIDTH, DET_HEIGHT))
    normalised = (resized.astype(np.float32) - BGR_MEAN) / BGR_STD
    return np.ascontiguousarray(normalised.transpose(2, 0, 1)[None]), matrix


def anchor_centers(stride: int) -> np.ndarray:
    """``[N, 2]`` (x, y) of one level's anchors, row-major; the last row/column may be partial."""
    rows, cols = math.ceil(DET_HEIGHT / stride), math.ceil(DET_WIDTH / stride)
    ys, xs = np.mgrid[0:rows, 0:cols] * stride
    return np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float64)


def decode_boxes(
    scores: Sequence[np.ndarray], distributions: Sequence[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """The detector's raw outputs per stride -> every anchor's ``[N, 4]`` box (x0, y0, x1, y1 in
    detector-input pixels) and ``[N]`` score. Each side's distance is the expectation of its
    softmaxed bins, in strides (distribution focal loss)."""
    boxes, confidences = [], []
    for stride, score, distribution in zip(STRIDES, scores, distributions, strict=True):
        centers = anchor_centers(stride)
        bins = softmax(np.reshape(distribution, (len(centers), 4, NUM_BINS)), axis=-1)
        distance = bins @ np.arange(NUM_BINS) * stride
        boxes.append(np.concatenate([centers - distance[:, :2], centers + distance[:, 2:]], 1))
        confidences.append(np.reshape(score, len(centers)).astype(np.float64))
    return np.concatenate(boxes), np.concatenate(confidences)


def select_boxes(boxes: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Indices of the boxes scoring above the threshold that survive NMS, best first."""
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
    keep = cv2.dnn.NMSBoxes(xywh, scores, SCORE_THRESHOLD, NMS_IOU, top_k=NMS_CANDIDATES)
    return np.asarray(keep, dtype=np.int64).reshape(-1)


def boxes_to_image(boxes: np.ndarray, matrix: np.ndarray, width: int, height: int) -> np.ndarray:
    """Detector-input boxes -> image pixels, clipped to the image and truncated to whole pixels
    (the released detector returns int32 boxes)."""
    back = cv2.invertAffineTransform(matrix[:2])
    corners = cv2.transform(boxes.reshape(-1, 1, 2), back).reshape(-1, 4)
    corners[:, 0::2] = corners[:, 0::2].clip(0, width)
    corners[:, 1::2] = corners[:, 1::2].clip(0, height)
    return np.floor(corners)


def crop_matrix(points: np.ndarray, angle: float = 0.0) -> np.ndarray:
    """2 x 3 map from image pixels to the 128 x 128 landmark crop framing ``[K, 2]`` points (a face
    box's two corners, or landmarks), rotated by ``angle`` degrees (OpenCV's sense) about the
    centre of their box, their rotated extent's longer side filling 85% of the crop."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    centre = tuple((points.min(0) + points.max(0)) / 2)
    upright = cv2.transform(points[:, None], cv2.getRotationMatrix2D(centre, angle, 1.0))[:, 0]
    scale = CROP_SIZE * (1 - CROP_MARGIN) / np.ptp(upright, axis=0).max()
    matrix = cv2.getRotationMatrix2D(centre, angle, scale)
    mapped = cv2.transform(points[:, None], matrix)[:, 0]
    matrix[:, 2] += CROP_SIZE / 2 - (mapped.min(0) + mapped.max(0)) / 2
    return matrix


def eye_angle(points: np.ndarray) -> float:
    """Radians of the line from the left to the right eye corner (image y points down)."""
    dx, dy = points[RIGHT_EYE_CORNER] - points[LEFT_EYE_CORNER]
    return math.atan2(dy, dx)


def crop_to_image(crop_points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Crop pixels -> image pixels through the inverse of the crop's matrix."""
    return cv2.transform(crop_points[:, None], cv2.invertAffineTransform(matrix))[:, 0]


def one_euro(
    x: np.ndarray, previous: np.ndarray, velocity: np.ndarray | float, strength: float
) -> tuple[np.ndarray, np.ndarray]:
    """One step of the released One-Euro filter; it uses ``strength`` as both the sampling period
    and beta, with min and derivative cutoffs 1. Returns the filtered points and velocity."""

    def alpha(cutoff: np.ndarray | float) -> np.ndarray | float:
        rate = 2 * math.pi * cutoff * strength
        return rate / (rate + 1)

    # alpha(1) * (x - previous) / strength, rearranged so that strength 0 (no motion) stays finite.
    step = 2 * math.pi * (x - previous) / (2 * math.pi * strength + 1)
    velocity = step + (1 - alpha(1.0)) * velocity
    weight = alpha(1.0 + strength * np.abs(velocity))
    return weight * x + (1 - weight) * previous, velocity


def smooth_landmarks(
    new: np.ndarray,
    previous: np.ndarray,
    velocities: Sequence[np.ndarray | float],
    face_size: float,
) -> tuple[np.ndarray, list[np.ndarray | float]]:
    """Smooth one frame's ``[222, 2]`` landmarks against the previous smoothed ones, each group
    with a strength set by how far it moved (in face sizes); returns the points and velocities."""
    motion = np.linalg.norm(new - previous, axis=1) / face_size
    smoothed, updated = new.copy(), []
    for (points, reference, knee, slow, fast), velocity in zip(
        SMOOTHING_GROUPS, velocities, strict=True
    ):
        strength = float(
            np.interp(motion[reference].mean(), [0, knee, SMOOTH_FULL], [0, slow, fast])
        )
        smoothed[points], velocity = one_euro(new[points], previous[points], velocity, strength)
        updated.append(velocity)
    return smoothed, updated


@dataclass
class _Track:
    rect: np.ndarray  # x0, y0, x1, y1: the seed box, then the landmarks' bounding box
    points: np.ndarray | None = None  # last smoothed landmarks
    face_size: float = 1.0  # normalises the next frame's motion for smoothing
    velocities: list = field(default_factory=lambda: [0.0] * len(SMOOTHING_GROUPS))


def _area(rect: np.ndarray) -> float:
    return float((rect[2] - rect[0]) * (rect[3] - rect[1]))


def _open_session(
    path: str | Path,
    released: str,
    input_chw: tuple[int, int, int],
    output_sizes: Sequence[int | None],
    providers: Sequence[str],
) -> tuple[ort.InferenceSession, str]:
    path = Path(path)
    if not path.is_file():
        raise ValueError(
            f"{path}: no such file; put FlashPortrait's released {released} there "
            "(FlashBench downloads nothing)"
        )
    try:
        session = ort.InferenceSession(str(path), providers=list(providers))
    except Exception as error:  # onnxruntime's errors derive from Exception only
        raise ValueError(
            f"{path} is not a valid ONNX model ({released} expected): {error}"
        ) from error
    inputs, outputs = session.get_inputs(), session.get_outputs()
    # Symbolic (named) dimensions are taken on trust.
    static = [all(isinstance(d, int) for d in out.shape) for out in outputs]
    fits = (
        len(inputs) == 1
        and len(inputs[0].shape) == 4
        and all(
            not isinstance(d, int) or d == e
            for d, e in zip(inputs[0].shape, (1, *input_chw), strict=True)
        )
        and len(outputs) == len(output_sizes)
        and all(
            size is None or not known or math.prod(out.shape) == size
            for out, size, known in zip(outputs, output_sizes, static, strict=True)
        )
    )
    if not fits:
        raise ValueError(
            f"{path} does not have {released}'s inputs/outputs: expected one input "
            f"[1, {', '.join(map(str, input_chw))}] and {len(output_sizes)} outputs, found inputs "
            f"{[i.shape for i in inputs]} and outputs {[o.shape for o in outputs]}"
        )
    return session, inputs[0].name


class FaceLandmarker:
    """FlashPortrait's face detector + 222-landmark tracker over a driving video."""

    def __init__(
        self,
        detector: str | Path,
        landmarks: str | Path,
        providers: Sequence[str] = ("CPUExecutionProvider",),
    ) -> None:
        anchors = [len(anchor_centers(s)) for s in STRIDES]
        # Scores per stride, then 4 sides x NUM_BINS distance logits per anchor.
        sizes = [*anchors, *(n * 4 * NUM_BINS for n in anchors)]
        self._landmarks_path = Path(landmarks)
        self._detector, self._detector_input = _open_session(
            detector, "face_det.onnx", (3, DET_HEIGHT, DET_WIDTH), sizes, providers
        )
        self._landmarker, self._landmarker_input = _open_session(
            landmarks,
            "face_landmark.onnx",
            (3, CROP_SIZE, CROP_SIZE),
            [2 * NUM_LANDMARKS, None, None],
            providers,
        )

    def __call__(self, frames: Tensor) -> Tensor:
        """``[T, 3, H, W]`` RGB in [0, 1] -> ``[T, 222, 2]`` float32 pixel (x, y) landmarks."""
        images = to_bgr_uint8(frames)
        # Like det_landmarks: a first tracking pass only supplies each frame's face box; the
        # second starts (and restarts, if the track is lost) from those boxes.
        rects, tracks = [], []
        for index, image in enumerate(images):
            tracks = self._track(image, tracks, None)
            rects.append(_largest(tracks, index).rect)
        landmarks, tracks = [], []
        for index, (image, rect) in enumerate(zip(images, rects, strict=True)):
            tracks = self._track(image, tracks, rect)
            landmarks.append(_largest(tracks, index).points)
        return torch.from_numpy(np.stack(landmarks).astype(np.float32))

    def detect(self, image: np.ndarray) -> np.ndarray:
        """Face boxes ``[N, 4]`` (x0, y0, x1, y1 pixels) in a BGR uint8 ``[H, W, 3]`` image."""
        net_input, matrix = detector_input(image)
        outputs = self._detector.run(None, {self._detector_input: net_input})
        boxes, scores = decode_boxes(outputs[:3], outputs[3:])
        boxes = boxes_to_image(boxes[select_boxes(boxes, scores)], matrix, *image.shape[1::-1])
        # A box clipped away to nothing has no crop.
        return boxes[(boxes[:, 2:] - boxes[:, :2]).max(1) > 0]

    def _landmark_net(self, crop: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        net_input = crop.transpose(2, 0, 1)[None].astype(np.float32) / 255
        points, euler, prob = self._landmarker.run(None, {self._landmarker_input: net_input})
        if points.size != 2 * NUM_LANDMARKS or euler.size < 2 or prob.size < 1:
            sizes = [points.size, euler.size, prob.size]
            raise ValueError(
                f"{self._landmarks_path} gave outputs of sizes {sizes}, not [444, 3, 1]"
            )
        crop_points = np.reshape(points, (2, NUM_LANDMARKS)).T.astype(np.float64) * CROP_SIZE
        return crop_points, np.degrees(euler.ravel()[:2]), float(prob.ravel()[0])

    def _refine(
        self, image: np.ndarray, matrix: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, float]:
        for _ in range(ITERATIONS):
            crop = cv2.warpAffine(image, matrix, (CROP_SIZE, CROP_SIZE))
            crop_points, pitch_yaw, prob = self._landmark_net(crop)
            points = crop_to_image(crop_points, matrix)
            # The released code re-crops at the eye angle measured in this crop (not in the
            # image), so passes alternate between rotated and near-upright crops.
            matrix = crop_matrix(points, math.degrees(eye_angle(crop_points)))
        return points, pitch_yaw, prob

    def _track(
        self, image: np.ndarray, tracks: list[_Track], rect: np.ndarray | None
    ) -> list[_Track]:
        # Running tracks still take every fresh detection as a candidate; a given rect only seeds
        # an empty tracker (the released FaceModel.forward with pre_rect).
        seeds = [rect] if rect is not None and not tracks else list(self.detect(image))
        tracks = [*tracks, *(_Track(np.asarray(seed, dtype=np.float64)) for seed in seeds)]
        dropped = set()
        for index, track in enumerate(tracks):
            if track.points is None:
                matrix = crop_matrix(track.rect)
            else:
                matrix = crop_matrix(track.points, math.degrees(eye_angle(track.points)))
            points, (pitch, yaw), prob = self._refine(image, matrix)
            if prob < MIN_FACE_PROB:
                dropped.add(index)
                continue
            if track.points is not None:
                points, track.velocities = smooth_landmarks(
                    points, track.points, track.velocities, track.face_size
                )
            track.points = points
            track.rect = np.concatenate([points.min(0), points.max(0)])
            # Contour width, enlarged for turned heads, so turning reads as less motion.
            widening = 1 + (abs(pitch) + 0.6 * abs(yaw)) / 18
            track.face_size = float(np.linalg.norm(points[0] - points[32]) * widening)
            if np.ptp(points, axis=0).min() < MIN_FACE_SIZE:
                dropped.add(index)
        # Overlapping tracks are one face: the pairwise sweep keeps the larger (ties: the earlier).
        if len(tracks) > 1:
            iou = box_iou(*[torch.from_numpy(np.stack([t.rect for t in tracks]))] * 2)
            for i, first in enumerate(tracks):
                if i in dropped:
                    continue
                for j, second in enumerate(tracks):
                    if j != i and j not in dropped and iou[i, j] > TRACK_IOU:
                        dropped.add(i if _area(first.rect) < _area(second.rect) else j)
        return [track for index, track in enumerate(tracks) if index not in dropped]


def _largest(tracks: list[_Track], index: int) -> _Track:
    if not tracks:
        raise ValueError(
            f"no face found in frame {index}; the driving video must show one face in every frame"
        )
    # The released code sorts by area and takes the last, so ties go to the later track.
    return max(reversed(tracks), key=lambda track: _area(track.rect))
