"""A suite's cases: the ``[cases]`` keys, and the one record per clip (``CaseSpec``) they expand to.

Suites expand their cases; models prepare them (reference image, driving motion, ground truth).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from flashbench.models.base import CaseSpec
from flashbench.suite.schema import Integer, ListOf, Text, Where, short, toml_key

SPLITS = ("train", "val", "test")
REENACTMENTS = ("self", "cross")
MAX_FRAMES = 100_000
MAX_SECONDS = 3_600
MAX_RESOLUTION = 4_096
# Seeds and identity ids seed torch generators (64-bit); this bound leaves room for offsets.
MAX_SEED = 2**31 - 1
SEED = Integer(0, MAX_SEED)


@dataclass(frozen=True)
class Length:
    """Frames (``16`` or ``"16f"``) or seconds (``"2s"``, at the model's frame rate)."""

    def read(self, where: Where, key: str, value: Any) -> int | str:
        if isinstance(value, int) and not isinstance(value, bool):
            if value > MAX_FRAMES:
                raise where.error(
                    key, f"={value} frames is more than {MAX_FRAMES}; use a shorter length"
                )
            return Integer(1).read(where, key, value)
        if isinstance(value, str) and len(value) > 1 and value[-1] in "sf":
            try:
                number = float(value[:-1]) if value[-1] == "s" else int(value[:-1])
            except ValueError:
                number = None
            limit = MAX_SECONDS if value[-1] == "s" else MAX_FRAMES
            if number is not None and math.isfinite(number) and 0 < number <= limit:
                return value
        raise where.error(key, f'={short(value)} must be frames (16 or "16f") or seconds ("2s")')

    def describe(self) -> str:
        return f'frames (`16`, `"16f"`, <= {MAX_FRAMES}) or seconds (`"2s"`, <= {MAX_SECONDS})'


@dataclass(frozen=True)
class CountOrList:
    """A count, or the items themselves as a list."""

    count: Integer
    items: ListOf

    def read(self, where: Where, key: str, value: Any) -> int | tuple[Any, ...]:
        if isinstance(value, list):
            return self.items.read(where, key, value)
        return self.count.read(where, key, value)

    def describe(self) -> str:
        return f"{self.count.describe()}, or {self.items.describe()}"


@dataclass(frozen=True)
class Cases:
    """``[cases]``: which identities, driven by which motions, at which lengths and size."""

    split: str = toml_key("cases.split", Text(SPLITS), "identity split", default="test")
    identities: int | tuple[int, ...] = toml_key(
        "cases.identities",
        CountOrList(Integer(1), ListOf(SEED)),
        "how many identities (drawn with `identity_seed`), or a list of identity ids",
        default=2,
    )
    identity_seed: int = toml_key(
        "cases.identity_seed", SEED, "seed of the identity draw", default=0
    )
    driving_seeds: tuple[int, ...] = toml_key(
        "cases.driving_seeds", ListOf(SEED), "driving motion sequences", default=(0,)
    )
    reenactment: tuple[str, ...] = toml_key(
        "cases.reenactment",
        ListOf(Text(REENACTMENTS)),
        "`self`: driven by its own motion; `cross`: by the next identity's",
        default=("self",),
    )
    lengths: tuple[int | str, ...] = toml_key(
        "cases.lengths", ListOf(Length()), "video lengths", default=("2s",)
    )
    resolution: int = toml_key(
        "cases.resolution",
        Integer(8, MAX_RESOLUTION),
        "frame size in pixels (the model may require one)",
        default=32,
    )

    def expand(self, splits: Mapping[str, range], fps: int) -> list[CaseSpec]:
        """The cases of the suite, given the model world's identity splits and frame rate."""
        if self.split not in splits:
            raise ValueError(
                f"cases.split={self.split!r} is not a split of this model; use one of {sorted(splits)}"
            )
        ids_range = splits[self.split]
        if isinstance(self.identities, int):
            if self.identities > len(ids_range):
                raise ValueError(
                    f"cases.identities={self.identities} exceeds the {len(ids_range)} identities of "
                    f"split {self.split!r}; use at most {len(ids_range)}"
                )
            order = torch.randperm(
                len(ids_range), generator=torch.Generator().manual_seed(self.identity_seed)
            )
            ids = [ids_range[int(i)] for i in order[: self.identities]]
        else:
            ids = list(self.identities)
        cases = []
        for mode, identity_index, driving_seed, length in itertools.product(
            self.reenactment, range(len(ids)), self.driving_seeds, self.lengths
        ):
            identity = ids[identity_index]
            if mode == "self":
                driver = identity
            elif len(ids) > 1:
                driver = ids[(identity_index + 1) % len(ids)]
            else:
                driver = (
                    ids_range[(ids_range.index(identity) + 1) % len(ids_range)]
                    if identity in ids_range
                    else identity + 1
                )
            frames, label = length_frames(length, fps)
            driver_tag = "" if mode == "self" else f"_by{driver}"
            case_id = f"{mode}_id{identity}{driver_tag}_drv{driving_seed}_{label}"
            cases.append(
                CaseSpec(case_id, mode, identity, driver, driving_seed, frames, self.resolution)
            )
        return cases


def length_frames(length: int | str, fps: int) -> tuple[int, str]:
    """Frames and a label of a length given as frames (``16``, ``"16f"``) or seconds (``"2s"``)."""
    if isinstance(length, int):
        return length, f"{length}f"
    if length.endswith("f"):
        return int(length[:-1]), length
    seconds = float(length[:-1])
    return max(1, round(seconds * fps)), length
