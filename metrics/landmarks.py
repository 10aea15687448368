"""Real-face AED / APD extractors from InsightFace's 106-point landmarks (2d106det): expression shape, head pose.

`FaceLandmarks` finds the largest face with SCRFD (metrics/faces.py), crops it the way
InsightFace's `Landmark` model expects and runs 2d106det.onnx. `LandmarkExpression` turns the
points into expression features (eyes, brows and mouth after removing position, scale and
in-plane rotation); `LandmarkPose` turns them into yaw, pitch and roll. Both plug into
`ExpressionError` / `PoseError` and report frames without a face through their `found` mask.
InsightFace's models are licensed for non-commercial research only.

The 106-point scheme (read off t1.jpg's six faces; "image-left" is the subject's right):
contour 0-32 (0 the chin, 1-16 up the image-left side, 17-32 up the image-right side),
image-left eye 33-42 (38 its centre), image-left brow 43-51, mouth 52-71 (corners 52 and 61),
nose 72-86 (72 the bridge, 86 the tip), image-right eye 87-96 (88 its centre), image-right brow 97-105.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from metrics.faces import FaceDetector, largest_faces, load_insightface_model, to_bgr_uint8

__all__ = [
    "EXPRESSION_PARTS",
    "LANDMARK_GROUPS",
    "FaceLandmarks",
    "LandmarkExpression",
    "LandmarkPose",
    "head_pose",
    "normalise_landmarks",
]

NUM_LANDMARKS = 106
LANDMARK_GROUPS: dict[str, tuple[int, ...]] = {
    "contour": tuple(range(0, 33)),
    "image_left_eye": tuple(range(33, 43)),
    "image_left_brow": tuple(range(43, 52)),
    "mouth": tuple(range(52, 72)),
    "nose": tuple(range(72, 87)),
    "image_right_eye": tuple(range(87, 97)),
    "image_right_brow": tuple(range(97, 106)),
}
EXPRESSION_PARTS = (
    "image_left_eye",
    "image_right_eye",
    "image_left_brow",
    "image_right_brow",
    "mouth",
)
EYE_CENTRES = (38, 88)

# Pose points: eye centres, nose tip, mouth corners, chin.
POSE_POINTS = (38, 88, 86, 52, 61, 0)
# A generic adult head in millimetres, camera axes for a frontal face (x right, y down, z away
# from the camera), nose tip at the origin. Rough anthropometric averages: 63 mm between the
# pupils, a 50 mm mouth, 65 mm from nose tip to chin; depths say how far behind the nose tip
# each point lies. Only its symmetry matters for the flip / rotation properties; its depths set
# how large yaw and pitch come out.
FACE_TEMPLATE_MM = np.array(
    [
        [-31.5, -35.0, 30.0],  # image-left eye centre
        [31.5, -35.0, 30.0],  # image-right eye centre
        [0.0, 0.0, 0.0],  # nose tip
        [-25.0, 30.0, 25.0],  # image-left mouth corner
        [25.0, 30.0, 25.0],  # image-right mouth corner
        [0.0, 65.0, 20.0],  # chin
    ]
)

LANDMARK_INPUT = 192  # 2d106det's square input, in pixels
LANDMARK_CONTEXT = 1.5  # the crop spans 1.5x the box's longer side, as InsightFace's Landmark does


class FaceLandmarks:
    """106 landmarks of the largest face per image: SCRFD box, then InsightFace's 2d106det (alignment/coordinate_reg).

    Called on [N, 3, H, W] RGB in [0, 1], returns (points [N, 106, 2] in pixels of the input,
    found [N] bool); points of a frame without a face are zero. Runs on onnxruntime's CPU provider.
    """

    backend_name = "insightface-2d106det"

    def __init__(
        self,
        path: str | Path | None = None,
        detector: FaceDetector | None = None,
        detector_path: str | Path | None = None,
        threads: int | None = None,
        verify: bool = True,
    ) -> None:
        # InsightFace's Landmark.get crops and runs one face at a time; only its session is used.
        model, file, sha = load_insightface_model("landmark-2d106", path, threads, verify)
        self.detector = detector or FaceDetector(detector_path, threads=threads, verify=verify)
        self.weight_file = file
        self.session = model.session
        self.input_name = model.input_name
        self.weight_hashes = {**self.detector.weight_hashes, file.name: sha}

    def landmarks_in_boxes(self, image_bgr: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """Points [F, 106, 2] in image pixels of the faces in `boxes` [F, >=4] of one BGR uint8 image."""
        import cv2

        if len(boxes) == 0:
            return np.zeros((0, NUM_LANDMARKS, 2), dtype=np.float64)
        crops, inverses = [], []
        for x1, y1, x2, y2 in np.asarray(boxes, dtype=np.float64)[:, :4]:
            scale = LANDMARK_INPUT / (LANDMARK_CONTEXT * max(x2 - x1, y2 - y1))
            half = LANDMARK_INPUT / 2
            crop_from_image = np.array(
                [
                    [scale, 0.0, half - scale * (x1 + x2) / 2],
                    [0.0, scale, half - scale * (y1 + y2) / 2],
                ]
            )
            crops.append(
                cv2.warpAffine(image_bgr, crop_from_image, (LANDMARK_INPUT, LANDMARK_INPUT))
            )
            inverses.append(cv2.invertAffineTransform(crop_from_image))
        # The network normalises inside its graph (its first nodes subtract and scale), so it
        # takes raw RGB values in [0, 255].
        blob = np.stack(crops)[..., ::-1].transpose(0, 3, 1, 2).astype(np.float32)
        output = self.session.run(None, {self.input_name: np.ascontiguousarray(blob)})[0]
        # Outputs lie in [-1, 1] across the crop.
        in_crop = (output.reshape(len(crops), NUM_LANDMARKS, 2).astype(np.float64) + 1) * (
            LANDMARK_INPUT / 2
        )
        inverse = np.stack(inverses)
        return np.einsum("fij,fpj->fpi", inverse[:, :, :2], in_crop) + inverse[:, None, :, 2]

    def faces(self, image: Tensor) -> tuple[Tensor, Tensor]:
        """Every face of one [3, H, W] RGB image in [0, 1]: (points [F, 106, 2], boxes [F, 4])."""
        image_bgr = to_bgr_uint8(image[None])[0]
        boxes, _ = self.detector(image_bgr)
        points = self.landmarks_in_boxes(image_bgr, boxes)
        return torch.from_numpy(points), torch.from_numpy(np.asarray(boxes[:, :4], np.float64))

    def __call__(self, images: Tensor) -> tuple[Tensor, Tensor]:
        points = torch.zeros(images.shape[0], NUM_LANDMARKS, 2, dtype=torch.float64)
        found = torch.zeros(images.shape[0], dtype=torch.bool)
        for index, image_bgr, box, _ in largest_faces(self.detector, images):
            points[index] = torch.from_numpy(self.landmarks_in_boxes(image_bgr, box)[0])
            found[index] = True
        return points, found


def normalise_landmarks(points: Tensor) -> Tensor:
    """Points [N, P, 2] in a canonical frame: eye centres at (-0.5, 0) and (0.5, 0).

    A similarity transform (translation, scale, in-plane rotation) fixed by the two eye
    centres, so what remains is shape: expression, plus the out-of-plane pose that 2D points
    cannot separate from it.
    """
    points = points.double()
    left, right = points[:, EYE_CENTRES[0]], points[:, EYE_CENTRES[1]]
    axis = right - left
    distance = axis.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    cos, sin = (axis / distance).unbind(-1)
    # Rotating by minus the eye line's angle makes it horizontal.
    rotation = torch.stack([torch.stack([cos, sin], -1), torch.stack([-sin, cos], -1)], -2)
    centred = points - (left + right)[:, None] / 2
    return torch.einsum("nij,npj->npi", rotation, centred) / distance[:, None]


def head_pose(points: Tensor, image_size: tuple[int, int]) -> Tensor:
    """(yaw, pitch, roll) [N, 3] in radians from 106-point landmarks [N, 106, 2] of (H, W) images.

    Perspective-n-point (SQPnP; Terzakis and Lourakis, ECCV 2020) of six landmarks against a
    generic 3D face, pinhole camera with focal length = image width and the principal point at
    the centre. Camera axes x right, y down, z forward; rotation = Rz(roll) Ry(yaw) Rx(pitch),
    all zero for a face looking into the camera. Positive roll turns the face clockwise as seen
    in the image; a horizontal flip negates yaw and roll and keeps pitch. NaN where PnP fails.
    """
    import cv2

    height, width = image_size
    camera = np.array([[width, 0.0, width / 2], [0.0, width, height / 2], [0.0, 0.0, 1.0]])
    angles = torch.zeros(points.shape[0], 3, dtype=torch.float64)
    for index, face in enumerate(points.double().cpu().numpy()):
        try:
            ok, rotation_vector, _ = cv2.solvePnP(
                FACE_TEMPLATE_MM,
                np.ascontiguousarray(face[list(POSE_POINTS)]),
                camera,
                None,
                flags=cv2.SOLVEPNP_SQPNP,
            )
        except cv2.error:  # SQPnP refuses collapsed points (all landmarks on one spot)
            ok = False
        if not ok:
            angles[index] = float("nan")
            continue
        rotation, _ = cv2.Rodrigues(rotation_vector)
        yaw = math.asin(float(np.clip(-rotation[2, 0], -1.0, 1.0)))
        pitch = math.atan2(rotation[2, 1], rotation[2, 2])
        roll = math.atan2(rotation[1, 0], rotation[0, 0])
        angles[index] = torch.tensor([yaw, pitch, roll], dtype=torch.float64)
    return angles


class LandmarkExpression:
    """AED features from 106 landmarks: eye, brow and mouth points after `normalise_landmarks`.

    Called on [N, 3, H, W] RGB in [0, 1], returns (features [N, 2 * points in `parts`], found [N]).
    """

    def __init__(
        self, landmarks: FaceLandmarks | None = None, parts: tuple[str, ...] = EXPRESSION_PARTS
    ) -> None:
        unknown = [part for part in parts if part not in LANDMARK_GROUPS]
        if unknown or not parts:
            raise ValueError(
                f"parts={parts!r}: use a non-empty subset of {', '.join(LANDMARK_GROUPS)}"
            )
        self.landmarks = landmarks or FaceLandmarks()
        self.parts = tuple(parts)
        self.indices = [index for part in self.parts for index in LANDMARK_GROUPS[part]]
        self.backend_name = f"{self.landmarks.backend_name}-expression"
        self.weight_hashes = self.landmarks.weight_hashes

    def __call__(self, images: Tensor) -> tuple[Tensor, Tensor]:
        points, found = self.landmarks(images)
        features = normalise_landmarks(points)[:, self.indices].flatten(1)
        return torch.where(found[:, None], features, torch.zeros_like(features)), found


class LandmarkPose:
    """APD features from 106 landmarks: (yaw, pitch, roll) in radians from `head_pose`.

    Called on [N, 3, H, W] RGB in [0, 1], returns (angles [N, 3], found [N]); found is False
    where no face was detected or no pose could be fitted.
    """

    def __init__(self, landmarks: FaceLandmarks | None = None) -> None:
        self.landmarks = landmarks or FaceLandmarks()
        self.backend_name = f"{self.landmarks.backend_name}-pose"
        self.weight_hashes = self.landmarks.weight_hashes

    def __call__(self, images: Tensor) -> tuple[Tensor, Tensor]:
        points, found = self.landmarks(images)
        angles = torch.zeros(images.shape[0], 3, dtype=torch.float64)
        if found.any():
            angles[found] = head_pose(points[found], tuple(images.shape[-2:]))
        # A pose PnP cannot fit counts like a missing face rather than stopping a long run.
        posed = found & ~angles.isnan().any(dim=1)
        return angles.nan_to_num(0.0), posed
