"""Files of a run directory written atomically (readers never see half a file), and its videos and images.

Every temp file is named ``.tmp-<pid>-<name>`` beside its target and moved into place with
``os.replace``; a failed write leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

# Every temp file is named .tmp-<pid>-<name>. No finished file of a run starts with "." (case
# ids and setting names start with a letter or digit), so resume deletes temps and nothing else.
TEMP_NAME = re.compile(r"\.tmp-(?P<pid>\d+)-.")


def temp_path(path: Path) -> Path:
    """The temp file beside ``path`` (it keeps ``path``'s suffix: writers pick the format by it)."""
    return path.with_name(f".tmp-{os.getpid()}-{path.name}")


def atomic_with(path: Path, write: Callable[[Path], None]) -> None:
    """Write through ``write(temp)``, then ``os.replace`` (readers never see half a file; a failed write leaves nothing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, fsynced before the rename."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())

    atomic_with(path, write)


def atomic_json(path: Path, payload: Any) -> None:
    atomic_write(path, (json.dumps(payload, indent=1, allow_nan=False) + "\n").encode())


def write_video(path: Path, video: Tensor, fps: int) -> None:
    """Frames ``[T, 3, H, W]`` in [0, 1] as an H.264 mp4 (imageio-ffmpeg)."""
    import imageio.v2 as imageio

    frames = (video.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()

    def write(tmp: Path) -> None:
        # macro_block_size=1 keeps small frames their size; even sides suffice for yuv420p.
        with imageio.get_writer(
            tmp,
            format="FFMPEG",
            fps=fps,
            codec="libx264",
            macro_block_size=2,
            ffmpeg_log_level="error",
        ) as writer:
            for frame in frames:
                writer.append_data(frame)

    atomic_with(path, write)


def write_image(path: Path, image: Tensor) -> None:
    import imageio.v3 as iio

    pixels = (image.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    atomic_with(path, lambda tmp: iio.imwrite(tmp, pixels))


def read_video(path: Path) -> Tensor:
    """Frames ``[T, 3, H, W]`` in [0, 1] of an mp4 written by ``write_video``."""
    import imageio.v2 as imageio

    with imageio.get_reader(path, format="FFMPEG") as reader:
        frames = torch.stack([torch.from_numpy(frame.copy()) for frame in reader])
    return frames.permute(0, 3, 1, 2).float() / 255
