"""The portrait-model protocol and the records it speaks: a case to generate, its inputs, a model's spec.

Suites expand their cases into ``CaseSpec``s; a model prepares each (reference image, driving
motion, ground truth) as ``CaseInputs``; ``ModelSpec`` is what a suite is checked against
before the model is built.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from torch import Tensor

from flashbench.denoiser import Cond, Denoiser


@dataclass(frozen=True)
class CaseSpec:
    """One clip to generate: who, driven by what, how long and how large."""

    id: str
    reenactment: str
    identity: int
    driving_identity: int
    driving_seed: int
    frames: int
    resolution: int


WORLD_SPLITS: dict[str, range] = {
    "train": range(0, 10_000),
    "val": range(10_000, 10_500),
    "test": range(10_500, 11_000),
}


@dataclass(frozen=True)
class CaseInputs:
    """What sampling and the metrics need for one case."""

    cond: Cond
    latent_shape: tuple[int, ...]
    reference_image: Tensor  # [3, H, W] in [0, 1]
    ground_truth: Tensor | None  # [T, 3, H, W] in [0, 1], or None where the world has none
    driving: Tensor | None = (
        None  # [T, 3, H, W]: the driving video (the driver's identity in cross-reenactment)
    )


class PortraitModel(Protocol):
    """A denoiser with the world it was made for: cases in, latents out, frames back."""

    name: str
    fps: int
    splits: Mapping[str, range]
    denoiser: Denoiser
    # The conditioning entries of its cases (what guidance may drop).
    cond_keys: tuple[str, ...]

    def prepare(self, case: CaseSpec) -> CaseInputs: ...

    def decode(self, latents: Tensor) -> Tensor: ...

    # The world's own feature extractors (frames [T, 3, H, W] -> [T, D]) that metrics read;
    # None where the world has none (the metrics that need it are then refused by name).
    def identity_encoder(self) -> Callable[[Tensor], Tensor] | None: ...

    def expression_extractor(self) -> Callable[[Tensor], Tensor] | None: ...

    def pose_extractor(self) -> Callable[[Tensor], Tensor] | None: ...

    def weights(self) -> dict[str, str]: ...


class WithoutInstruments:
    """For models whose cases show no world face: the metrics that need its instruments are refused by name."""

    def identity_encoder(self) -> Callable[[Tensor], Tensor] | None:
        return None

    def expression_extractor(self) -> Callable[[Tensor], Tensor] | None:
        return None

    def pose_extractor(self) -> Callable[[Tensor], Tensor] | None:
        return None


@dataclass(frozen=True)
class ModelSpec:
    """What a suite is checked against before its model is built (``check_model_args``)."""

    splits: Mapping[str, range]
    fps: int
    cond_keys: tuple[str, ...]
    # Frame sizes the model runs at: multiples of ``resolution_step``, or exactly ``resolution``.
    resolution_step: int = 1
    resolution: int | None = None
    # The optional model methods metrics ask for (flashbench.suite.catalog FromModel / MODEL_READS)
    # that the model has; None: not declared, checked when the metrics are built.
    provides: tuple[str, ...] | None = None
    # The parts of its conditioning an unconditional branch may keep (``guidance.keep``).
    cond_parts: tuple[str, ...] = ()

    def resolution_error(self, resolution: int) -> str | None:
        """Why the model cannot run at ``resolution`` (with the fix), or None if it can."""
        if self.resolution is not None and resolution != self.resolution:
            return f"={resolution}: the model runs at {self.resolution} pixels; set resolution = {self.resolution}"
        if resolution % self.resolution_step:
            below = resolution - resolution % self.resolution_step
            return (
                f"={resolution} must be a multiple of {self.resolution_step} for this model; "
                f"use {below or self.resolution_step} or {below + self.resolution_step}"
            )
        return None
