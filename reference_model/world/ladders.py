"""Exact ladders of the world, for validating metrics on inputs whose answer is known.

Identities are points in attribute space, so a face partway from A to B is the renderer run
on the blended attributes; motion is a parameter track, so holding one parameter still
(the eyes open through every blink) is the same track with that column replaced; and the
background is a layer under everything else, so where it shows is found by rendering twice
with two background colours. Nothing here changes what the renderer draws.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from reference_model.world.identities import ID_ATTRIBUTES, identity_params
from reference_model.world.renderer import (
    EXPRESSION_NAMES,
    NEUTRAL_EXPRESSION,
    _colours,
    render,
)

__all__ = [
    "background_colours",
    "background_visibility",
    "blend_identities",
    "freeze_parameters",
    "identity_ladder",
    "static_background",
]

_BACKGROUND_HUE = ID_ATTRIBUTES.index("background_hue")
_BACKGROUND_LIGHTNESS = ID_ATTRIBUTES.index("background_lightness")


def blend_identities(first: Tensor, second: Tensor, a: Tensor | float) -> Tensor:
    """Attributes ``(1 - a) * first + a * second``: ``a = 0`` is ``first``, ``a = 1`` is ``second``.

    ``first`` and ``second`` are ``[..., 20]`` attributes; ``a`` broadcasts against their
    leading dimensions (a float, or e.g. ``[T, 1]`` for an identity that drifts per frame).
    """
    a = torch.as_tensor(a, dtype=first.dtype)
    if ((a < 0) | (a > 1)).any():
        raise ValueError(f"a must lie in [0, 1], got values from {a.min():.3g} to {a.max():.3g}")
    return torch.lerp(first, second, a)


def identity_ladder(
    first_id: int, second_id: int, a_values: Sequence[float], expression: Tensor, size: int = 64
) -> Tensor:
    """Videos ``[len(a_values), 3, T, size, size]`` of identity ``first_id`` blended towards ``second_id``.

    Every rung moves with the same ``expression`` ``[T, 7]``, so rungs differ in identity
    alone; rung ``a = 0`` is ``render_video`` of ``first_id`` (to the 1e-6 of the renderer's
    feature windows, which are sized per batch).
    """
    if expression.ndim != 2:
        raise ValueError(f"expression must be [T, 7], got {tuple(expression.shape)}")
    first, second = identity_params([first_id, second_id])
    a = torch.tensor([float(v) for v in a_values])[:, None]
    rungs = blend_identities(first[None], second[None], a)
    frames = expression.shape[0]
    video = render(rungs.repeat_interleave(frames, dim=0), expression.repeat(len(rungs), 1), size)
    return video.view(len(rungs), frames, 3, size, size).transpose(1, 2)


def freeze_parameters(
    expression: Tensor, names: Sequence[str], values: Sequence[float] | None = None
) -> Tensor:
    """A copy of ``expression`` ``[..., 7]`` with the parameters ``names`` held at ``values``.

    By default each is held at its neutral value (``eye_open`` 0.85: eyes open, no blink).
    """
    unknown = [n for n in names if n not in EXPRESSION_NAMES]
    if unknown:
        raise ValueError(
            f"unknown expression parameters {unknown}; use names from {EXPRESSION_NAMES}"
        )
    if values is None:
        values = [NEUTRAL_EXPRESSION[EXPRESSION_NAMES.index(n)] for n in names]
    if len(values) != len(names):
        raise ValueError(f"{len(values)} values for {len(names)} names; give one value per name")
    frozen = expression.clone()
    for name, value in zip(names, values, strict=True):
        frozen[..., EXPRESSION_NAMES.index(name)] = value
    return frozen


def background_colours(identity: Tensor, size: int = 64) -> Tensor:
    """The background alone, ``[N, 3, size, size]``: the identity's colour in a vertical gradient."""
    grid = (torch.arange(size, dtype=torch.float32) + 0.5) * (2.0 / size) - 1.0
    # The renderer's background (renderer.draw_background): colour times 1.05 - 0.1 (y + 1).
    shade = (1.05 - 0.2 * (grid + 1.0) * 0.5).view(1, 1, size, 1)
    return (_colours(identity.float())["background"][:, :, None, None] * shade).expand(
        -1, -1, -1, size
    )


def background_visibility(identity: Tensor, expression: Tensor, size: int = 64) -> Tensor:
    """How much of the background shows at each pixel, ``[N, 1, size, size]`` in [0, 1] (0 under the head).

    Layers are blended over the background linearly, so a pixel's change when only the
    background colour changes is the background's change times its visibility. The two
    colours are dark enough that the renderer's final clamp to [0, 1] never touches them.
    """
    variants = []
    for hue in (0.0, 0.5):
        attributes = identity.clone()
        attributes[:, _BACKGROUND_HUE] = hue
        attributes[:, _BACKGROUND_LIGHTNESS] = 0.0
        variants.append(attributes)
    first, second = render(torch.cat(variants), expression.repeat(2, 1), size).chunk(2)
    full = background_colours(variants[0], size) - background_colours(variants[1], size)
    change = (first - second).abs().sum(dim=1, keepdim=True)
    return (change / full.abs().sum(dim=1, keepdim=True)).clamp(0.0, 1.0)


def static_background(
    identity: Tensor, expression: Tensor, size: int = 64, threshold: float = 0.999
) -> Tensor:
    """Masks ``[B, size, size]`` (bool) of the pixels where only background shows in every frame.

    ``identity`` ``[B, 20]``, ``expression`` ``[B, T, 7]``: the pixels that no head, hair or
    soft edge of them ever covers in the clip (visibility above ``threshold`` throughout),
    where the ground truth does not change at all.
    """
    if expression.ndim != 3:
        raise ValueError(f"expression must be [B, T, 7], got {tuple(expression.shape)}")
    batch, frames, _ = expression.shape
    visibility = background_visibility(
        identity.repeat_interleave(frames, dim=0), expression.reshape(batch * frames, -1), size
    )
    return (visibility.view(batch, frames, size, size) > threshold).all(dim=1)
