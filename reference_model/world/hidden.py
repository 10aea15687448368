"""Hidden scene dynamics of world v2: what neither the reference image nor the driving features carry.

Real portrait animation must invent hair that moves on its own, a background that drifts,
light that changes, where the eyes look, small head and body motion and film grain; its
conditioning (one reference image, per-frame expression features) leaves all of that open.
World v2 draws such content from a per-clip *hidden seed* that the model is never given.

Every value is a pure function of ``(hidden seed, frame index)``, as the driving motion is of
``(seed, frame index)`` (``motion.py``): smooth signals are uniform cubic B-splines through
knots drawn by a counter-based hash, per-clip constants are hashes of the seed alone. So a
clip is identical whatever the chunk size, and any frame can be drawn alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from reference_model.world.identities import hash_uniform
from reference_model.world.motion import hashed_bspline

# Salts the hash so that hidden seed s and driving seed s give unrelated signals.
_SALT = 0x5EED_2
# Training clips draw hidden (and driving) seeds below it; held-out clips and suite cases at or above.
HELD_OUT_OFFSET = 1_000_000


@dataclass(frozen=True)
class HiddenConfig:
    """Amplitudes (image units: the frame spans [-1, 1]) and time scales (frames) of hidden content."""

    sway_knot_frames: int = 10  # hair swings on its own, faster than the head turns
    sway_amplitude: float = 0.09
    strand_rate: float = 0.35  # radians per frame at most: hair strands flow along
    strand_amplitude: float = 0.22  # strand texture: relative brightness of the hair
    gaze_knot_frames: int = 7  # where the eyes look: darting, not in the features
    gaze_amplitude: float = 0.4  # iris offset in eye widths
    jitter_knot_frames: int = 9  # head micro-motion against the body
    jitter_amplitude: float = 0.035
    breath_amplitude: float = 0.02  # the body rises and falls
    light_knot_frames: int = 24  # the scene's light changes slowly
    light_gradient: float = 0.16  # brightness slope across the frame
    light_gain: float = 0.09  # overall brightness swing
    light_tint: float = 0.05  # colour temperature swing per channel
    blobs: int = 3  # out-of-focus lights drifting across the background
    blob_speed: float = 0.035  # image units per frame at most
    background_texture: float = 0.09  # a moving wave pattern on the background
    background_rate: float = 0.3  # radians per frame at most
    grain: float = 0.012  # film grain, std of the luminance noise


# Channels of the hash, one per signal or constant.
(
    _SWAY,
    _STRAND_RATE,
    _STRAND,
    _STRAND_FREQ,
    _GAZE_X,
    _GAZE_Y,
    _JITTER_X,
    _JITTER_Y,
    _BREATH_PERIOD,
    _BREATH_PHASE,
    _LIGHT_ANGLE,
    _LIGHT_SLOPE,
    _LIGHT_GAIN,
    _TINT,
    _BLOB,
    _TEXTURE,
    _CLOTHING,
    _GRAIN,
) = range(18)


def _constant(seed: Tensor, channel: int, index: int = 0) -> Tensor:
    """A per-clip uniform in [0, 1), ``[N]``."""
    return hash_uniform(_SALT, seed, channel, index)


def _bspline(seed: Tensor, channel: int, frames: Tensor, knot_frames: int) -> Tensor:
    """Hidden signal ``channel`` of each clip's ``seed`` (knots salted apart from motion's), ``[N]``."""
    return hashed_bspline((_SALT, seed, channel), frames, knot_frames)


def _signed(u: Tensor) -> Tensor:
    return u * 2.0 - 1.0


def hidden_state(
    seed: Tensor, frame: Tensor, config: HiddenConfig | None = None
) -> dict[str, Tensor]:
    """The hidden scene of frames ``frame`` ``[N]`` of clips ``seed`` ``[N]`` (both int).

    Keys: ``sway``, ``strand_phase``, ``strand_freq``, ``gaze_x``, ``gaze_y``, ``head_dx``,
    ``head_dy``, ``body_dy`` ``[N]``; ``light`` ``[N, 3]`` (gain, x slope, y slope) and ``tint``
    ``[N, 3]``; ``blob_x``, ``blob_y``, ``blob_radius`` ``[N, blobs]`` and ``blob_colour``
    ``[N, blobs, 3]``; ``texture`` ``[N, 5]`` (two wave directions, frequency, phase);
    ``clothing`` ``[N, 5]`` (hue, saturation, value, stripe frequency, stripe phase).
    """
    seed = torch.as_tensor(seed, dtype=torch.int64).flatten()
    frame = torch.as_tensor(frame, dtype=torch.int64).flatten()
    if seed.shape != frame.shape:
        raise ValueError(
            f"seed has {seed.numel()} entries but frame has {frame.numel()}; give one per frame"
        )
    if (seed < 0).any() or (frame < 0).any():
        raise ValueError("hidden seeds and frame indices must be non-negative")
    c = config if config is not None else HiddenConfig()
    t = frame.to(torch.float32)
    # Hair strands flow at a per-clip rate, wobbling around it.
    strand_rate = c.strand_rate * _signed(_constant(seed, _STRAND_RATE))
    strand_phase = strand_rate * t + 2.0 * _bspline(seed, _STRAND, frame, c.sway_knot_frames)
    strand_freq = 38.0 + 22.0 * _constant(seed, _STRAND_FREQ)
    breath_period = 50.0 + 40.0 * _constant(seed, _BREATH_PERIOD)
    breath = torch.sin(2.0 * math.pi * (t / breath_period + _constant(seed, _BREATH_PHASE)))
    light_angle = math.pi * (
        _constant(seed, _LIGHT_ANGLE) * 2.0
        + 0.5 * _bspline(seed, _LIGHT_ANGLE, frame, c.light_knot_frames)
    )
    slope = c.light_gradient * (
        0.5 + 0.5 * _bspline(seed, _LIGHT_SLOPE, frame, c.light_knot_frames)
    )
    gain = c.light_gain * _bspline(seed, _LIGHT_GAIN, frame, c.light_knot_frames)
    tint = torch.stack(
        [
            c.light_tint * _bspline(seed, _TINT + 100 * k, frame, c.light_knot_frames + 5 * k)
            for k in range(3)
        ],
        dim=1,
    )
    blobs = torch.arange(c.blobs)

    def blob_constant(k: int) -> Tensor:
        return hash_uniform(_SALT, seed[:, None], _BLOB, blobs[None] * 16 + k)

    wobble = torch.stack(
        [
            _bspline(seed, _BLOB + 1000 * (b + 1), frame, c.light_knot_frames)
            for b in range(c.blobs)
        ],
        dim=1,
    )
    # Blobs drift at a per-clip velocity and wrap around a band wider than the frame.
    span = 2.8
    blob_x = (
        _signed(blob_constant(0)) * 1.4
        + c.blob_speed * _signed(blob_constant(1)) * t[:, None]
        + 0.15 * wobble
        + 1.4
    ) % span - 1.4
    blob_y = (
        _signed(blob_constant(2)) * 1.4
        + c.blob_speed * _signed(blob_constant(3)) * t[:, None]
        + 0.15 * wobble.flip(1)
        + 1.4
    ) % span - 1.4
    angle = math.pi * _constant(seed, _TEXTURE)
    texture_rate = c.background_rate * _signed(_constant(seed, _TEXTURE, 1))
    texture = torch.stack(
        [
            torch.cos(angle),
            torch.sin(angle),
            10.0 + 14.0 * _constant(seed, _TEXTURE, 2),
            texture_rate * t + 1.5 * _bspline(seed, _TEXTURE, frame, c.light_knot_frames),
            c.background_texture * (0.4 + 0.6 * _constant(seed, _TEXTURE, 3)),
        ],
        dim=1,
    )
    clothing = torch.stack(
        [
            _constant(seed, _CLOTHING, 0),
            0.2 + 0.6 * _constant(seed, _CLOTHING, 1),
            0.25 + 0.6 * _constant(seed, _CLOTHING, 2),
            12.0 + 30.0 * _constant(seed, _CLOTHING, 3),
            2.0 * math.pi * _constant(seed, _CLOTHING, 4) + 4.0 * breath,
        ],
        dim=1,
    )
    return {
        "sway": c.sway_amplitude * _bspline(seed, _SWAY, frame, c.sway_knot_frames),
        "strand_phase": strand_phase,
        "strand_freq": strand_freq,
        "strand_amplitude": torch.full_like(t, c.strand_amplitude),
        "gaze_x": c.gaze_amplitude * _bspline(seed, _GAZE_X, frame, c.gaze_knot_frames),
        "gaze_y": 0.5 * c.gaze_amplitude * _bspline(seed, _GAZE_Y, frame, c.gaze_knot_frames + 3),
        "head_dx": c.jitter_amplitude * _bspline(seed, _JITTER_X, frame, c.jitter_knot_frames),
        "head_dy": c.jitter_amplitude * _bspline(seed, _JITTER_Y, frame, c.jitter_knot_frames + 2)
        + c.breath_amplitude * breath,
        "body_dy": c.breath_amplitude * breath,
        "light": torch.stack(
            [gain, slope * torch.cos(light_angle), slope * torch.sin(light_angle)], dim=1
        ),
        "tint": tint,
        "blob_x": blob_x,
        "blob_y": blob_y,
        "blob_radius": 0.12 + 0.22 * blob_constant(4),
        "blob_colour": torch.stack([_signed(blob_constant(5 + k)) for k in range(3)], dim=2),
        "texture": texture,
        "clothing": clothing,
        "grain": torch.full_like(t, c.grain),
    }


def grain_noise(seed: Tensor, frame: Tensor, size: int) -> Tensor:
    """Film grain ``[N, 1, size, size]`` with unit std, a pure function of (seed, frame, pixel)."""
    pixel = torch.arange(size * size, dtype=torch.int64).view(1, size, size)
    key = frame.view(-1, 1, 1) * (size * size) + pixel
    s = seed.view(-1, 1, 1)
    # The sum of two uniforms is triangular: bounded, near enough to Gaussian for grain.
    u = hash_uniform(_SALT, s, _GRAIN, key) + hash_uniform(_SALT, s, _GRAIN + 1, key)
    return u.sub_(1.0).mul_(math.sqrt(6.0))[:, None]
