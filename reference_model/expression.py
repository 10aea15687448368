"""Expression extractor: a frame -> part-structured expression/pose features.

The in-world analogue of FlashPortrait's PD-FGC motion extractor (Wang et al., 2023,
arXiv:2211.14506, "Progressive Disentangled Representation Learning for Fine-Grained
Controllable Talking Head Synthesis"): a small CNN trained across random identities to
regress the renderer's expression/pose parameters. Its features are those regressed
parameters, grouped by facial part, so they carry the expression and as little of the
identity as the regression errors leak (measured by ``identity_leakage``).

Feature layout (``[N, 7]``, same order as ``EXPRESSION_NAMES``)::

    pose  = [:, 0:3]  yaw, pitch, roll (radians)
    eyes  = [:, 3:4]  eye_open
    brows = [:, 4:5]  brow_raise
    mouth = [:, 5:7]  mouth_open, smile
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from reference_model.shipped_weights import load_network
from reference_model.world import (
    EXPRESSION_NAMES,
    NUM_EXPRESSION_PARAMS,
    expression_bounds,
    identity_params,
    random_expression,
    render,
    split_ids,
)

PARTS: dict[str, slice] = {
    "pose": slice(0, 3),
    "eyes": slice(3, 4),
    "brows": slice(4, 5),
    "mouth": slice(5, 7),
}


@dataclass(frozen=True)
class ExpressionConfig:
    """Widths of the expression extractor."""

    width: int = 32
    hidden: int = 128
    input_size: int = 64  # frames of another size are resized to this


def _down(c_in: int, c_out: int) -> nn.Sequential:
    # Stride first: the 3x3 convolution then runs at the lower resolution, four times cheaper.
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 4, stride=2, padding=1),
        nn.SiLU(),
        nn.Conv2d(c_out, c_out, 3, padding=1),
        nn.SiLU(),
    )


class ExpressionExtractor(nn.Module):
    """Frames ``[N, 3, H, W]`` in [0, 1] -> expression/pose features ``[N, 7]`` (see ``PARTS``)."""

    def __init__(self, config: ExpressionConfig = ExpressionConfig()) -> None:
        super().__init__()
        self.config = config
        w = config.width
        self.trunk = nn.Sequential(
            _down(3, w),  # 32x32
            _down(w, w * 2),  # 16x16
            _down(w * 2, w * 2),  # 8x8
            _down(w * 2, w * 3),  # 4x4
            nn.Flatten(),
            nn.Linear(w * 3 * 16, config.hidden),
            nn.SiLU(),
        )
        # One head per part, so each part's features come from its own projection.
        self.heads = nn.ModuleDict(
            {name: nn.Linear(config.hidden, part.stop - part.start) for name, part in PARTS.items()}
        )
        low, high = expression_bounds()
        self.register_buffer("param_centre", (low + high) / 2)
        self.register_buffer("param_scale", (high - low) / 2)

    def forward(self, frames: Tensor) -> Tensor:
        """Features ``[N, 7]``: the regressed parameters in ``EXPRESSION_NAMES`` order."""
        return torch.cat(list(self.parts(frames).values()), dim=1)

    def parts(self, frames: Tensor) -> dict[str, Tensor]:
        """Features split by part: ``{"pose": [N, 3], "eyes": [N, 1], "brows": [N, 1], "mouth": [N, 2]}``."""
        if frames.ndim != 4 or frames.shape[1] != 3:
            raise ValueError(f"frames must be [N, 3, H, W], got {tuple(frames.shape)}")
        size = self.config.input_size
        if frames.shape[-2:] != (size, size):
            frames = nn.functional.interpolate(
                frames, size=(size, size), mode="bilinear", align_corners=False
            )
        hidden = self.trunk(frames * 2.0 - 1.0)
        return {
            name: head(hidden) * self.param_scale[PARTS[name]] + self.param_centre[PARTS[name]]
            for name, head in self.heads.items()
        }


def load_expression_extractor(weights_dir: Path | str | None = None) -> ExpressionExtractor:
    """The shipped expression extractor (sha256-verified), in eval mode with gradients off."""
    return load_network(
        "expression", lambda config: ExpressionExtractor(ExpressionConfig(**config)), weights_dir
    )


def r2_per_part(prediction: Tensor, target: Tensor) -> dict[str, float]:
    """Coefficient of determination per part (mean over the part's parameters)."""
    residual = (prediction - target).double().square().sum(0)
    total = (target - target.mean(0)).double().square().sum(0).clamp(min=1e-12)
    r2 = 1.0 - residual / total
    return {name: r2[part].mean().item() for name, part in PARTS.items()}


@torch.no_grad()
def identity_leakage(
    model: ExpressionExtractor,
    split: str = "test",
    identities: int = 50,
    frames_per_identity: int = 20,
    size: int = 64,
    seed: int = 0,
) -> dict[str, float]:
    """Held-out accuracy of a linear probe from features to identity, next to chance.

    The probe is a ridge-regularised least-squares classifier on one-hot identity targets,
    fit on half the frames of each identity and scored on the other half.
    """
    generator = torch.Generator().manual_seed(seed)
    ids = torch.tensor(list(split_ids(split))[:identities]).repeat_interleave(frames_per_identity)
    labels = torch.arange(identities).repeat_interleave(frames_per_identity)
    frames = render(identity_params(ids), random_expression(len(ids), generator), size)
    features = model(frames).double()
    features = (features - features.mean(0)) / features.std(0).clamp(min=1e-8)
    design = torch.cat([features, torch.ones(len(ids), 1, dtype=torch.float64)], dim=1)
    fit = (torch.arange(len(ids)) % frames_per_identity) < frames_per_identity // 2
    targets = nn.functional.one_hot(labels, identities).double()
    gram = design[fit].T @ design[fit] + 1e-3 * torch.eye(design.shape[1], dtype=torch.float64)
    weights = torch.linalg.solve(gram, design[fit].T @ targets[fit])
    accuracy = ((design[~fit] @ weights).argmax(1) == labels[~fit]).double().mean().item()
    return {"probe_accuracy": accuracy, "chance": 1.0 / identities}


@torch.no_grad()
def evaluate_expression(
    model: ExpressionExtractor,
    split: str = "test",
    frames: int = 1024,
    size: int = 64,
    seed: int = 0,
    codec: nn.Module | None = None,
) -> dict[str, float]:
    """Held-out R^2 per part and identity leakage of ``model`` on identities of ``split``.

    With ``codec`` (the world autoencoder) the R^2 is also given on its reconstructions
    (``r2_codec_<part>``): the frames a latent video model can at best hand to the extractor.
    """
    generator = torch.Generator().manual_seed(seed)
    id_range = split_ids(split)
    ids = torch.randint(id_range.start, id_range.stop, (frames,), generator=generator)
    expression = random_expression(frames, generator)
    rendered = render(identity_params(ids), expression, size).split(256)
    prediction = torch.cat([model(f) for f in rendered])
    report = {f"r2_{name}": value for name, value in r2_per_part(prediction, expression).items()}
    if codec is not None:
        prediction = torch.cat([model(codec(f)) for f in rendered])
        report.update({f"r2_codec_{k}": v for k, v in r2_per_part(prediction, expression).items()})
    report.update({f"leakage_{k}": v for k, v in identity_leakage(model, split, size=size).items()})
    return report


__all__ = [
    "EXPRESSION_NAMES",
    "NUM_EXPRESSION_PARAMS",
    "PARTS",
    "ExpressionConfig",
    "ExpressionExtractor",
    "evaluate_expression",
    "identity_leakage",
    "load_expression_extractor",
    "r2_per_part",
]
