"""Identity similarity: cosine between the reference face's embedding and each generated frame's.

The mean over frames is the number papers report; the per-frame curve shows identity drift
over a long video, which is what FlashPortrait is about. Frames where the encoder finds no
face are counted (`faces_not_found`), never silently dropped.

An encoder maps images [N, 3, H, W] in [0, 1] to embeddings [N, D], or to a pair
(embeddings [N, D], found [N] bool) when it can fail to find a face. The real backend,
`ArcFaceEncoder`, detects with SCRFD, aligns the five keypoints to ArcFace's 112x112
template and embeds with ArcFace MobileFaceNet (w600k_mbf; Deng et al. 2019,
arXiv:1801.07698). InsightFace's models are licensed for non-commercial research only.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from metrics.faces import FaceDetector, largest_faces, load_insightface_model, to_bgr_uint8
from metrics.inputs import check_images, check_video, video_frames
from metrics.weights import describe_backend

__all__ = ["ArcFaceEncoder", "IdentitySimilarity", "embed", "to_bgr_uint8"]

Encoder = Callable[[Tensor], Tensor | tuple[Tensor, Tensor]]


def embed(encoder: Encoder, images: Tensor) -> tuple[Tensor, Tensor]:
    """L2-normalised float64 embeddings [N, D] and a found mask [N] from any encoder."""
    with torch.no_grad():
        output = encoder(images)
    embeddings, found = output if isinstance(output, tuple) else (output, None)
    embeddings = torch.as_tensor(embeddings).reshape(images.shape[0], -1).double().cpu()
    if found is None:
        found = torch.ones(images.shape[0], dtype=torch.bool)
    return F.normalize(embeddings, dim=1), torch.as_tensor(found, dtype=torch.bool).cpu()


class ArcFaceEncoder:
    """InsightFace ArcFace: SCRFD detection, 5-point alignment to 112x112, w600k_mbf embedding (512-d).

    Called on [N, 3, H, W] RGB in [0, 1], it embeds the largest face of each image and
    returns (embeddings [N, 512], found [N]). Runs on onnxruntime's CPU provider.
    """

    num_features = 512
    backend_name = "arcface-w600k_mbf"

    def __init__(
        self,
        detector_path: str | Path | None = None,
        recognizer_path: str | Path | None = None,
        detection_size: tuple[int, int] = (640, 640),
        detection_threshold: float = 0.5,
        threads: int | None = None,
        verify: bool = True,
    ) -> None:
        self.detector = FaceDetector(
            detector_path, detection_size, detection_threshold, threads, verify
        )
        self.recognizer, recognizer_file, recognizer_sha = load_insightface_model(
            "arcface-w600k_mbf", recognizer_path, threads, verify
        )
        self.recognizer.prepare(-1)
        self.detection_size = detection_size
        self.weight_hashes = {**self.detector.weight_hashes, recognizer_file.name: recognizer_sha}

    def detect(self, image_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """All faces of one HxWx3 BGR uint8 image: boxes [F, 5] (x1, y1, x2, y2, score), keypoints [F, 5, 2]."""
        return self.detector(image_bgr)

    def embed_aligned(self, image_bgr: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
        """Embeddings [F, 512] of the faces at `keypoints` [F, 5, 2] in one BGR image."""
        from insightface.utils.face_align import norm_crop

        if len(keypoints) == 0:
            return np.zeros((0, self.num_features), dtype=np.float32)
        with warnings.catch_warnings():
            # insightface's norm_crop uses scikit-image's deprecated SimilarityTransform.estimate.
            warnings.filterwarnings("ignore", "`estimate` is deprecated", FutureWarning)
            crops = [norm_crop(image_bgr, points, image_size=112) for points in keypoints]
        return self.recognizer.get_feat(crops)

    def embed_faces(self, image: Tensor) -> tuple[Tensor, Tensor]:
        """Every face of one [3, H, W] RGB image in [0, 1]: (embeddings [F, 512], boxes [F, 4])."""
        image_bgr = to_bgr_uint8(image[None])[0]
        boxes, keypoints = self.detect(image_bgr)
        embeddings = self.embed_aligned(image_bgr, keypoints)
        return torch.from_numpy(np.asarray(embeddings, dtype=np.float32)), torch.from_numpy(
            boxes[:, :4].copy()
        )

    def __call__(self, images: Tensor) -> tuple[Tensor, Tensor]:
        embeddings = torch.zeros(images.shape[0], self.num_features)
        found = torch.zeros(images.shape[0], dtype=torch.bool)
        for index, image_bgr, _, keypoints in largest_faces(self.detector, images):
            embeddings[index] = torch.from_numpy(self.embed_aligned(image_bgr, keypoints)[0])
            found[index] = True
        return embeddings, found


class IdentitySimilarity(Metric):
    """Cosine similarity between each reference image's face and every frame of its generated video.

    `update(reference [B, 3, H, W], videos [B, 3, T, H, W])`, both in [0, 1]. `compute()`
    returns {"mean": over all frames with a face, "per_frame": [T_max] mean at each frame
    index (NaN where no video had a face there), "faces_not_found": count, "frames": count}.
    A reference image without a detectable face is an error: there is nothing to compare to.
    """

    higher_is_better = True
    is_differentiable = False
    full_state_update = False

    def __init__(self, encoder: str | Encoder = "arcface", **kwargs) -> None:
        super().__init__(**kwargs)
        if isinstance(encoder, str):
            if encoder != "arcface":
                raise ValueError(f"encoder={encoder!r}: use 'arcface' or pass a callable")
            encoder = ArcFaceEncoder()
        if not callable(encoder):
            raise TypeError(f"encoder must be callable, got {type(encoder).__name__}")
        self.encoder = encoder
        # Per-frame values (cat states) keep the curve exact under DDP; NaN marks "no face".
        self.add_state("frame_index", default=[], dist_reduce_fx="cat")
        self.add_state("cosine", default=[], dist_reduce_fx="cat")

    def backend_info(self) -> dict:
        return describe_backend(self.encoder)

    def update(self, reference: Tensor, videos: Tensor) -> None:
        check_images(reference, "reference")
        check_video(videos)
        batch, _, frames = videos.shape[:3]
        if reference.shape[0] != batch:
            raise ValueError(
                f"{reference.shape[0]} reference images for {batch} videos; pass one per video"
            )
        reference_embedding, reference_found = embed(self.encoder, reference)
        if not reference_found.all():
            missing = torch.nonzero(~reference_found).flatten().tolist()
            raise ValueError(
                f"no face found in reference image(s) {missing}; identity similarity needs one"
            )
        frame_embedding, frame_found = embed(self.encoder, video_frames(videos))
        cosine = (
            (frame_embedding.view(batch, frames, -1) * reference_embedding[:, None])
            .sum(-1)
            .flatten()
        )
        cosine[~frame_found] = float("nan")
        self.frame_index.append(torch.arange(frames).repeat(batch).to(self.device))
        self.cosine.append(cosine.to(self.device))

    def compute(self) -> dict[str, Tensor]:
        if (
            isinstance(self.cosine, list) and not self.cosine
        ):  # a list until DDP sync concatenates it
            raise ValueError("IdentitySimilarity.compute() called before update()")
        index = dim_zero_cat(self.frame_index).long()
        cosine = dim_zero_cat(self.cosine).double()
        found = ~torch.isnan(cosine)
        length = int(index.max()) + 1
        totals = torch.zeros(length, dtype=torch.float64, device=cosine.device).index_add_(
            0, index[found], cosine[found]
        )
        counts = torch.bincount(index[found], minlength=length).double()
        return {
            "mean": cosine[found].mean()
            if found.any()
            else torch.tensor(float("nan"), dtype=torch.float64),
            "per_frame": totals / counts,
            "faces_not_found": (~found).sum(),
            "frames": torch.tensor(cosine.numel()),
        }
