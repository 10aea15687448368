"""The second reference testbed's data: world v2 clips with hidden seeds, and its weights folder.

A clip of world v2 is an identity, a stretch ``[start, start + T)`` of a driving sequence and a
hidden seed; frame ``k`` of the clip is frame ``start + k`` of both the driving sequence and the
hidden scene, so crops and windows of a long clip see one continuous scene. Training draws
driving and hidden seeds below 10^6; held-out clips draw them at or above it.
"""

from __future__ import annotations

import torch
from torch import Tensor

from reference_model.lightning import with_random_face
from reference_model.shipped_weights import WEIGHTS_V2
from reference_model.world.hidden import HELD_OUT_OFFSET

__all__ = ["HELD_OUT_OFFSET", "WEIGHTS_V2", "draw_clips", "random_frames_v2", "render_clips_v2"]


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


def _render_chunk(job: tuple[dict[str, Tensor], Tensor, Tensor, int]) -> dict[str, Tensor]:
    """Render one chunk of clips from its drawn recipe (a pure function: any process may run it)."""
    from reference_model.world import identity_params
    from reference_model.world.renderer_v2 import expression_regions_v2, render_v2
    from reference_model.world.versions import clip_frames, world

    torch.set_num_threads(1)
    recipe, at, reference_face, size = job
    n, frames = recipe["motion"].shape[:2]
    references = at.shape[1]
    identity = identity_params(recipe["ids"])
    video = world("v2").render_video(
        identity, recipe["motion"], recipe["hidden_seed"], recipe["start"], size
    )
    out = {"videos": (video * 255).round().to(torch.uint8)}
    seeds, index = clip_frames(recipe["hidden_seed"], recipe["start"], n, frames)
    per_frame = (
        identity.repeat_interleave(frames, dim=0),
        recipe["motion"].reshape(n * frames, -1),
    )
    for key, params in (("regions", {}), ("eye_regions", {"params": ("eye_open",)})):
        mask = expression_regions_v2(*per_frame, seeds, index, size, **params)
        out[key] = mask.view(n, frames, 1, size, size).transpose(1, 2).to(torch.uint8)
    frame = render_v2(
        identity.repeat_interleave(references, dim=0),
        reference_face,
        recipe["hidden_seed"].repeat_interleave(references),
        (recipe["start"][:, None] + at).reshape(-1),
        size,
    )
    out["reference_videos"] = (
        (frame.view(n, references, 3, size, size).transpose(1, 2) * 255).round().to(torch.uint8)
    )
    for key in ("motion", "ids", "hidden_seed", "start"):
        out[key] = recipe[key]
    return out


def render_clips_v2(
    clips: int,
    frames: int,
    seed: int = 0,
    split: str = "train",
    size: int = 64,
    chunk: int = 32,
    references: int = 4,
    held_out: bool = False,
    workers: int = 1,
) -> dict[str, Tensor]:
    """``clips`` self-reenactment clips of world v2, in ``lightning.render_world_clips``' layout.

    ``videos`` uint8 ``[N, 3, T, size, size]``, ``motion`` ``[N, T, 7]``, ``regions`` and
    ``eye_regions`` uint8 ``[N, 1, T, size, size]`` (in each frame's hidden scene),
    ``reference_videos`` uint8 ``[N, 3, references, size, size]`` (the clip's face at random
    frames of the clip, eyes, brows and mouth drawn at random), and the recipes ``ids``,
    ``hidden_seed``, ``start`` ``[N]``. Every random draw is made first, in one process, so
    ``workers`` processes render the chunks to the same clips as one.
    """
    generator = torch.Generator().manual_seed(seed)
    other = torch.Generator().manual_seed(seed + 1_000_003)
    jobs = []
    for first in range(0, clips, chunk):
        n = min(chunk, clips - first)
        recipe = draw_clips(n, frames, generator, split, held_out)
        at = torch.randint(0, frames, (n, references), generator=other)
        expression = recipe["motion"][torch.arange(n)[:, None], at].reshape(n * references, -1)
        jobs.append((recipe, at, with_random_face(expression, other), size))
    if workers > 1:
        import multiprocessing

        with multiprocessing.get_context("fork").Pool(workers) as pool:
            chunks = pool.map(_render_chunk, jobs, chunksize=1)
    else:
        chunks = [_render_chunk(job) for job in jobs]
    return {key: torch.cat([c[key] for c in chunks]) for key in chunks[0]}


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
