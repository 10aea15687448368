"""From frames to frames: encode, condition, sample and decode with the shipped portrait DiT."""

from __future__ import annotations

import difflib
import reprlib
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from flashbench.models.base import CaseInputs, ModelSpec, PortraitModel
from flashbench.sampling import Guidance
from metrics.weights import file_sha256
from reference_model.dit import CONFIGS, NFEB_VARIANTS, DiTConfig, PortraitDiT
from reference_model.lightning import generate
from reference_model.shipped_weights import (
    WEIGHTS_DIR,
    WORLD_WEIGHTS,
    read_json,
    read_manifest,
    restore_hint,
)

DEFAULT_WEIGHTS = WEIGHTS_DIR / "dit_small.pt"
# Each world's DiT, trained on that world's clips (MODEL_CARD_DIT.md, MODEL_CARD_V2.md).
WORLD_DITS = {world: folder / "dit_small.pt" for world, folder in WORLD_WEIGHTS.items()}


def encode_video(autoencoder, video: Tensor) -> Tensor:
    """Per-frame autoencoder latents ``[B, C, T, h, w]`` of a video ``[B, 3, T, H, W]`` in [0, 1]."""
    b, c, t, h, w = video.shape
    z = autoencoder.encode(video.transpose(1, 2).reshape(b * t, c, h, w))
    return z.reshape(b, t, *z.shape[1:]).transpose(1, 2)


def decode_video(autoencoder, latents: Tensor) -> Tensor:
    """Frames ``[B, 3, T, H, W]`` of per-frame latents ``[B, C, T, h, w]``."""
    b, c, t, h, w = latents.shape
    x = autoencoder.decode(latents.transpose(1, 2).reshape(b * t, c, h, w))
    return x.reshape(b, t, *x.shape[1:]).transpose(1, 2).clamp(0, 1)


def extract_video(extractor, video: Tensor) -> Tensor:
    """Expression features ``[B, T, E]`` of every frame of a video ``[B, 3, T, H, W]``."""
    b, c, t, h, w = video.shape
    f = extractor(video.transpose(1, 2).reshape(b * t, c, h, w))
    return f.reshape(b, t, -1)


