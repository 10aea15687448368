"""Expression error (AED) and pose error (APD) between generated and driving frames.

Both are the mean absolute difference between an extractor's features of a generated frame
and of the driving frame it should follow (as portrait-animation papers compute them:
AED on expression coefficients, APD on head rotation angles), averaged over feature
dimensions and frames. The extractor maps frames [N, 3, H, W] in [0, 1] to features [N, D],
or to (features, found [N] bool); frames where either side has no face are counted in
`not_found` and left out of the mean. In-domain extractors (trained on the synthetic world)
are injected by the caller; for real faces, `ExpressionError("landmarks")` and
`PoseError("landmarks")` use InsightFace's 106-point landmarks (metrics/landmarks.py:
`LandmarkExpression`, `LandmarkPose`; share one `FaceLandmarks` between them to load it once).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torchmetrics import Metric

from metrics.inputs import check_video, video_frames
from metrics.weights import describe_backend

__all__ = ["ExpressionError", "FeatureL1Error", "PoseError"]

Extractor = Callable[[Tensor], Tensor | tuple[Tensor, Tensor]]


def extract(extractor: Extractor, frames: Tensor) -> tuple[Tensor, Tensor]:
    """Float64 features [N, D] and a found mask [N] from any extractor."""
    with torch.no_grad():
        output = extractor(frames)
    features, found = output if isinstance(output, tuple) else (output, None)
    features = torch.as_tensor(features).reshape(frames.shape[0], -1).double()
    if found is None:
        found = torch.ones(frames.shape[0], dtype=torch.bool, device=features.device)
    return features, torch.as_tensor(found, dtype=torch.bool, device=features.device)


class FeatureL1Error(Metric):
    """Mean over frames of mean |f(generated) - f(driving)| over feature dimensions.

    `update(generated [B, 3, T, H, W], driving [B, 3, T, H, W])` (same B and T; sizes may
    differ). `compute()` returns {"mean", "not_found", "frames"}.
    """

    higher_is_better = False
    is_differentiable = False
    full_state_update = False

    # The metrics.landmarks class that extractor="landmarks" builds; None: no real backend.
    landmark_extractor: str | None = None

    def __init__(self, extractor: str | Extractor, **kwargs) -> None:
        super().__init__(**kwargs)
        if isinstance(extractor, str):
            extractor = self.real_extractor(extractor)
        if not callable(extractor):
            raise TypeError(f"extractor must be callable, got {type(extractor).__name__}")
        self.extractor = extractor
        for name in ("total", "count", "not_found"):
            self.add_state(name, torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    @classmethod
    def real_extractor(cls, name: str) -> Extractor:
        if name != "landmarks" or cls.landmark_extractor is None:
            known = "'landmarks' or a callable" if cls.landmark_extractor else "a callable"
            raise ValueError(f"extractor={name!r}: {cls.__name__} takes {known}")
        # Imported here: onnxruntime and insightface are needed only once a real backend is asked for.
        from metrics import landmarks

        return getattr(landmarks, cls.landmark_extractor)()

    def backend_info(self) -> dict:
        return describe_backend(self.extractor)

    def update(self, generated: Tensor, driving: Tensor) -> None:
        check_video(generated, "generated")
        check_video(driving, "driving")
        if generated.shape[:3] != driving.shape[:3]:
            raise ValueError(
                f"generated {tuple(generated.shape)} and driving {tuple(driving.shape)} must agree in batch and frames"
            )
        generated_features, generated_found = extract(self.extractor, video_frames(generated))
        driving_features, driving_found = extract(self.extractor, video_frames(driving))
        found = (generated_found & driving_found).to(self.device)
        per_frame = (generated_features - driving_features).abs().mean(dim=1).to(self.device)
        self.total = self.total + per_frame[found].sum()
        self.count = self.count + found.sum()
        self.not_found = self.not_found + (~found).sum()

    def compute(self) -> dict[str, Tensor]:
        if self.count + self.not_found == 0:
            raise ValueError(f"{type(self).__name__}.compute() called before update()")
        return {
            "mean": self.total / self.count,
            "not_found": self.not_found,
            "frames": self.count + self.not_found,
        }


class ExpressionError(FeatureL1Error):
    """AED: average expression distance; the extractor returns expression coefficients per frame."""

    landmark_extractor = "LandmarkExpression"


class PoseError(FeatureL1Error):
    """APD: average pose distance; the extractor returns head rotation angles (and/or translation) per frame."""

    landmark_extractor = "LandmarkPose"
