"""Files of a run directory written atomically (readers never see half a file): JSON, videos and images.

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

from torch import Tensor

from flashbench.models.video import encode_image, encode_video

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
    """Frames ``[T, 3, H, W]`` in [0, 1] as an H.264 mp4, atomically."""
    atomic_with(path, lambda tmp: encode_video(tmp, video, fps))


def write_image(path: Path, image: Tensor) -> None:
    """An image ``[3, H, W]`` in [0, 1] as a PNG, atomically."""
    atomic_with(path, lambda tmp: encode_image(tmp, image))
