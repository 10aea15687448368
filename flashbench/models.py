"""The model registry of suites: a name -> a portrait model (denoiser + world + decoder).

``toy`` is a small untrained layered denoiser with a toy world that renders coloured discs;
``reference`` lazily imports ``reference_model`` (the FlashPortrait reference trained on the
synthetic portrait world). Switching a suite's model is one key: ``suite.model``.
"""

from __future__ import annotations

import difflib
import hashlib
import inspect
import json
import reprlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from flashbench.denoiser import Cond, Denoiser
from flashbench.registry import Registry
from flashbench.suite import CaseSpec
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

    def identity_encoder(self) -> Callable[[Tensor], Tensor] | None: ...

    def weights(self) -> dict[str, str]: ...


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


# ---- reference ----------------------------------------------------------------------------


def _short(value: Any) -> str:
    return reprlib.repr(value)


def _train_command(path: Path, variant: str | None) -> str:
    """The command that writes the checkpoint ``path`` (train_model exports ``<out>/dit_<config>.pt``)."""
    config = path.stem.removeprefix("dit_") if path.stem.startswith("dit_") else "small"
    return (
        f"python -m reference_model.train_model --config {config} --nfeb {variant or 'VARIANT'} "
        f"--out {path.parent}"
    )


def check_reference_args(weights: str | None = None, variant: str | None = None) -> ModelSpec:
    """Check a ``reference`` model's parameters without building it: the checkpoint exists and holds ``variant``.

    ``weights``: a checkpoint of ``reference_model.train_model`` (default: the shipped
    ``paper`` weights); relative paths are read from the working directory. ``variant``: the
    NFEB variant the suite expects; the checkpoint's own config decides, so a mislabelled
    checkpoint is refused rather than silently measured under the wrong name.
    """
    try:
        from reference_model.dit import NFEB_VARIANTS
        from reference_model.pipeline import (
            DEFAULT_WEIGHTS,
            ReferencePortraitModel,
            verify_shipped_dit,
        )
        from reference_model.world import SPLITS
    except ImportError as err:
        raise ValueError(
            f"model 'reference' needs the reference_model package ({err}); use model = \"toy\""
        ) from err
    if variant is not None and variant not in NFEB_VARIANTS:
        close = difflib.get_close_matches(str(variant), NFEB_VARIANTS, n=1, cutoff=0.5)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ValueError(
            f"variant={variant!r} is not an NFEB variant; {hint}use one of {', '.join(NFEB_VARIANTS)}"
        )
    if weights is not None and not isinstance(weights, str):
        raise ValueError(
            f'weights={_short(weights)} must be a path string, e.g. "runs/nfeb/add/dit_small.pt"'
        )
    try:
        path = Path(weights).expanduser() if weights is not None else DEFAULT_WEIGHTS
        shipped = path.resolve() == DEFAULT_WEIGHTS.resolve()
        exists = path.is_file()
    except (OSError, RuntimeError, ValueError) as err:  # a NUL byte, a name too long, ~nobody
        raise ValueError(
            f"weights={_short(weights)} is not a usable path ({getattr(err, 'strerror', None) or err}); "
            "give the checkpoint's path"
        ) from err
    # The shipped checkpoint, however it is spelled, is checked against its recorded sha256: a
    # corrupt copy is restored, not retrained.
    if shipped:
        verify_shipped_dit(path)
    if not exists:
        where = "" if path.is_absolute() else f" (relative to the working directory {Path.cwd()})"
        raise ValueError(
            f"weights file {str(path)!r} does not exist{where}; make it with `{_train_command(path, variant)}`"
        )
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        actual = blob["config"].get("variant", "paper")
        latent_size = int(blob["config"].get("latent_size", 16))
    except Exception as err:  # whatever torch.load raises on a foreign file becomes one clear line
        raise ValueError(
            f"weights file {str(path)!r} is not a reference_model checkpoint ({type(err).__name__}: {err}); "
            f"make one with `{_train_command(path, variant)}`"
        ) from err
    if variant is not None and actual != variant:
        raise ValueError(
            f"weights file {str(path)!r} holds NFEB variant {actual!r}, not {variant!r}; point weights at the "
            f"{variant!r} checkpoint (`{_train_command(path, variant)}` makes one) or set variant = {actual!r}"
        )
    model = ReferencePortraitModel
    return ModelSpec(
        SPLITS,
        model.fps,
        model.cond_keys,
        resolution=model.pixels_per_latent * latent_size,
        provides=model.provides,
    )


def load_reference(weights: str | None = None, variant: str | None = None) -> PortraitModel:
    """The FlashPortrait reference model (``reference_model.pipeline.portrait_model``) as a PortraitModel."""
    check_reference_args(weights, variant)
    from reference_model.pipeline import portrait_model

    return portrait_model(weights=weights)


models = Registry("model")
models.register(
    "toy", ToyModel, doc="untrained toy denoiser on a world of coloured discs (tests, smoke runs)"
)
models.register(
    "reference",
    load_reference,
    doc="FlashPortrait reference model trained on the synthetic portrait world (weights=, variant=)",
)
# What can be checked of a model's parameters before it is built (sizes, files, variants), by
# model name; each returns the model's spec.
_ARG_CHECKS: dict[str, Callable[..., ModelSpec]] = {
    "toy": check_toy_args,
    "reference": check_reference_args,
}


def model_params(name: str) -> list[str]:
    """The parameters a suite may give model ``name`` (``model_args``)."""
    factory = models.get(name)
    return [p for p in inspect.signature(factory).parameters if p != "self"]


def check_model_args(name: str, args: Mapping[str, Any]) -> ModelSpec | None:
    """The spec of model ``name`` built with ``args``; ValueError (what is wrong and the fix) if they cannot build it.

    None for a model registered without a check (its parameters are checked when it is built).
    """
    check = _ARG_CHECKS.get(name)
    return None if check is None else check(**args)


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
