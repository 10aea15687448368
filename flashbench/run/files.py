"""Files of a run directory written atomically (readers never see half a file): JSON, videos and images.

Every temp file is named ``.tmp-<pid>-<name>`` beside its target and moved into place with
``os.replace``; a failed write leaves nothing behind. Ctrl-C is held while a file is written, so
an interrupt never lands inside a writer (imageio's ffmpeg pipe): the writer closes itself and
the interrupt follows, in our code.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import threading
from collections.abc import Callable, Iterator
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


@contextlib.contextmanager
def interrupts_held() -> Iterator[None]:
    """Hold SIGINT until the block ends, then deliver it to the handler that was in place.

    A KeyboardInterrupt raised inside a library's writer can leave it half closed, and its
    finaliser then prints "Exception ignored ... Traceback" (a run's writes take well under a
    second, so holding Ctrl-C that long is not felt). Signals reach only the main thread; in
    others the block runs as is.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        # None: a handler not installed from Python; SIG_DFL is the closest we can restore.
        signal.signal(signal.SIGINT, signal.SIG_DFL if previous is None else previous)
        if received:
            signal.raise_signal(signal.SIGINT)


def atomic_with(path: Path, write: Callable[[Path], None]) -> None:
    """Write through ``write(temp)``, then ``os.replace`` (readers never see half a file; a failed write leaves nothing).

    Ctrl-C during the write is delivered once the file is in place (``interrupts_held``).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    with interrupts_held():
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
