"""Side-by-side video grids: reference | ground truth | one column per setting."""

from __future__ import annotations

import io
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
from PIL import Image, ImageDraw

log = logging.getLogger(__name__)

LABEL_HEIGHT = 14


@dataclass(frozen=True)
class Grid:
    """A rendered grid for one case and seed: its mp4 on disk and an animated GIF preview."""

    case: str
    seed: int
    columns: tuple[str, ...]
    mp4: Path
    gif: bytes


def _resize_frame(frame: np.ndarray, height: int | None) -> np.ndarray:
    frame = np.asarray(frame)[..., :3]
    if height is None or frame.shape[0] == height:
        return frame
    width = max(1, round(frame.shape[1] * height / frame.shape[0]))
    return np.asarray(Image.fromarray(frame).resize((width, height), Image.NEAREST))


def read_video(path: Path, height: int | None = None) -> np.ndarray:
    """Frames ``[T, H, W, 3]`` uint8 of an mp4 (a still image is one frame), scaled to ``height``.

    Frames are scaled while streaming, so long full-resolution videos never sit in memory.
    """
    if path.suffix == ".png":
        return _resize_frame(np.asarray(Image.open(path).convert("RGB")), height)[None]
    try:
        with imageio.get_reader(path) as reader:
            frames = [_resize_frame(frame, height) for frame in reader]
    except Exception as error:  # imageio raises several types for corrupt files
        raise ValueError(
            f"video={str(path)!r} cannot be read ({error}); re-run its unit"
        ) from error
    if not frames:
        raise ValueError(f"video={str(path)!r} has no frames; re-run its unit")
    return np.stack(frames)


def _labelled(frames: np.ndarray, label: str) -> np.ndarray:
    banner = Image.new("RGB", (frames.shape[2], LABEL_HEIGHT), "white")
    ImageDraw.Draw(banner).text((2, 1), label, fill="black")
    top = np.broadcast_to(np.asarray(banner), (frames.shape[0], *np.asarray(banner).shape))
    return np.concatenate([top, frames], axis=1)


def _pad_time(frames: np.ndarray, length: int) -> np.ndarray:
    # A still (the reference image) or a shorter video holds its last frame.
    if len(frames) >= length:
        return frames[:length]
    return np.concatenate([frames, np.repeat(frames[-1:], length - len(frames), axis=0)])


def grid_frames(columns: dict[str, np.ndarray], height: int = 128) -> np.ndarray:
    """Stack labelled columns side by side; every column scaled to ``height`` rows."""
    length = max(len(f) for f in columns.values())
    tiles = [
        _labelled(_pad_time(np.stack([_resize_frame(f, height) for f in frames]), length), name)
        for name, frames in columns.items()
    ]
    grid = np.concatenate(tiles, axis=2)
    # H.264 in yuv420p needs even sides.
    pad_h, pad_w = grid.shape[1] % 2, grid.shape[2] % 2
    return np.pad(grid, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), constant_values=255)


def gif_preview(frames: np.ndarray, *, max_frames: int = 48, max_width: int = 1100) -> bytes:
    """An animated GIF of ``frames``, subsampled in time and space to keep the HTML small."""
    stride = max(1, -(-len(frames) // max_frames))
    images = [Image.fromarray(f) for f in frames[::stride]]
    if images[0].width > max_width:
        size = (max_width, round(images[0].height * max_width / images[0].width))
        images = [im.resize(size, Image.BILINEAR) for im in images]
    buffer = io.BytesIO()
    images[0].save(
        buffer, format="GIF", save_all=True, append_images=images[1:], duration=125 * stride, loop=0
    )
    return buffer.getvalue()


def case_grids(
    videos: dict[str, Path], case: str, settings: list[str], out: Path, *, height: int = 128
) -> list[Grid]:
    """Write one grid mp4 per seed of ``case`` under ``out`` and return them with previews."""
    pattern = re.compile(r"__seed(-?\d+)$")
    seeds = sorted({int(m.group(1)) for name in videos if (m := pattern.search(name))})
    grids = []
    for seed in seeds:
        columns: dict[str, np.ndarray] = {}
        for name in ("reference", "ground_truth"):
            if name in videos:
                columns[name.replace("_", " ")] = read_video(videos[name], height)
        for setting in settings:
            key = f"{setting}__seed{seed}"
            if key in videos:
                columns[setting] = read_video(videos[key], height)
            else:
                log.warning("case %s has no video %s.mp4; its grid column is left out", case, key)
        if not columns:
            continue
        frames = grid_frames(columns, height)
        out.mkdir(parents=True, exist_ok=True)
        mp4 = out / f"{case}__seed{seed}.mp4"
        imageio.mimwrite(mp4, list(frames), fps=8, macro_block_size=1)
        gif = gif_preview(frames)
        # The GIF also sits beside the mp4 so report.md can show the preview.
        mp4.with_suffix(".gif").write_bytes(gif)
        grids.append(Grid(case, seed, tuple(columns), mp4, gif))
    return grids
