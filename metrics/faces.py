"""Face detection shared by the real-face backends: SCRFD-500M with 5 keypoints (Guo et al. 2021, arXiv:2105.04714).

Identity (ArcFace) and landmarks (2d106det) both start from these boxes, so they see the
same faces, and load their models through `load_insightface_model`, the one place a
missing package or weight file is explained. InsightFace's models are licensed for non-commercial research only.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from metrics.weights import INSIGHTFACE_INSTALL, verified_weight

__all__ = [
    "FaceDetector",
    "insightface_photo",
    "largest_face",
    "load_insightface_model",
    "to_bgr_uint8",
]


def to_bgr_uint8(images: Tensor) -> np.ndarray:
    """[N, 3, H, W] RGB in [0, 1] -> [N, H, W, 3] BGR uint8, as OpenCV and InsightFace read images."""
    pixels = (images.detach().float().clamp(0, 1) * 255).round().to(torch.uint8)
    return np.ascontiguousarray(pixels.permute(0, 2, 3, 1).flip(-1).cpu().numpy())


def _onnx_session_options(threads: int | None) -> dict:
    """Keyword arguments for an onnxruntime CPU session (quiet, `threads` intra-op threads)."""
    try:
        import onnxruntime
    except ImportError as error:
        raise ImportError(
            f"the real-face backends need onnxruntime, which is not installed. Fix: {INSIGHTFACE_INSTALL}"
        ) from error
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    # Models exported with a fixed batch of 1 in their output shape warn on every batch.
    options.log_severity_level = 3
    return {"providers": ["CPUExecutionProvider"], "sess_options": options}


def load_insightface_model(
    weight: str, path: str | Path | None = None, threads: int | None = None, verify: bool = True
) -> tuple[Any, Path, str]:
    """(model, file, sha256) of weight registry entry `weight`, loaded by InsightFace's model zoo on the CPU.

    `get_model` picks the class from the ONNX graph (SCRFD for the detector, ArcFaceONNX for the
    recognizer, Landmark for 2d106det). Nothing is cached per process: a backend that should
    share sessions is passed in (`FaceLandmarks(detector=...)`, `LandmarkPose(landmarks)`).
    """
    try:
        from insightface.model_zoo import get_model
    except ImportError as error:
        raise ImportError(
            f"{weight} is loaded through insightface, which is not installed. Fix: {INSIGHTFACE_INSTALL}"
        ) from error
    file, sha = verified_weight(weight, path, verify=verify)
    return get_model(str(file), **_onnx_session_options(threads)), file, sha


def insightface_photo(name: str) -> Path:
    """Path of one of the sample photos insightface ships (`t1.jpg`: six people; `Tom_Hanks_54745.png`)."""
    spec = importlib.util.find_spec("insightface")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            f"the sample photo {name} ships with insightface, which is not installed. "
            f"Fix: {INSIGHTFACE_INSTALL}"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "images" / name


def largest_face(boxes: np.ndarray) -> int:
    """Index of the largest box in [F, >=4] (x1, y1, x2, y2, ...); a video's subject fills the frame."""
    return int(np.argmax((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])))


def largest_faces(
    detector: FaceDetector, images: Tensor
) -> Iterator[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
    """(index, BGR image, box [1, 5], keypoints [1, 5, 2]) of the largest face of each image that has one."""
    for index, image_bgr in enumerate(to_bgr_uint8(images)):
        boxes, keypoints = detector(image_bgr)
        if len(boxes) == 0:
            continue
        largest = largest_face(boxes)
        yield index, image_bgr, boxes[largest : largest + 1], keypoints[largest : largest + 1]


class FaceDetector:
    """SCRFD-500M (insightface's scrfd_500m_bnkps.onnx): boxes with scores and 5 keypoints per face."""

    def __init__(
        self,
        path: str | Path | None = None,
        detection_size: tuple[int, int] = (640, 640),
        detection_threshold: float = 0.5,
        threads: int | None = None,
        verify: bool = True,
    ) -> None:
        self.model, file, sha = load_insightface_model("scrfd-500m-bnkps", path, threads, verify)
        self.model.prepare(-1, input_size=detection_size, det_thresh=detection_threshold)
        self.detection_size = detection_size
        self.weight_hashes = {file.name: sha}

    def __call__(self, image_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """All faces of one HxWx3 BGR uint8 image: boxes [F, 5] (x1, y1, x2, y2, score), keypoints [F, 5, 2]."""
        return self.model.detect(image_bgr, input_size=self.detection_size)
