"""The second reference testbed's data: world v2 clips with hidden seeds, and its weights folder.

A clip of world v2 is an identity, a stretch ``[start, start + T)`` of a driving sequence and a
hidden seed; frame ``k`` of the clip is frame ``start + k`` of both the driving sequence and the
hidden scene, so crops and windows of a long clip see one continuous scene. Training draws
driving and hidden seeds below 10^6; held-out clips draw them at or above it.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from reference_model.lightning import with_random_face

WEIGHTS_V2 = Path(__file__).resolve().parent / "weights_v2"
HELD_OUT_OFFSET = 1_000_000


def draw_clips(
    n: int, frames: int, generator: torch.Generator, split: str = "train", held_out: bool = False
) -> dict[str, Tensor]:
    """``n`` clip recipes: ``ids`` ``[n]``, ``motion`` ``[n, frames, 7]``, ``hidden_seed`` and ``start`` ``[n]``."""
    from reference_model.world import MotionConfig, driving_frames, sample_ids

    offset = HELD_OUT_OFFSET if held_out else 0
    ids = sample_ids(split, n, generator)
    seeds = torch.randint(0, HELD_OUT_OFFSET, (n,), generator=generator) + offset
    starts = torch.randint(0, 10_000, (n,), generator=generator)
    hidden = torch.randint(0, HELD_OUT_OFFSET, (n,), generator=generator) + offset
    config = MotionConfig()
    motion = torch.stack(
        [
            driving_frames(int(s), int(t), int(t) + frames, config)
            for s, t in zip(seeds, starts, strict=True)
        ]
    )
    return {"ids": ids, "motion": motion, "hidden_seed": hidden, "start": starts}


def render_clips_v2(
    clips: int,
    frames: int,
    seed: int = 0,
    split: str = "train",
    size: int = 64,
    chunk: int = 32,
    references: int = 4,
    held_out: bool = False,
) -> dict[str, Tensor]:
    """``clips`` self-reenactment clips of world v2, in ``lightning.render_world_clips``' layout.

    ``videos`` uint8 ``[N, 3, T, size, size]``, ``motion`` ``[N, T, 7]``, ``regions`` and
    ``eye_regions`` uint8 ``[N, 1, T, size, size]`` (in each frame's hidden scene),
    ``reference_videos`` uint8 ``[N, 3, references, size, size]`` (the clip's face at random
    frames of the clip, eyes, brows and mouth drawn at random), and the recipes ``ids``,
    ``hidden_seed``, ``start`` ``[N]``.
    """
    from reference_model.world import identity_params
    from reference_model.world.renderer_v2 import expression_regions_v2, render_v2
    from reference_model.world.versions import clip_frames, world

    v2 = world("v2")
    generator = torch.Generator().manual_seed(seed)
    other = torch.Generator().manual_seed(seed + 1_000_003)
    out: dict[str, list[Tensor]] = {
        k: []
        for k in (
            "videos",
            "motion",
            "regions",
            "eye_regions",
            "reference_videos",
            "ids",
            "hidden_seed",
            "start",
        )
    }
    for first in range(0, clips, chunk):
        n = min(chunk, clips - first)
        recipe = draw_clips(n, frames, generator, split, held_out)
        identity = identity_params(recipe["ids"])
        video = v2.render_video(
            identity, recipe["motion"], recipe["hidden_seed"], recipe["start"], size
        )
        out["videos"].append((video * 255).round().to(torch.uint8))
        seeds, index = clip_frames(recipe["hidden_seed"], recipe["start"], n, frames)
        per_frame = (
            identity.repeat_interleave(frames, dim=0),
            recipe["motion"].reshape(n * frames, -1),
        )
        for key, params in (("regions", {}), ("eye_regions", {"params": ("eye_open",)})):
            mask = expression_regions_v2(*per_frame, seeds, index, size, **params)
            out[key].append(mask.view(n, frames, 1, size, size).transpose(1, 2).to(torch.uint8))
        at = torch.randint(0, frames, (n, references), generator=other)
        expression = recipe["motion"][torch.arange(n)[:, None], at].reshape(n * references, -1)
        frame = render_v2(
            identity.repeat_interleave(references, dim=0),
            with_random_face(expression, other),
            recipe["hidden_seed"].repeat_interleave(references),
            (recipe["start"][:, None] + at).reshape(-1),
            size,
        )
        out["reference_videos"].append(
            (frame.view(n, references, 3, size, size).transpose(1, 2) * 255).round().to(torch.uint8)
        )
        for key in ("motion", "ids", "hidden_seed", "start"):
            out[key].append(recipe[key])
    return {k: torch.cat(v) for k, v in out.items()}


def random_frames_v2(
    split: str, n: int, size: int, generator: torch.Generator
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """``n`` random v2 renders of ``split``: frames, ids, expressions, hidden seeds, frame indices.

    Hidden seeds and frame indices are drawn from the training range for ``train``, from the
    held-out range otherwise.
    """
    from reference_model.world import identity_params, random_expression, sample_ids
    from reference_model.world.renderer_v2 import render_v2

    ids = sample_ids(split, n, generator)
    expression = random_expression(n, generator)
    offset = 0 if split == "train" else HELD_OUT_OFFSET
    hidden = torch.randint(0, HELD_OUT_OFFSET, (n,), generator=generator) + offset
    index = torch.randint(0, 10_000, (n,), generator=generator)
    return (
        render_v2(identity_params(ids), expression, hidden, index, size),
        ids,
        expression,
        hidden,
        index,
    )
