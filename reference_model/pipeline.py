"""From frames to frames: encode, condition, sample and decode with the shipped portrait DiT."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from torch import Tensor

from reference_model.dit import CONFIGS, DiTConfig, PortraitDiT
from reference_model.lightning import generate

WEIGHTS_DIR = Path(__file__).parent / "weights"
DEFAULT_WEIGHTS = WEIGHTS_DIR / "dit_small.pt"


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
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    torch.save({"config": model.config.__dict__.copy(), "state_dict": state, "step": step}, path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_reference_model(path: str | Path | None = None, check_sha256: bool = True) -> PortraitDiT:
    """The shipped FlashPortrait-style DiT (``small``) in eval mode, verified against ``weights/dit.json``."""
    path = Path(path) if path is not None else DEFAULT_WEIGHTS
    if not path.exists():
        raise ValueError(
            f"weights file {path} does not exist; train one with "
            "`python -m reference_model.train_model --config small --out DIR` or pass path="
        )
    manifest = WEIGHTS_DIR / "dit.json"
    if check_sha256 and path == DEFAULT_WEIGHTS and manifest.exists():
        expected = json.loads(manifest.read_text())["sha256"]
        actual = hashlib.sha256(path.read_bytes()).hexdigest()
        if actual != expected:
            raise ValueError(
                f"{path} has sha256 {actual}, but dit.json expects {expected}; restore the file"
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
    guidance_scale: float | None = None,
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
        guidance_scale=guidance_scale,
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
