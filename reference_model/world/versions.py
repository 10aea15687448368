"""The world's versions, selectable by name: ``world("v1")`` (the first testbed's) and ``world("v2")``.

v1 (``renderer.py``) draws a face from identity and expression alone: its frames are fixed by
the conditioning, and every shipped network and test pin them. v2 (``renderer_v2.py``) adds a
scene with hidden dynamics, drawn from a per-clip hidden seed (``hidden.py``). Both answer the
same calls; v1 ignores the hidden seed and the frame index.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from reference_model.world.renderer import expression_regions, render
from reference_model.world.renderer_v2 import expression_regions_v2, render_v2


@dataclass(frozen=True)
class World:
    """One version of the world: ``render(identity, expression, hidden_seed, frame, size)`` -> frames."""

    name: str
    description: str
    render: Callable[[Tensor, Tensor, Tensor, Tensor, int], Tensor]
    regions: Callable[..., Tensor]
    has_hidden: bool

    def render_video(
        self,
        identity: Tensor,
        expression: Tensor,
        hidden_seed: Tensor | int = 0,
        start: Tensor | int = 0,
        size: int = 64,
    ) -> Tensor:
        """Video ``[B, 3, T, size, size]`` of identities ``[B, 20]``, expressions ``[B, T, 7]``, hidden seeds and first frames ``[B]``."""
        if expression.ndim != 3:
            raise ValueError(f"expression must be [B, T, 7], got {tuple(expression.shape)}")
        b, t, _ = expression.shape
        seeds, frames = clip_frames(hidden_seed, start, b, t)
        out = self.render(
            identity.repeat_interleave(t, dim=0), expression.reshape(b * t, -1), seeds, frames, size
        )
        return out.view(b, t, 3, size, size).transpose(1, 2)


def clip_frames(
    hidden_seed: Tensor | int, start: Tensor | int, clips: int, frames: int
) -> tuple[Tensor, Tensor]:
    """Per-frame hidden seeds and frame indices ``[clips * frames]`` of clips starting at ``start``."""
    seeds = torch.as_tensor(hidden_seed, dtype=torch.int64).flatten().expand(clips)
    first = torch.as_tensor(start, dtype=torch.int64).flatten().expand(clips)
    index = (first[:, None] + torch.arange(frames)).reshape(-1)
    return seeds.repeat_interleave(frames), index


def _render_v1(
    identity: Tensor, expression: Tensor, hidden_seed: Tensor, frame: Tensor, size: int = 64
) -> Tensor:
    return render(identity, expression, size)


def _regions_v1(
    identity: Tensor,
    expression: Tensor,
    hidden_seed: Tensor,
    frame: Tensor,
    size: int = 64,
    **kwargs,
) -> Tensor:
    return expression_regions(identity, expression, size, **kwargs)


def _render_v2(
    identity: Tensor, expression: Tensor, hidden_seed: Tensor, frame: Tensor, size: int = 64
) -> Tensor:
    return render_v2(identity, expression, hidden_seed, frame, size)


WORLDS: dict[str, World] = {
    "v1": World(
        "v1",
        "faces alone: identity and expression fix every pixel (the first reference testbed)",
        _render_v1,
        _regions_v1,
        has_hidden=False,
    ),
    "v2": World(
        "v2",
        "faces in a scene with hidden dynamics: hair swing and strands, gaze, head micro-motion, "
        "breathing, drifting background lights and texture, clothing, changing light, film grain",
        _render_v2,
        expression_regions_v2,
        has_hidden=True,
    ),
}


def world(name: str) -> World:
    """The world version ``name``; an unknown name answers with the closest known ones."""
    if name not in WORLDS:
        close = difflib.get_close_matches(name, WORLDS, n=3, cutoff=0.3)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"world={name!r} is unknown{hint}; use one of {sorted(WORLDS)}")
    return WORLDS[name]
