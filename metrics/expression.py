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

`ExpressionFollowing` splits the features into parts (pose, eyes, brows, mouth, smile) and
gives each part its error, its temporal Pearson correlation with the driving track, and the
driving video's blinks that the generated video follows (metrics/blinks.py): a single mean
hides an output whose head follows while its eyes never blink.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from metrics.blinks import WORLD_BLINK_THRESHOLD, follow_blinks
from metrics.inputs import check_video, video_frames
from metrics.weights import describe_backend

__all__ = [
    "WORLD_PARTS",
    "ExpressionError",
    "ExpressionFollowing",
    "FeatureL1Error",
    "PoseError",
]

Extractor = Callable[[Tensor], Tensor | tuple[Tensor, Tensor]]


def check_driven_pair(generated: Tensor, driving: Tensor) -> None:
    """Both videos valid, with the same batch and frames (one generated clip per driving clip)."""
    check_video(generated, "generated")
    check_video(driving, "driving")
    if generated.shape[:3] != driving.shape[:3]:
        raise ValueError(
            f"generated {tuple(generated.shape)} and driving {tuple(driving.shape)} must agree in batch and frames"
        )


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
        check_driven_pair(generated, driving)
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


# ---- following the driving signal, part by part ------------------------------------------

# The synthetic world's 7 features (reference_model/world/renderer.py EXPRESSION_NAMES: yaw,
# pitch, roll, eye_open, brow_raise, mouth_open, smile), grouped into the parts a report shows.
WORLD_PARTS: dict[str, tuple[int, ...]] = {
    "pose": (0, 1, 2),
    "eyes": (3,),
    "brows": (4,),
    "mouth": (5,),
    "smile": (6,),
}


class ExpressionFollowing(Metric):
    """Per-part expression error and temporal Pearson correlation with the driving video, and blinks followed.

    `update(generated [B, 3, T, H, W], driving [B, 3, T, H, W])`. For each part (a name ->
    feature indices; default `WORLD_PARTS`) `compute()` returns "error_<part>" (mean
    |f(generated) - f(driving)| over the part's features and all frames: AED per part, APD
    for pose), "correlation_<part>" (the mean over clips of each clip's Pearson correlation
    between the generated and driving feature tracks over time, averaged over the part's
    features) and "per_clip_correlation_<part>" [N]. Blinks are runs of at least
    `blink_min_frames` frames whose `blink_feature` is below `blink_threshold`; a driving
    blink is followed when a generated blink overlaps it within `blink_tolerance` frames:
    "blinks" (in the driving videos), "blinks_followed", "blinks_missed", "blinks_spurious"
    (generated blinks matching none), plus "frames" and "not_found" (frames where either
    side has no face: left out of every figure).
    """

    higher_is_better = None  # errors are better low, correlations and blinks followed high
    is_differentiable = False
    full_state_update = False

    def __init__(
        self,
        extractor: Extractor,
        parts: dict[str, tuple[int, ...]] = WORLD_PARTS,
        blink_feature: int | None = 3,
        blink_threshold: float = WORLD_BLINK_THRESHOLD,
        blink_min_frames: int = 2,
        blink_tolerance: int = 2,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if not callable(extractor):
            raise TypeError(f"extractor must be callable, got {type(extractor).__name__}")
        if not parts or any(len(indices) == 0 for indices in parts.values()):
            raise ValueError(f"parts={parts!r}: give each part at least one feature index")
        self.extractor = extractor
        self.parts = {name: list(indices) for name, indices in parts.items()}
        self.blink_feature = blink_feature
        self.blink_settings = {
            "threshold": blink_threshold,
            "min_frames": blink_min_frames,
            "tolerance": blink_tolerance,
        }
        self.add_state(
            "error_total", torch.zeros(len(parts), dtype=torch.float64), dist_reduce_fx="sum"
        )
        self.add_state("correlation", default=[], dist_reduce_fx="cat")  # [clips * parts]
        for name in ("count", "not_found", "blinks", "followed", "spurious"):
            self.add_state(name, torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def backend_info(self) -> dict:
        return describe_backend(self.extractor)

    def update(self, generated: Tensor, driving: Tensor) -> None:
        check_driven_pair(generated, driving)
        batch, _, frames = generated.shape[:3]
        tracks, found = [], []
        for videos in (generated, driving):
            features, present = extract(self.extractor, video_frames(videos))
            tracks.append(features.cpu().view(batch, frames, -1))
            found.append(present.cpu().view(batch, frames))
        both = found[0] & found[1]
        difference = (tracks[0] - tracks[1]).abs()
        part_errors = [difference[..., f].mean(dim=-1)[both].sum() for f in self.parts.values()]
        self.error_total = self.error_total + torch.stack(part_errors).to(self.device)
        correlations = torch.stack(
            [
                torch.stack(
                    [track_correlation(g[seen][:, f], d[seen][:, f]) for f in self.parts.values()]
                )
                for g, d, seen in zip(tracks[0], tracks[1], both, strict=True)
            ]
        )
        self.correlation.append(correlations.flatten().to(self.device))
        self.count = self.count + both.sum()
        self.not_found = self.not_found + (~both).sum()
        if self.blink_feature is not None:
            for g, d, seen in zip(tracks[0], tracks[1], both, strict=True):
                eyes = [t[:, self.blink_feature].masked_fill(~seen, float("nan")) for t in (g, d)]
                blinks, followed, spurious = follow_blinks(*eyes, **self.blink_settings)
                self.blinks = self.blinks + blinks
                self.followed = self.followed + followed
                self.spurious = self.spurious + spurious

    def compute(self) -> dict[str, Tensor]:
        if self.count + self.not_found == 0:
            raise ValueError("ExpressionFollowing.compute() called before update()")
        correlation = dim_zero_cat(self.correlation).double().view(-1, len(self.parts))
        result = {}
        for index, name in enumerate(self.parts):
            result[f"error_{name}"] = self.error_total[index] / self.count
            result[f"correlation_{name}"] = correlation[:, index].nanmean()
            result[f"per_clip_correlation_{name}"] = correlation[:, index]
        result.update(
            blinks=self.blinks,
            blinks_followed=self.followed,
            blinks_missed=self.blinks - self.followed,
            blinks_spurious=self.spurious,
            frames=self.count + self.not_found,
            not_found=self.not_found,
        )
        return result


def track_correlation(generated: Tensor, driving: Tensor) -> Tensor:
    """Mean over features of the Pearson correlation of [T, F] tracks.

    A constant generated track follows nothing (0); a constant driving track gives nothing
    to follow (NaN, left out of the mean).
    """
    constant = [(track == track[:1]).all(dim=0) for track in (generated, driving)]
    generated = generated - generated.mean(dim=0)
    driving = driving - driving.mean(dim=0)
    power = generated.square().sum(dim=0) * driving.square().sum(dim=0)
    correlation = ((generated * driving).sum(dim=0) / power.sqrt()).masked_fill(constant[0], 0.0)
    return correlation.masked_fill(constant[1], float("nan")).nanmean()
