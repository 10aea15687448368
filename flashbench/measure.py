"""What a suite can measure: metric names, units, directions, references and backends, and their rows."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

SPEED_GROUP = ("wall_seconds", "nfe", "peak_bytes", "fps")


@dataclass(frozen=True)
class MetricSpec:
    """A metric as rows see it: unit, direction, what it compares against, which backends compute it."""

    name: str
    unit: str
    higher_is_better: bool | None
    references: tuple[str, ...]
    backends: tuple[str, ...]
    doc: str


METRICS: dict[str, MetricSpec] = {
    "psnr": MetricSpec(
        "psnr",
        "dB",
        True,
        ("ground_truth", "baseline", "reference_image"),
        ("torchmetrics",),
        "peak signal-to-noise ratio of frames in [0, 1]",
    ),
    "ssim": MetricSpec(
        "ssim",
        "",
        True,
        ("ground_truth", "baseline", "reference_image"),
        ("torchmetrics",),
        "structural similarity (Wang et al. 2004), Gaussian window",
    ),
    "id_sim": MetricSpec(
        "id_sim",
        "cosine",
        True,
        ("reference_image",),
        ("world-identity-encoder",),
        "cosine of identity embeddings of each frame and the reference image",
    ),
    "mae": MetricSpec(
        "mae",
        "",
        False,
        ("ground_truth", "baseline"),
        ("torchmetrics",),
        "mean absolute pixel error in [0, 1]",
    ),
}
SPEED: dict[str, tuple[str, bool | None]] = {
    "wall_seconds": ("s", False),
    "nfe": ("passes", None),
    "peak_bytes": ("bytes", None),
    "fps": ("frames/s", True),
}


def frame_values(metric: str, generated: Tensor, target: Tensor, identity=None) -> Tensor:
    """Per-frame values of ``metric`` for videos ``[T, 3, H, W]`` in [0, 1] (``target`` may be one image)."""
    from torchmetrics.functional.image import (
        peak_signal_noise_ratio,
        structural_similarity_index_measure,
    )

    generated = generated.double().clamp(0, 1)
    target = (
        target.double().clamp(0, 1).expand_as(generated)
        if target.ndim == 3
        else target.double().clamp(0, 1)
    )
    if metric == "psnr":
        return torch.stack(
            [
                peak_signal_noise_ratio(g[None], t[None], data_range=1.0)
                for g, t in zip(generated, target, strict=True)
            ]
        )
    if metric == "ssim":
        return structural_similarity_index_measure(
            generated, target, data_range=1.0, reduction="none"
        )
    if metric == "mae":
        return (generated - target).abs().flatten(1).mean(1)
    if metric == "id_sim":
        if identity is None:
            raise ValueError(
                "metric 'id_sim' needs an identity encoder; this model provides none, drop id_sim from metrics.names"
            )
        gen = torch.nn.functional.normalize(identity(generated.float()).double(), dim=-1)
        ref = torch.nn.functional.normalize(identity(target[:1].float()).double(), dim=-1)
        return (gen * ref).sum(-1)
    raise ValueError(f"unknown metric {metric!r}; known: {sorted(METRICS)}")
