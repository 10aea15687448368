"""Blinks in an eye-openness track: runs of frames below a threshold, and which of them another track follows.

A blink is a run of at least a few frames with the eye-openness feature below a threshold,
as eye-aspect-ratio blink detectors count them (Soukupova and Cech 2016, "Real-Time Eye
Blink Detection using Facial Landmarks"); a driving blink is followed when a generated
blink overlaps it within a tolerance of a few frames.
"""

from __future__ import annotations

from torch import Tensor

__all__ = ["WORLD_BLINK_THRESHOLD", "blink_runs", "follow_blinks", "match_blinks"]

# Half the lowest resting eye openness of the world's blink model (0.8 - 0.15, in
# reference_model/world/motion.py): an open eye never dips below it, and each blink (a
# closure bump 5 frames wide) holds the eye below it for at least 2 frames.
WORLD_BLINK_THRESHOLD = 0.325


def blink_runs(eye: Tensor, threshold: float, min_frames: int) -> list[tuple[int, int]]:
    """Frame ranges [start, stop) where `eye` [T] stays below `threshold` for >= `min_frames` frames (NaN: open)."""
    closed = (eye < threshold).tolist()
    runs, start = [], None
    for frame, shut in enumerate([*closed, False]):
        if shut and start is None:
            start = frame
        elif not shut and start is not None:
            if frame - start >= min_frames:
                runs.append((start, frame))
            start = None
    return runs


def match_blinks(
    driving: list[tuple[int, int]], generated: list[tuple[int, int]], tolerance: int
) -> tuple[int, int]:
    """(driving blinks that a generated blink overlaps within `tolerance` frames, generated blinks overlapping none)."""

    def near(a: tuple[int, int], b: tuple[int, int]) -> bool:
        return a[0] - tolerance < b[1] and b[0] < a[1] + tolerance

    followed = sum(any(near(d, g) for g in generated) for d in driving)
    spurious = sum(not any(near(d, g) for d in driving) for g in generated)
    return followed, spurious


def follow_blinks(
    generated: Tensor, driving: Tensor, threshold: float, min_frames: int, tolerance: int
) -> tuple[int, int, int]:
    """(blinks of the `driving` eye track [T], how many a `generated` blink follows, generated blinks following none)."""
    driving_runs = blink_runs(driving, threshold, min_frames)
    followed, spurious = match_blinks(
        driving_runs, blink_runs(generated, threshold, min_frames), tolerance
    )
    return len(driving_runs), followed, spurious
