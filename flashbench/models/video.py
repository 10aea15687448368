"""Video and image files: the driving videos models read, and the codec runs write them with.

Runs write through ``flashbench/run/files.py``, which makes every write atomic.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor


def encode_video(path: Path, video: Tensor, fps: int) -> None:
    """Frames ``[T, 3, H, W]`` in [0, 1] as an H.264 mp4 (imageio-ffmpeg)."""
    import imageio.v2 as imageio

    frames = (video.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()

    # macro_block_size=1 keeps small frames their size; even sides suffice for yuv420p.
    with imageio.get_writer(
        path,
        format="FFMPEG",
        fps=fps,
        codec="libx264",
        macro_block_size=2,
        ffmpeg_log_level="error",
    ) as writer:
        for frame in frames:
            writer.append_data(frame)


def encode_image(path: Path, image: Tensor) -> None:
    """An image ``[3, H, W]`` in [0, 1] as a PNG."""
    import imageio.v3 as iio

    pixels = (image.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    iio.imwrite(path, pixels)


def read_video(path: Path) -> Tensor:
    """Frames ``[T, 3, H, W]`` in [0, 1] of an mp4 (as ``encode_video`` writes them)."""
    import imageio.v2 as imageio

    with imageio.get_reader(path, format="FFMPEG") as reader:
        frames = torch.stack([torch.from_numpy(frame.copy()) for frame in reader])
    return frames.permute(0, 3, 1, 2).float() / 255
