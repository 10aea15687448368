"""FlashPortrait's driving-expression extractor: PD-FGC's motion encoder on aligned face crops.

PD-FGC (Wang et al. 2023, "Progressive Disentangled Representation Learning for Fine-Grained
Controllable Talking Head Synthesis", CVPR 2023, arXiv 2211.14506) encodes a face crop into
head pose, eye, emotion and mouth features; FlashPortrait (Ma et al. 2025, arXiv 2512.16900)
drives its portrait encoder with them, released as ``pd_fpg.pth``. Per frame the pipeline is:
222-point landmarks -> similarity alignment of five of them onto a template -> 224 x 224 crop
-> ``FanEncoder`` (FAN trunk with one hourglass, four heads) -> 554 features in ``FEATURE_ORDER``.

Facts read from the public code (Francis-Rings/FlashPortrait at c72d9de, ``wan/models/pdf.py``
and ``infer.py``): module names and widths, the template, the landmark indices, the cubic warp,
the RGB [-1, 1] input and the concatenation order. ``cv2`` and ``scikit-image`` (the ``flashportrait``
extra) are imported only where a crop is made.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flashbench.models.flashportrait.transformer import FEATURE_SIZES

__all__ = [
    "CROP_SIZE",
    "FEATURE_ORDER",
    "LANDMARK_INDICES",
    "NUM_LANDMARKS",
    "TEMPLATE",
    "FanEncoder",
    "align_face",
    "driving_features",
    "load_pdfgc",
]

logger = logging.getLogger(__name__)

FEATURE_ORDER = ("headpose", "eye", "emotion", "mouth")
NUM_LANDMARKS = 222
CROP_SIZE = 224
# Image-left pupil, image-right pupil, nose tip, image-left and image-right mouth corner of the
# 222-point scheme (pupils start at 182 and 202, the nose spans 33-47, the mouth 118-181).
LANDMARK_INDICES = (182, 202, 36, 149, 133)
# Where those five points land in the crop, as fractions of its side.
TEMPLATE = np.array(
    [[0.3843, 0.27], [0.62, 0.2668], [0.503, 0.4185], [0.406, 0.5273], [0.5977, 0.525]]
)
WIDTH = 512  # the FAN trunk's feature width; the mouth feature is the trunk's width
HEATMAPS = 68  # FAN's landmark heatmaps, which the trunk pools into its feature


# ---------------------------------------------------------------------------- network


def _conv3x3(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, padding=1, bias=False)


class ConvBlock(nn.Module):
    """FAN's pre-activation residual block: three 3x3 convolutions of halving width, concatenated."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(cin), _conv3x3(cin, cout // 2)
        self.bn2, self.conv2 = nn.BatchNorm2d(cout // 2), _conv3x3(cout // 2, cout // 4)
        self.bn3, self.conv3 = nn.BatchNorm2d(cout // 4), _conv3x3(cout // 4, cout // 4)
        self.downsample = None
        if cin != cout:
            self.downsample = nn.Sequential(
                nn.BatchNorm2d(cin), nn.ReLU(True), nn.Conv2d(cin, cout, 1, bias=False)
            )

    def forward(self, x: Tensor) -> Tensor:
        out1 = self.conv1(F.relu(self.bn1(x)))
        out2 = self.conv2(F.relu(self.bn2(out1)))
        out3 = self.conv3(F.relu(self.bn3(out2)))
        residual = x if self.downsample is None else self.downsample(x)
        return torch.cat((out1, out2, out3), dim=1) + residual


class HourGlass(nn.Module):
    """One hourglass of ``depth`` levels; its blocks are named ``b1_{level}`` ... as in the release."""

    def __init__(self, depth: int, width: int = 256) -> None:
        super().__init__()
        self.depth = depth
        self.dropout = nn.Dropout(0.5)
        for level in range(depth, 0, -1):
            self.add_module(f"b1_{level}", ConvBlock(width, width))
            self.add_module(f"b2_{level}", ConvBlock(width, width))
            self.add_module(f"b3_{level}", ConvBlock(width, width))
        self.add_module("b2_plus_1", ConvBlock(width, width))

    def _level(self, level: int, x: Tensor) -> Tensor:
        upper = self.dropout(self._modules[f"b1_{level}"](x))
        lower = self._modules[f"b2_{level}"](F.max_pool2d(x, 2, stride=2))
        # The innermost level has one more block where a deeper level would be.
        lower = self._level(level - 1, lower) if level > 1 else self._modules["b2_plus_1"](lower)
        lower = self._modules[f"b3_{level}"](lower)
        size = upper.shape[-2:]
        return upper + F.interpolate(lower, size=size, mode="bilinear", align_corners=False)

    def forward(self, x: Tensor) -> Tensor:
        return self._level(self.depth, x)


class FanTrunk(nn.Module):
    """FAN with one hourglass whose 68 heatmaps are pooled by a strided conv into a 512 feature."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3)
        self.bn1 = nn.BatchNorm2d(64)
        self.conv2 = ConvBlock(64, 128)
        self.conv3 = ConvBlock(128, 128)
        self.conv4 = ConvBlock(128, 256)
        self.m0 = HourGlass(depth=4)
        self.top_m_0 = ConvBlock(256, 256)
        self.conv_last0 = nn.Conv2d(256, 256, kernel_size=1)
        self.bn_end0 = nn.BatchNorm2d(256)
        self.l0 = nn.Conv2d(256, HEATMAPS, kernel_size=1)
        self.bn5 = nn.BatchNorm2d(HEATMAPS)
        self.conv6 = nn.Conv2d(HEATMAPS, 1, kernel_size=3, stride=2, padding=1)
        # A 224 crop reaches conv6 as 56 x 56 heatmaps and leaves it as 28 x 28.
        self.fc = nn.Linear((CROP_SIZE // 8) ** 2, WIDTH)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.conv4(self.conv3(F.max_pool2d(self.conv2(x), 2)))
        x = self.bn_end0(self.conv_last0(self.top_m_0(self.m0(x))))
        heatmaps = self.l0(F.relu(x))
        pooled = self.conv6(F.relu(self.bn5(heatmaps)))
        return self.fc(F.relu(pooled.flatten(1)))


def _head(width: int = WIDTH) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(width, width), nn.ReLU(), nn.BatchNorm1d(width), nn.Linear(width, width)
    )


def _embed(size: int) -> nn.Sequential:
    return nn.Sequential(nn.ReLU(), nn.Linear(WIDTH, size))


class FanEncoder(nn.Module):
    """PD-FGC's motion encoder: ``[N, 3, 224, 224]`` RGB crops in [-1, 1] -> a dict of features.

    Returns ``{"headpose": [N, 6], "eye": [N, 6], "emotion": [N, 30], "mouth": [N, 512]}``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.model = FanTrunk()
        self.to_mouth = _head()
        # Not on the forward path; PD-FGC trained it, so the released file carries its keys.
        self.mouth_embed = _embed(WIDTH - FEATURE_SIZES["headpose"] - FEATURE_SIZES["eye"])
        self.to_headpose, self.headpose_embed = _head(), _embed(FEATURE_SIZES["headpose"])
        self.to_eye, self.eye_embed = _head(), _embed(FEATURE_SIZES["eye"])
        self.to_emo, self.emo_embed = _head(), _embed(FEATURE_SIZES["emotion"])

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        x = self.model(images)
        return {
            "headpose": self.headpose_embed(self.to_headpose(x)),
            "eye": self.eye_embed(self.to_eye(x)),
            "emotion": self.emo_embed(self.to_emo(x)),
            "mouth": self.to_mouth(x),
        }


# ---------------------------------------------------------------------------- loading


def _summary(keys: list[str], limit: int = 5) -> str:
    shown = ", ".join(keys[:limit])
    return f"{shown}{', ...' if len(keys) > limit else ''} ({len(keys)} in all)"


def load_pdfgc(path: str | Path, device: str | torch.device = "cpu") -> FanEncoder:
    """FlashPortrait's released ``pd_fpg.pth`` -> a ``FanEncoder`` in eval mode on ``device``."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(
            f"PD-FGC weights not found at {path}; put FlashPortrait's released pd_fpg.pth there "
            "(nothing is downloaded)"
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds a {type(state).__name__}, not a state dict")
    encoder = FanEncoder()
    expected = encoder.state_dict()
    # Eval-mode batch norm never reads its step counter, so a file may go without one.
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    if missing:
        raise ValueError(
            f"{path} lacks {_summary(missing)} of PD-FGC's encoder keys; "
            "it is not FlashPortrait's released pd_fpg.pth"
        )
    wrong = [
        f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if wrong:
        raise ValueError(
            f"{path} has keys of the wrong shape: {_summary(wrong)}; "
            "it is not FlashPortrait's released pd_fpg.pth"
        )
    extra = sorted(k for k in state if k not in expected)
    if extra:
        # The released loader is not strict either, so a usable file may carry more.
        logger.warning("%s: ignoring keys that are not the encoder's: %s", path, _summary(extra))
    encoder.load_state_dict({k: v for k, v in state.items() if k in expected}, strict=False)
    return encoder.to(device).eval()


# ---------------------------------------------------------------------------- alignment


def align_face(frame: np.ndarray, landmarks: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """The ``size`` x ``size`` crop of ``frame`` ``[H, W, C]`` that puts five of its 222 ``landmarks``
    ``[222, 2]`` (pixel x, y) on ``TEMPLATE``: Umeyama's least-squares similarity, bicubic warp.

    Pixel convention: cv2's, pixel (row i, column j) centred at (x=j, y=i), in which the released
    landmark detector reports points and cv2.warpAffine samples; so no half-pixel shift is added.
    The warp is per channel, so the channel order of ``frame`` (BGR or RGB) does not matter.
    """
    import cv2
    from skimage.transform import SimilarityTransform

    landmarks = np.asarray(landmarks, dtype=np.float64)
    if landmarks.shape != (NUM_LANDMARKS, 2):
        raise ValueError(
            f"landmarks must be [{NUM_LANDMARKS}, 2] pixel (x, y) points of FlashPortrait's "
            f"222-point scheme, got shape {landmarks.shape}"
        )
    src = landmarks[list(LANDMARK_INDICES)]
    if not np.isfinite(src).all():
        raise ValueError(f"landmarks {LANDMARK_INDICES} must be finite, got {src.tolist()}")
    dst = TEMPLATE * size
    # scikit-image's Umeyama estimate is the released one for every unmirrored point set: the
    # released routine multiplies by the SVD's V where Umeyama has V^T, and numpy's 2 x 2 SVD
    # returns a symmetric V for those.
    transform = SimilarityTransform.from_estimate(src, dst)
    if not transform:
        raise ValueError(
            f"landmarks {LANDMARK_INDICES} are degenerate ({src.tolist()}); no face to align"
        )
    return cv2.warpAffine(frame, transform.params[:2], (size, size), flags=cv2.INTER_CUBIC)


# ---------------------------------------------------------------------------- features


def driving_features(
    encoder: FanEncoder, frames: Tensor, landmarks: Tensor, batch_size: int = 16
) -> Tensor:
    """Per-frame PD-FGC features ``[T, 554]`` float32 in ``FEATURE_ORDER``, on the encoder's device.

    ``frames``: ``[T, 3, H, W]`` RGB in [0, 1]; ``landmarks``: ``[T, 222, 2]`` pixel (x, y).
    """
    if frames.ndim != 4 or frames.shape[1] != 3:
        raise ValueError(
            f"frames must be [T, 3, H, W] RGB, got shape {tuple(frames.shape)}; "
            "permute [T, H, W, 3] video with frames.permute(0, 3, 1, 2)"
        )
    if landmarks.ndim != 3 or landmarks.shape[1:] != (NUM_LANDMARKS, 2):
        raise ValueError(
            f"landmarks must be [T, {NUM_LANDMARKS}, 2] pixel (x, y) points of FlashPortrait's "
            f"222-point detector, got shape {tuple(landmarks.shape)}"
        )
    if len(frames) != len(landmarks):
        raise ValueError(
            f"frames has {len(frames)} frames but landmarks has {len(landmarks)}; "
            "pass one landmark set per frame"
        )
    if len(frames) == 0:
        raise ValueError("frames is empty; pass at least one frame")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if not frames.is_floating_point() or frames.min() < 0 or frames.max() > 1:
        raise ValueError(
            f"frames must be float in [0, 1] (FlashBench's convention), got {frames.dtype} in "
            f"[{frames.min().item()}, {frames.max().item()}]; divide 8-bit video by 255"
        )
    param = next(encoder.parameters())
    points = landmarks.detach().cpu().double().numpy()
    out = []
    with torch.no_grad():
        for start in range(0, len(frames), batch_size):
            stop = start + batch_size
            chunk = frames[start:stop].detach().cpu()
            # The release warps the 8-bit video frames cv2 decodes; warping the same 8 bits
            # gives the same crops, saturation and rounding included.
            pixels = (chunk * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
            crops = np.stack(
                [
                    align_face(np.ascontiguousarray(p), q)
                    for p, q in zip(pixels, points[start:stop], strict=True)
                ]
            )
            # The release turns its BGR crops to RGB before scaling to [-1, 1]; ours are RGB.
            images = torch.from_numpy(crops.astype(np.float64) / 255.0 * 2 - 1).permute(0, 3, 1, 2)
            features = encoder(images.to(param.device, param.dtype))
            out.append(torch.cat([features[name] for name in FEATURE_ORDER], dim=1).float())
    return torch.cat(out)
