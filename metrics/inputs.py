"""Input conventions shared by every metric.

Videos are float tensors [B, 3, T, H, W] with values in [0, 1] (RGB, channel first, time
second). Images are [B, 3, H, W] in [0, 1]. Backends convert to whatever their network
wants (Inception and I3D: [-1, 1]; ArcFace: uint8 BGR) themselves.
"""

from __future__ import annotations

from torch import Tensor

__all__ = ["check_images", "check_video", "video_frames"]


def check_video(videos: Tensor, name: str = "videos") -> Tensor:
    """Validate a [B, 3, T, H, W] float video batch; returns it unchanged."""
    if videos.ndim != 5 or videos.shape[1] != 3:
        raise ValueError(
            f"{name} must be [B, 3, T, H, W] (RGB, channel before time), got shape {tuple(videos.shape)}; "
            "permute a [B, T, 3, H, W] batch with .permute(0, 2, 1, 3, 4)"
        )
    if not videos.is_floating_point():
        raise ValueError(
            f"{name} must be a float tensor in [0, 1], got {videos.dtype}; divide uint8 frames by 255"
        )
    return videos


def check_images(images: Tensor, name: str = "images") -> Tensor:
    """Validate a [B, 3, H, W] float image batch; returns it unchanged."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"{name} must be [B, 3, H, W] RGB, got shape {tuple(images.shape)}")
    if not images.is_floating_point():
        raise ValueError(
            f"{name} must be a float tensor in [0, 1], got {images.dtype}; divide uint8 images by 255"
        )
    return images


def video_frames(videos: Tensor) -> Tensor:
    """[B, 3, T, H, W] -> [B * T, 3, H, W], video-major (frame t of video b at b * T + t)."""
    batch, channels, frames, height, width = videos.shape
    return videos.permute(0, 2, 1, 3, 4).reshape(batch * frames, channels, height, width)
