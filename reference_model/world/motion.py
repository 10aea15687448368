"""Driving motion: expression/pose sequences of any length, streamed in chunks.

Every frame is a pure function of ``(seed, frame index)``: smooth signals are uniform cubic
B-splines through knots drawn by a counter-based hash, blinks are events placed one per
slot by the same hash. So a sequence is identical whatever the chunk size, any chunk can be
made alone, and a 10-minute sequence never sits in memory at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from reference_model.world.identities import hash_uniform


@dataclass(frozen=True)
class MotionConfig:
    """Amplitudes and time scales of driving motion (frames at ``fps``)."""

    fps: float = 25.0
    head_knot_frames: int = 20  # spacing of head-motion knots: slow, smooth turns
    yaw_amplitude: float = 0.45
    pitch_amplitude: float = 0.22
    roll_amplitude: float = 0.18
    blink_slot_frames: int = 60  # at most one blink per slot, about every 2-3 s
    blink_probability: float = 0.8
    blink_frames: float = 5.0
    brow_knot_frames: int = 30
    smile_knot_frames: int = 45
    syllable_frames: int = 4  # talking: a mouth opening every few frames
    utterance_knot_frames: int = 50  # speech comes in phrases separated by pauses


# Channel offsets in the hash so that each signal has its own knots.
_YAW, _PITCH, _ROLL, _BLINK_ON, _BLINK_AT, _EYE, _BROW, _SMILE, _SYLLABLE, _UTTERANCE = range(10)


def hashed_bspline(keys: tuple[Tensor | int, ...], frames: Tensor, knot_frames: int) -> Tensor:
    """A uniform cubic B-spline in [-1, 1] at ``frames``, through knots hashed from ``keys``."""
    position = frames.to(torch.float64) / knot_frames
    base = torch.floor(position)
    t = (position - base).to(torch.float32)
    base = base.to(torch.int64)
    weights = (
        (1 - t) ** 3 / 6,
        (3 * t**3 - 6 * t**2 + 4) / 6,
        (-3 * t**3 + 3 * t**2 + 3 * t + 1) / 6,
        t**3 / 6,
    )
    value = torch.zeros_like(t)
    for j, w in enumerate(weights):
        knot = hash_uniform(*keys, base + (j - 1) + (1 << 20)) * 2.0 - 1.0
        value = value + w * knot
    return value


def _bspline(seed: int, channel: int, frames: Tensor, knot_frames: int) -> Tensor:
    """The driving signal ``channel`` of motion ``seed`` (its own knots), at ``frames``."""
    return hashed_bspline((seed, channel), frames, knot_frames)


def _blinks(seed: int, frames: Tensor, config: MotionConfig) -> Tensor:
    """Eyelid closure in [0, 1] from blink events, one possible event per slot."""
    slot = torch.div(frames, config.blink_slot_frames, rounding_mode="floor")
    closure = torch.zeros(frames.shape, dtype=torch.float32)
    for neighbour in (-1, 0, 1):  # a blink near a slot edge reaches into the next slot
        s = slot + neighbour
        happens = hash_uniform(seed, _BLINK_ON, s) < config.blink_probability
        at = (s.to(torch.float32) + hash_uniform(seed, _BLINK_AT, s)) * config.blink_slot_frames
        distance = (frames.to(torch.float32) - at) / (0.5 * config.blink_frames)
        bump = torch.clamp(1.0 - distance.square(), min=0.0)
        closure = torch.maximum(closure, bump * happens.float())
    return closure


def blink_centres(
    seed: int, start: int, stop: int, config: MotionConfig = MotionConfig()
) -> Tensor:
    """Frame positions (float, sorted) of the blinks of sequence ``seed`` centred in ``[start, stop)``.

    The events ``_blinks`` draws: at most one per slot of ``blink_slot_frames``, each a
    closure bump ``blink_frames`` wide around its centre; ground truth for blink counting.
    ``start`` may be negative: a blink centred just before frame 0 still closes frame 0.
    """
    if stop < start:
        raise ValueError(f"need start <= stop, got start={start}, stop={stop}")
    first = start // config.blink_slot_frames
    slots = torch.arange(first, stop // config.blink_slot_frames + 1, dtype=torch.int64)
    happens = hash_uniform(int(seed), _BLINK_ON, slots) < config.blink_probability
    at = (
        slots.to(torch.float32) + hash_uniform(int(seed), _BLINK_AT, slots)
    ) * config.blink_slot_frames
    return at[happens & (at >= start) & (at < stop)]


def driving_frames(
    seed: int, start: int, stop: int, config: MotionConfig = MotionConfig()
) -> Tensor:
    """Expression/pose parameters ``[stop - start, 7]`` (layout: EXPRESSION_NAMES) of frames ``[start, stop)`` of sequence ``seed``."""
    if start < 0 or stop < start:
        raise ValueError(f"need 0 <= start <= stop, got start={start}, stop={stop}")
    frames = torch.arange(start, stop, dtype=torch.int64)
    seed = int(seed)
    yaw = config.yaw_amplitude * _bspline(seed, _YAW, frames, config.head_knot_frames)
    pitch = config.pitch_amplitude * _bspline(seed, _PITCH, frames, config.head_knot_frames)
    roll = config.roll_amplitude * _bspline(seed, _ROLL, frames, config.head_knot_frames + 7)
    resting_eye = 0.8 + 0.15 * _bspline(seed, _EYE, frames, config.brow_knot_frames)
    eye_open = resting_eye * (1.0 - _blinks(seed, frames, config))
    brow = 0.35 + 0.4 * _bspline(seed, _BROW, frames, config.brow_knot_frames)
    smile = 0.2 + 0.6 * _bspline(seed, _SMILE, frames, config.smile_knot_frames)
    speaking = torch.clamp(
        _bspline(seed, _UTTERANCE, frames, config.utterance_knot_frames) * 3.0 + 0.8, 0.0, 1.0
    )
    syllables = torch.clamp(
        _bspline(seed, _SYLLABLE, frames, config.syllable_frames) * 1.6 + 0.45, 0.0, 1.0
    )
    mouth = speaking * syllables
    out = torch.stack([yaw, pitch, roll, eye_open, brow, mouth, smile], dim=1)
    return out


def driving_chunks(
    seed: int, num_frames: int, chunk_frames: int = 256, config: MotionConfig = MotionConfig()
) -> Iterator[Tensor]:
    """The sequence ``seed`` of ``num_frames`` frames as consecutive ``[<=chunk_frames, 7]`` chunks."""
    if num_frames < 0:
        raise ValueError(f"num_frames={num_frames} must be non-negative")
    if chunk_frames < 1:
        raise ValueError(f"chunk_frames={chunk_frames} must be positive; use e.g. 256")
    for start in range(0, num_frames, chunk_frames):
        yield driving_frames(seed, start, min(start + chunk_frames, num_frames), config)


def driving_sequence(seed: int, num_frames: int, config: MotionConfig = MotionConfig()) -> Tensor:
    """The whole sequence ``seed``, ``[num_frames, 7]`` (for short clips; stream long ones)."""
    return driving_frames(seed, 0, num_frames, config)
