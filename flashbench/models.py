"""The model registry of suites: a name -> a portrait model (denoiser + world + decoder).

``toy`` is a small untrained layered denoiser with a toy world that renders coloured discs;
``reference`` is the registry entry ``"reference_model.pipeline:load_reference"`` (the
FlashPortrait reference trained on the synthetic portrait world), imported only when used, so
flashbench never imports reference_model and a real model plugs in the same way. Switching a suite's model is one key: ``suite.model``.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from flashbench.cases import CaseSpec
from flashbench.denoiser import Cond, Denoiser
from flashbench.registry import Registry
from flashbench.toy import ToyDenoiser, sigma_features

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
    # The optional model methods metrics ask for (flashbench.measure FromModel / MODEL_READS)
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


# ---- toy ----------------------------------------------------------------------------------

TOY_MAX_DIM = 1024
TOY_MAX_DEPTH = 64


class ToyPortraitDenoiser(ToyDenoiser):
    """The toy denoiser conditioned on a reference latent (static) and expression (temporal)."""

    def embed(self, x: Tensor, sigma: Tensor, cond: Cond) -> tuple[Tensor, dict]:
        reference = cond.static.get("reference")
        if reference is not None:
            x = x + 0.5 * reference[:, :, None]
        h = self.proj_in(x.permute(0, 2, 3, 4, 1))
        if self.motion is not None and "expression" in cond.temporal:
            h = h + self.motion(cond.temporal["expression"])[:, :, None, None]
        return h, {"time": self.time(sigma_features(sigma, self.dim))}


def _uniform(seed: int, *shape: int) -> Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


class ToyModel:
    """A toy world (a disc of the identity's colour on its background, moved by the driving motion) and an untrained denoiser."""

    name = "toy"
    fps = 8
    splits = WORLD_SPLITS
    downsample = 4
    cond_keys = ("reference", "expression")

    def __init__(self, dim: int = 32, depth: int = 3) -> None:
        check_toy_args(dim, depth)
        self.denoiser = ToyPortraitDenoiser(
            channels=3, dim=dim, depth=depth, temporal=True, motion_dim=3, seed=0
        ).eval()

    def render(self, identity: int, motion: Tensor, resolution: int) -> Tensor:
        """Frames ``[T, 3, R, R]``: the identity's disc displaced by motion[:, :2], radius by motion[:, 2]."""
        colours = _uniform(identity, 2, 3)
        grid = (torch.arange(resolution, dtype=torch.float64) + 0.5) / resolution - 0.5
        yy, xx = torch.meshgrid(grid, grid, indexing="ij")
        dx, dy, mouth = (motion[:, i, None, None] for i in range(3))
        inside = ((xx - 0.2 * dx) ** 2 + (yy - 0.2 * dy) ** 2 < (0.25 + 0.05 * mouth) ** 2).double()
        return (
            colours[1, None, :, None, None] * (1 - inside[:, None])
            + colours[0, None, :, None, None] * inside[:, None]
        ).float()

    def motion(self, driving_seed: int, frames: int) -> Tensor:
        """Smooth driving motion ``[T, 3]`` in [-1, 1]: sinusoids with seeded frequencies and phases."""
        params = _uniform(1_000_003 + driving_seed, 2, 3)
        t = torch.arange(frames, dtype=torch.float64)[:, None] / self.fps
        return torch.sin(2 * torch.pi * (0.2 + 0.8 * params[0]) * t + 2 * torch.pi * params[1])

    def prepare(self, case: CaseSpec) -> CaseInputs:
        if case.resolution % self.downsample:
            raise ValueError(
                f"resolution={case.resolution} must be a multiple of {self.downsample} for the toy model"
            )
        motion = self.motion(case.driving_seed, case.frames)
        still = torch.zeros(1, 3, dtype=torch.float64)
        reference = self.render(case.identity, still, case.resolution)[0]
        truth = self.render(case.identity, motion, case.resolution)
        driving = (
            truth
            if case.driving_identity == case.identity
            else self.render(case.driving_identity, motion, case.resolution)
        )
        size = case.resolution // self.downsample
        reference_latent = nn.functional.avg_pool2d(reference[None] * 2 - 1, self.downsample)
        cond = Cond(
            static={"reference": reference_latent},
            temporal={"expression": motion.float()[None]},
            frames_per_latent=1,
        )
        return CaseInputs(cond, (1, 3, case.frames, size, size), reference, truth, driving)

    def decode(self, latents: Tensor) -> Tensor:
        video = latents[0].permute(1, 0, 2, 3).float()
        video = nn.functional.interpolate(video, scale_factor=self.downsample, mode="nearest")
        return ((video + 1) / 2).clamp(0, 1)

    def identity_encoder(self) -> Callable[[Tensor], Tensor]:
        """Pooled colours centred per frame: a stand-in identity embedding for the toy world."""

        def encode(frames: Tensor) -> Tensor:
            pooled = nn.functional.adaptive_avg_pool2d(frames, 4).flatten(1)
            return pooled - pooled.mean(dim=1, keepdim=True)

        return encode

    @staticmethod
    def _disc(frames: Tensor) -> Tensor:
        """Per frame: disc centre (x, y, in units of the motion) and radius, from pixels unlike the corner's."""
        background = frames[:, :, :1, :1]
        mask = ((frames - background).abs().sum(1) > 0.1).double()
        size = frames.shape[-1]
        grid = (torch.arange(size, dtype=torch.float64) + 0.5) / size - 0.5
        area = mask.sum((1, 2)).clamp(min=1)
        cx = (mask * grid[None, None, :]).sum((1, 2)) / area
        cy = (mask * grid[None, :, None]).sum((1, 2)) / area
        return torch.stack([cx * 5, cy * 5, (area / size**2).sqrt()], dim=1)

    def expression_extractor(self) -> Callable[[Tensor], Tensor]:
        """The toy world's expression: the disc's radius (its "mouth")."""
        return lambda frames: self._disc(frames)[:, 2:]

    def pose_extractor(self) -> Callable[[Tensor], Tensor]:
        """The toy world's head pose: the disc's centre."""
        return lambda frames: self._disc(frames)[:, :2]

    def weights(self) -> dict[str, str]:
        state = self.denoiser.state_dict()
        digest = hashlib.sha256()
        for key in sorted(state):
            digest.update(key.encode())
            digest.update(state[key].detach().contiguous().numpy().tobytes())
        return {"toy-denoiser(seed=0)": digest.hexdigest()}


def check_toy_args(dim: int = 32, depth: int = 3) -> ModelSpec:
    """The toy model's spec, or a ValueError if ``dim``/``depth`` cannot build it."""
    for name, value, high in (("dim", dim, TOY_MAX_DIM), ("depth", depth, TOY_MAX_DEPTH)):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
            raise ValueError(
                f"{name}={value!r} must be an integer in [1, {high}] for the toy model"
            )
    if dim % 2:
        # sigma features are sin/cos pairs: an odd width would not match the time embedding.
        raise ValueError(f"dim={dim} must be even for the toy model; use {dim + 1}")
    return ModelSpec(
        ToyModel.splits,
        ToyModel.fps,
        ToyModel.cond_keys,
        resolution_step=ToyModel.downsample,
        provides=("identity_encoder", "expression_extractor", "pose_extractor"),
    )


models = Registry("model")
models.register(
    "toy", ToyModel, doc="untrained toy denoiser on a world of coloured discs (tests, smoke runs)"
)
models.register(
    "gmm",
    "flashbench.gmm:GaussianMixtureModel",
    doc="exact flow-matching velocity of per-pixel Gaussian mixtures: the ODE testbed with known solutions (components=)",
)
models.register(
    "reference",
    "reference_model.pipeline:load_reference",
    doc="FlashPortrait reference model trained on the synthetic portrait world (weights=, variant=)",
)
models.register(
    "wan",
    "flashbench.wan_model:load_wan",
    doc="diffusers' Wan text-to-video from a local sha256-checked folder (weights=, dtype=, device=; docs/wan.md)",
)
models.register(
    "flashportrait",
    "flashbench.flashportrait_model:load_flashportrait",
    doc="FlashPortrait's released files on diffusers' Wan2.1-I2V with NFEB (weights=, variant=, config=, device=, cases=; docs/wan.md)",
)
# What can be checked of a model's parameters before it is built (sizes, files, variants), by
# model name: a function or a lazily imported ``"module:object"``; each returns the model's spec.
_ARG_CHECKS: dict[str, Callable[..., ModelSpec] | str] = {
    "toy": check_toy_args,
    "gmm": "flashbench.gmm:check_gmm_args",
    "reference": "reference_model.pipeline:check_reference_args",
    "wan": "flashbench.wan_model:check_wan_args",
    "flashportrait": "flashbench.flashportrait_model:check_flashportrait_args",
}
# The trainer of each trainable model: ``flashbench train`` forwards its options to it.
trainers = Registry("trainer")
trainers.register("reference", "reference_model.train_model:main")


def _lazy(name: str, target: Callable[..., Any] | str) -> Callable[..., Any]:
    """``target``, importing a ``"module:object"`` name; a missing package is a ValueError naming the fix."""
    if not isinstance(target, str):
        return target
    module, _, attr = target.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except ImportError as err:
        raise ValueError(
            f'model {name!r} needs the {module.partition(".")[0]} package ({err}); use model = "toy"'
        ) from err


def _model_factory(name: str) -> Callable[..., Any]:
    try:
        return models.get(name)
    except ImportError as err:
        raise ValueError(
            f'model {name!r} needs a package that is not installed ({err}); use model = "toy"'
        ) from err


def model_params(name: str) -> list[str]:
    """The parameters a suite may give model ``name`` (``model_args``)."""
    factory = _model_factory(name)
    return [p for p in inspect.signature(factory).parameters if p != "self"]


def check_model_args(name: str, args: Mapping[str, Any]) -> ModelSpec | None:
    """The spec of model ``name`` built with ``args``; ValueError (what is wrong and the fix) if they cannot build it.

    None for a model registered without a check (its parameters are checked when it is built).
    """
    check = _ARG_CHECKS.get(name)
    return None if check is None else _lazy(name, check)(**args)


def build_models(
    name: str, model_args: Mapping[str, Mapping[str, Any]]
) -> dict[str, PortraitModel]:
    """One model per setting, from ``{setting: model_args}``; settings with equal args share one instance."""
    built: dict[str, PortraitModel] = {}
    out = {}
    for setting, args in model_args.items():
        key = json.dumps(dict(args), sort_keys=True, default=str)
        if key not in built:
            built[key] = models.build(name, **args)
        out[setting] = built[key]
    return out
