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


def read_video(path: Path) -> np.ndarray:
    """Frames ``[T, H, W, 3]`` uint8 of an mp4 (or a still image as one frame)."""
    if path.suffix == ".png":
        return np.asarray(Image.open(path).convert("RGB"))[None]
    try:
        frames = imageio.mimread(path, memtest=False)
    except Exception as error:  # imageio raises several types for corrupt files
        raise ValueError(
            f"video={str(path)!r} cannot be read ({error}); re-run its unit"
        ) from error
    return np.stack([np.asarray(f)[..., :3] for f in frames])


def _resize(frames: np.ndarray, height: int) -> np.ndarray:
    if frames.shape[1] == height:
        return frames
    width = max(1, round(frames.shape[2] * height / frames.shape[1]))
    return np.stack(
        [np.asarray(Image.fromarray(f).resize((width, height), Image.NEAREST)) for f in frames]
    )


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
        _labelled(_pad_time(_resize(frames, height), length), name)
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
                columns[name.replace("_", " ")] = read_video(videos[name])
        for setting in settings:
            key = f"{setting}__seed{seed}"
            if key in videos:
                columns[setting] = read_video(videos[key])
            else:
                log.warning("case %s has no video %s.mp4; its grid column is left out", case, key)
        if not columns:
            continue
        frames = grid_frames(columns, height)
        out.mkdir(parents=True, exist_ok=True)
        mp4 = out / f"{case}__seed{seed}.mp4"
        imageio.mimwrite(mp4, list(frames), fps=8, macro_block_size=1)
        grids.append(Grid(case, seed, tuple(columns), mp4, gif_preview(frames)))
    return grids