def export_weights(model: PortraitDiT, path: str | Path, step: int) -> str:
    """Write ``{"config", "state_dict", "step"}`` to ``path``; return its sha256."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    # Written beside and moved into place, so a run killed mid-export leaves the previous export whole.
    partial = path.with_name(path.name + ".partial")
    torch.save({"config": model.config.__dict__.copy(), "state_dict": state, "step": step}, partial)
    partial.replace(path)
    return file_sha256(path)


def verify_shipped_dit(path: Path) -> None:
    """Raise a ValueError naming ``path`` and the fix unless it matches the sha256 in ``weights/dit.json``."""
    if not path.is_file():
        raise ValueError(f"weights file {path} does not exist; {restore_hint(path)}")
    manifest = path.resolve().parent / "dit.json"
    if not manifest.is_file():
        raise ValueError(f"{manifest} does not exist; {restore_hint(manifest)}")
    entry = read_json(manifest)
    expected = entry.get("sha256") if isinstance(entry, dict) else None
    if not isinstance(expected, str):
        raise ValueError(f"{manifest} records no sha256 of {path.name}; {restore_hint(manifest)}")
    actual = file_sha256(path)
    if actual != expected:
        raise ValueError(
            f"weights file {path} has sha256 {actual[:16]}..., but {manifest.name} expects "
            f"{expected[:16]}...; {restore_hint(path)}"
        )


def load_reference_model(path: str | Path | None = None, check_sha256: bool = True) -> PortraitDiT:
    """The shipped FlashPortrait-style DiT (``small``) in eval mode, verified against ``weights/dit.json``."""
    path = Path(path) if path is not None else DEFAULT_WEIGHTS
    # Any spelling of a shipped file (relative, through a link) is checked like the default.
    if check_sha256 and path.resolve() in {p.resolve() for p in WORLD_DITS.values()}:
        verify_shipped_dit(path)
    if not path.exists():
        raise ValueError(
            f"weights file {path} does not exist; train one with "
            "`python -m reference_model.train_model --config small --out DIR` or pass path="
        )
    blob = torch.load(path, map_location="cpu", weights_only=True)
    model = PortraitDiT(DiTConfig(**blob["config"]))
    model.load_state_dict(blob["state_dict"])
    return model.eval().requires_grad_(False)


@torch.no_grad()
def animate(
    model: PortraitDiT,
    reference: Tensor,
    driving: Tensor,
    autoencoder=None,
    extractor=None,
    setting: str = "baseline",
    steps: int = 30,
    seed: int = 0,
    guidance: Guidance | None = None,
) -> Tensor:
    """Animate ``reference`` frames ``[B, 3, H, W]`` with the motion of ``driving`` ``[B, 3, T, H, W]``; returns frames."""
    if autoencoder is None:
        from reference_model.autoencoder import load_autoencoder

        autoencoder = load_autoencoder()
    if extractor is None:
        from reference_model.expression import load_expression_extractor

        extractor = load_expression_extractor()
    ref_latent = model.normalize_latent(encode_video(autoencoder, reference[:, :, None]))[:, :, 0]
    expression = extract_video(extractor, driving)
    latents = generate(
        model,
        ref_latent,
        expression,
        setting=setting,
        steps=steps,
        seed=seed,
        guidance=guidance,
    )
    return decode_video(autoencoder, model.denormalize_latent(latents))


__all__ = [
    "CONFIGS",
    "animate",
    "decode_video",
    "encode_video",
    "export_weights",
    "extract_video",
    "load_reference_model",
]


WORLD_NETWORKS = ("autoencoder.pt", "expression.pt", "identity.pt")


class ReferencePortraitModel:
    """A reference DiT with its world (renderer, autoencoder, extractor), as flashbench's ``PortraitModel``.

    ``world`` picks the world version (``reference_model.world.versions``) whose clips the
    cases are and whose networks encode, decode and measure them: ``v1`` (the first testbed,
    ``weights/``) or ``v2`` (hidden scene dynamics, ``weights_v2/``; MODEL_CARD_V2.md).
    """

    name = "reference"
    fps = 25
    cond_keys = ("reference_latent", "expression")  # make_cond's entries
    pixels_per_latent = 4  # the autoencoder's downsampling
    # What it offers the metrics beyond the PortraitModel protocol (flashbench.models.registry.ModelSpec).
    provides = (
        "identity_encoder",
        "identity_calibration",
        "expression_extractor",
        "pose_extractor",
        "face_features_extractor",
        "background_mask",
    )

    def __init__(self, weights: str | Path | None = None, world: str = "v1") -> None:
        from reference_model.autoencoder import load_autoencoder
        from reference_model.expression import load_expression_extractor
        from reference_model.world import SPLITS

        self.world = world
        self.world_weights = WORLD_WEIGHTS[world]
        self.splits = SPLITS
        dit = Path(weights) if weights is not None else WORLD_DITS[world]
        self.denoiser = load_reference_model(dit)
        self.autoencoder = load_autoencoder(self.world_weights)
        self.extractor = load_expression_extractor(self.world_weights)
        # The autoencoder decodes every frame and the extractor makes the condition, so a
        # change to either changes results as much as the DiT's own weights do.
        networks = read_manifest(self.world_weights)
        self._hashes = {
            dit.name: file_sha256(dit),
            **{name: networks[name]["sha256"] for name in WORLD_NETWORKS},
        }

    def latent_shape(self, case):
        """The latent ``case`` samples, without preparing it (the memory planner's input)."""
        size = self.pixels_per_latent * self.denoiser.config.latent_size
        if case.resolution != size:
            raise ValueError(
                f"resolution={case.resolution}: the reference model runs at {size}; set resolution = {size}"
            )
        cfg = self.denoiser.config
        return (1, cfg.latent_channels, case.frames, cfg.latent_size, cfg.latent_size)

    def prepare(self, case):
        """Reference frame, driving video, ground truth and conditioning of one suite case."""
        from reference_model.dit import make_cond
        from reference_model.world_cases import render_case

        shape = self.latent_shape(case)
        reference, driving, truth = render_case(case, world=self.world)
        with torch.no_grad():
            reference_latent = self.denoiser.normalize_latent(
                encode_video(self.autoencoder, reference[None, :, None])
            )[:, :, 0]
            expression = extract_video(self.extractor, driving.transpose(0, 1)[None])
        cond = make_cond(reference_latent, expression)
        return CaseInputs(cond, shape, reference, truth, driving)

    def decode(self, latents: Tensor) -> Tensor:
        """Frames ``[T, 3, H, W]`` of the first video of normalised latents ``[B, C, T, h, w]``."""
        with torch.no_grad():
            return decode_video(self.autoencoder, self.denoiser.denormalize_latent(latents[:1]))[
                0
            ].transpose(0, 1)

    def expression_extractor(self):
        """Frames -> the extractor's eyes, brows and mouth features (AED)."""
        return lambda frames: self.extractor(frames)[:, 3:]

    def pose_extractor(self):
        """Frames -> the extractor's head yaw, pitch and roll (APD)."""
        return lambda frames: self.extractor(frames)[:, :3]

    def identity_encoder(self):
        from reference_model.identity import load_identity_encoder

        return load_identity_encoder(self.world_weights)

    def face_features_extractor(self):
        """Frames -> the extractor's seven features (yaw, pitch, roll, eye_open, brow_raise, mouth_open, smile)."""
        return self.extractor

    def identity_calibration(self):
        """The world's identity encoder's calibration (0 = own frames, 1 = the median other identity)."""
        from reference_model.calibration import load_identity_calibration

        return load_identity_calibration(self.world_weights)

    def background_mask(self, case) -> Tensor:
        """``[H, W]`` bool: the pixels of a case where only a still background shows in every frame.

        World v2's background drifts, its light changes and its grain moves: no pixel is still.
        """
        from reference_model.world import driving_sequence, identity_params, static_background

        if self.world != "v1":
            return torch.zeros(case.resolution, case.resolution, dtype=torch.bool)
        motion = driving_sequence(case.driving_seed, case.frames)[None]
        return static_background(identity_params([case.identity]), motion, case.resolution)[0]

    def weights(self) -> dict[str, str]:
        """sha256 of the DiT and of the world networks its outputs and metrics pass through."""
        return dict(self._hashes)


def portrait_model(**kwargs) -> ReferencePortraitModel:
    """The reference model for flashbench suites (``model = "reference"``)."""
    return ReferencePortraitModel(**kwargs)


# ---- the flashbench model registry's entry ("reference_model.pipeline:load_reference") ----


def _short(value: Any) -> str:
    return reprlib.repr(value)


def _train_command(path: Path, variant: str | None, world: str = "v1") -> str:
    """The command that writes the checkpoint ``path`` (train_model exports ``<out>/dit_<config>.pt``).

    ``OUT/VARIANT/dit_small.pt`` is the NFEB ablation's layout: its driver trains all five alike.
    """
    if world == "v2":
        return f"OUT={path.parent} bash reference_model/train_v2.sh"
    if variant is not None and path.parent.name == variant and path.name == "dit_small.pt":
        return f"python -m reference_model.train_nfeb {path.parent.parent}"
    config = path.stem.removeprefix("dit_") if path.stem.startswith("dit_") else "small"
    return (
        f"python -m reference_model.train_model --config {config} --nfeb {variant or 'VARIANT'} "
        f"--out {path.parent}"
    )


def check_reference_args(
    weights: str | None = None, variant: str | None = None, world: str = "v1"
) -> ModelSpec:
    """Check a ``reference`` model's parameters without building it: the checkpoint exists and holds ``variant``.

    ``weights``: a checkpoint of ``reference_model.train_model`` (default: the world's shipped
    ``paper`` weights); relative paths are read from the working directory. ``variant``: the
    NFEB variant the suite expects; the checkpoint's own config decides, so a mislabelled
    checkpoint is refused rather than silently measured under the wrong name. ``world``: the
    world version (``v1``, ``v2``) whose clips and networks the model uses.
    """
    from reference_model.world import SPLITS
    from reference_model.world.versions import WORLDS

    if not isinstance(world, str) or world not in WORLDS:
        close = difflib.get_close_matches(str(world), WORLDS, n=1, cutoff=0.3)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ValueError(
            f"world={_short(world)} is not a world version; {hint}use one of {', '.join(WORLDS)}"
        )

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
        path = Path(weights).expanduser() if weights is not None else WORLD_DITS[world]
        shipped = path.resolve() in {p.resolve() for p in WORLD_DITS.values()}
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
            f"weights file {str(path)!r} does not exist{where}; make it with `{_train_command(path, variant, world)}`"
        )
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        config = DiTConfig(**blob["config"])
        actual, latent_size = config.variant, config.latent_size
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
        cond_parts=config.cond_parts,
    )


def load_reference(
    weights: str | None = None, variant: str | None = None, world: str = "v1"
) -> PortraitModel:
    """The FlashPortrait reference model (``reference_model.pipeline.portrait_model``) as a PortraitModel."""
    check_reference_args(weights, variant, world)
    return portrait_model(weights=weights, world=world)
