"""Identity encoder: frames -> L2-normalised identity embeddings, trained with ArcFace.

The in-world analogue of ArcFace (Deng et al., 2019, arXiv:1801.07698, "ArcFace: Additive
Angular Margin Loss for Deep Face Recognition"): a small CNN whose embeddings are trained
through an additive angular margin softmax over training identities rendered under random
expression and pose, and judged by same-vs-different verification on unseen identities.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from reference_model.shipped_weights import load_network
from reference_model.world import identity_params, random_expression, render, split_ids


@dataclass(frozen=True)
class IdentityConfig:
    """Widths of the identity encoder."""

    width: int = 24
    embedding_dim: int = 64
    input_size: int = 32  # identity lives in colours and proportions; 32x32 is enough


class IdentityEncoder(nn.Module):
    """Frames ``[N, 3, H, W]`` in [0, 1] -> unit-norm embeddings ``[N, embedding_dim]``."""

    def __init__(self, config: IdentityConfig = IdentityConfig()) -> None:
        super().__init__()
        self.config = config
        w = config.width
        self.net = nn.Sequential(
            nn.Conv2d(3, w, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(w, 2 * w, 4, stride=2, padding=1),  # 16x16
            nn.SiLU(),
            nn.Conv2d(2 * w, 2 * w, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(2 * w, 4 * w, 4, stride=2, padding=1),  # 8x8
            nn.SiLU(),
            nn.Conv2d(4 * w, 4 * w, 4, stride=2, padding=1),  # 4x4
            nn.SiLU(),
            nn.Flatten(),
            nn.Linear(4 * w * 16, 128),
            nn.SiLU(),
            nn.Linear(128, config.embedding_dim),
        )

    def forward(self, frames: Tensor) -> Tensor:
        if frames.ndim != 4 or frames.shape[1] != 3:
            raise ValueError(f"frames must be [N, 3, H, W], got {tuple(frames.shape)}")
        size = self.config.input_size
        if frames.shape[-2:] != (size, size):
            frames = nn.functional.interpolate(
                frames, size=(size, size), mode="bilinear", align_corners=False, antialias=True
            )
        return nn.functional.normalize(self.net(frames * 2.0 - 1.0), dim=1)


class ArcFaceHead(nn.Module):
    """Additive angular margin softmax loss: logits s * cos(theta + m) for the true class."""

    def __init__(
        self, embedding_dim: int, classes: int, scale: float = 30.0, margin: float = 0.3
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(classes, embedding_dim) * 0.01)
        self.scale = scale
        self.margin = margin

    def forward(self, embeddings: Tensor, labels: Tensor) -> tuple[Tensor, float]:
        """Loss and training accuracy for unit-norm ``embeddings`` and class ``labels``."""
        cosine = embeddings @ nn.functional.normalize(self.weight, dim=1).T
        theta = torch.acos(cosine.clamp(-1.0 + 1e-6, 1.0 - 1e-6))
        target = nn.functional.one_hot(labels, cosine.shape[1]).bool()
        # The margin only where it keeps the target logit monotone in theta (theta + m < pi).
        margined = torch.where(
            theta + self.margin < torch.pi, torch.cos(theta + self.margin), cosine - 1.0
        )
        logits = self.scale * torch.where(target, margined, cosine)
        accuracy = (cosine.argmax(1) == labels).float().mean().item()
        return nn.functional.cross_entropy(logits, labels), accuracy


def load_identity_encoder(weights_dir: Path | str | None = None) -> IdentityEncoder:
    """The shipped identity encoder (sha256-verified), in eval mode with gradients off."""
    return load_network(
        "identity", lambda config: IdentityEncoder(IdentityConfig(**config)), weights_dir
    )


def roc_auc(scores: Tensor, positive: Tensor) -> float:
    """Area under the ROC curve (Mann-Whitney statistic, ties counted half)."""
    scores = scores.double()
    pos, neg = scores[positive], scores[~positive]
    if len(pos) == 0 or len(neg) == 0:
        raise ValueError("roc_auc needs both positive and negative pairs")
    ranks = torch.empty_like(scores)
    order = scores.argsort()
    ranks[order] = torch.arange(1, len(scores) + 1, dtype=torch.float64)
    # Average ranks over ties.
    unique, inverse = torch.unique(scores, return_inverse=True)
    mean_rank = torch.zeros(len(unique), dtype=torch.float64).index_add_(0, inverse, ranks)
    mean_rank /= torch.bincount(inverse, minlength=len(unique)).double()
    rank_sum = mean_rank[inverse][positive].sum()
    return ((rank_sum - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg))).item()


@torch.no_grad()
def verification_auc(
    model: IdentityEncoder,
    split: str = "test",
    identities: int = 100,
    frames_per_identity: int = 4,
    size: int = 64,
    seed: int = 0,
) -> float:
    """Same-vs-different ROC AUC of cosine similarity over all frame pairs of ``split`` identities."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.tensor(list(split_ids(split))[:identities]).repeat_interleave(frames_per_identity)
    frames = render(identity_params(ids), random_expression(len(ids), generator), size)
    embeddings = model(frames)
    similarity = embeddings @ embeddings.T
    upper = torch.triu(torch.ones_like(similarity, dtype=torch.bool), diagonal=1)
    same = ids[:, None] == ids[None, :]
    return roc_auc(similarity[upper], same[upper])
