"""Identities of the synthetic portrait world: integer ids, their attributes, and fixed splits.

An identity is an integer id. Its attributes are a pure function of ``(id, world_seed)``
through a counter-based hash, so any id can be drawn alone, in any batch, in any order, and
always gets the same face. Splits are disjoint id ranges, fixed once for the project.
"""

from __future__ import annotations

import torch
from torch import Tensor

# Each attribute is a number in [0, 1]; the renderer maps it to geometry or colour.
ID_ATTRIBUTES: tuple[str, ...] = (
    "face_width",
    "face_height",
    "skin_tone",
    "skin_hue",
    "hair_hue",
    "hair_lightness",
    "hair_length",
    "fringe",
    "eye_hue",
    "eye_spacing",
    "eye_size",
    "nose_length",
    "nose_width",
    "mouth_width",
    "lip_hue",
    "glasses",
    "glasses_hue",
    "background_hue",
    "background_lightness",
    "brow_thickness",
)
NUM_ID_ATTRIBUTES = len(ID_ATTRIBUTES)

# Disjoint id ranges. Training uses many identities so that the networks generalise;
# validation and test are small and never seen in training.
SPLITS: dict[str, range] = {
    "train": range(0, 10_000),
    "val": range(10_000, 10_500),
    "test": range(10_500, 11_000),
}

_MASK32 = 0xFFFFFFFF


def _hash32(x: Tensor) -> Tensor:
    """A 32-bit integer mixer (lowbias32 by C. Wellons) on int64 tensors holding uint32 values."""
    # int64 products wrap on overflow; only the low 32 bits are kept, which wrapping preserves.
    x = x & _MASK32
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _MASK32
    x = x ^ (x >> 15)
    x = (x * 0x846CA68B) & _MASK32
    x = x ^ (x >> 16)
    return x


def hash_uniform(*keys: Tensor | int) -> Tensor:
    """Uniform floats in [0, 1) that are a pure function of the integer ``keys`` (broadcast)."""
    x = torch.zeros((), dtype=torch.int64)
    for key in keys:
        key = torch.as_tensor(key, dtype=torch.int64)
        x = _hash32(x * 0x9E3779B1 + key + 0x632BE5AB)
    return (x >> 8).to(torch.float64).div(2.0**24).to(torch.float32)


def split_ids(split: str) -> range:
    """The identity ids of ``split`` (one of ``train``, ``val``, ``test``)."""
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is not a split; use one of {sorted(SPLITS)}")
    return SPLITS[split]


def identity_params(ids: Tensor | list[int] | range, world_seed: int = 0) -> Tensor:
    """Attributes ``[N, NUM_ID_ATTRIBUTES]`` in [0, 1] of identities ``ids`` (layout: ID_ATTRIBUTES)."""
    ids = torch.as_tensor(list(ids) if isinstance(ids, range) else ids, dtype=torch.int64)
    if ids.ndim != 1:
        raise ValueError(f"ids must be one-dimensional, got shape {tuple(ids.shape)}; flatten it")
    if (ids < 0).any():
        raise ValueError(f"ids must be non-negative, got min {int(ids.min())}")
    attribute = torch.arange(NUM_ID_ATTRIBUTES, dtype=torch.int64)
    return hash_uniform(world_seed, ids[:, None], attribute[None, :])


def sample_ids(split: str, n: int, generator: torch.Generator) -> Tensor:
    """``n`` ids drawn uniformly (with replacement) from ``split``."""
    ids = split_ids(split)
    return torch.randint(ids.start, ids.stop, (n,), generator=generator)
