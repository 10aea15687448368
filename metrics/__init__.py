"""FlashBench metrics: torchmetrics `Metric`s with injectable feature backends.

Conventions (see metrics/inputs.py): videos are float [B, 3, T, H, W] in [0, 1]; images are
[B, 3, H, W] in [0, 1]. Every metric accumulates exact float64 sums (or concatenated
per-frame values) so batching and DDP give the result of one pass, and says what computed
it through `backend_info()`. Real backends load weight files listed in `metrics.weights`
(`weight_status()`); nothing downloads. This package imports nothing else of FlashBench.
"""

from metrics.expression import ExpressionError, ExpressionFollowing, FeatureL1Error, PoseError
from metrics.faces import FaceDetector
from metrics.fid import FrechetInceptionDistance, InceptionFeatures
from metrics.fidelity import LPIPS, PSNR, SSIM, FrameAverage
from metrics.frechet import (
    FeatureSums,
    FrechetFeatureDistance,
    feature_statistics,
    frechet_distance,
)
from metrics.fvd import (
    PROTOCOLS,
    FrechetVideoDistance,
    FVDProtocol,
    I3DFeatures,
    StyleGANVI3DFeatures,
)
from metrics.identity import ArcFaceEncoder, IdentitySimilarity
from metrics.identity_distance import IdentityCalibration, IdentityDistance, calibrate_identity
from metrics.landmarks import FaceLandmarks, LandmarkExpression, LandmarkPose
from metrics.seams import SeamDiscontinuity
from metrics.speed import Measurement, Speed, measure
from metrics.temporal import TemporalStability
from metrics.weights import (
    WEIGHTS,
    CorruptWeightError,
    MissingWeightError,
    WeightStatus,
    verified_path,
    weight_status,
)

__all__ = [
    "LPIPS",
    "PROTOCOLS",
    "PSNR",
    "SSIM",
    "WEIGHTS",
    "ArcFaceEncoder",
    "CorruptWeightError",
    "ExpressionError",
    "ExpressionFollowing",
    "FVDProtocol",
    "FaceDetector",
    "FaceLandmarks",
    "FeatureL1Error",
    "FeatureSums",
    "FrameAverage",
    "FrechetFeatureDistance",
    "FrechetInceptionDistance",
    "FrechetVideoDistance",
    "I3DFeatures",
    "IdentityCalibration",
    "IdentityDistance",
    "IdentitySimilarity",
    "InceptionFeatures",
    "LandmarkExpression",
    "LandmarkPose",
    "Measurement",
    "MissingWeightError",
    "PoseError",
    "SeamDiscontinuity",
    "Speed",
    "StyleGANVI3DFeatures",
    "TemporalStability",
    "WeightStatus",
    "calibrate_identity",
    "feature_statistics",
    "frechet_distance",
    "measure",
    "verified_path",
    "weight_status",
]
