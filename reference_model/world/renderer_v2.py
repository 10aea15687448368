"""World v2's renderer: world v1's faces in a scene with hidden dynamics (``hidden.py``).

Same identities, same expression/pose parameters and the same face geometry as v1: v1's
drawing steps (``renderer.py``), given v2's head offset, gaze and neck cut, which leave v1's own
frames bit for bit as they were; around them, content that the reference image and the
driving features leave open, drawn from a per-clip hidden seed:
- the head moves a little against the body (micro-motion) and the body breathes;
- the hair swings on its own and carries a strand texture that flows;
- the eyes look around (gaze), which the expression features do not carry;
- the background holds drifting out-of-focus lights and a moving wave texture;
- clothing with a hidden colour and stripes at the bottom of the frame;
- the scene's light changes slowly (gain, a slope across the frame, colour temperature);
- film grain.
A frame is a pure function of (identity, expression, hidden seed, frame index).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from reference_model.world.hidden import HiddenConfig, grain_noise, hidden_state
from reference_model.world.identities import NUM_ID_ATTRIBUTES
from reference_model.world.renderer import (
    EXPRESSION_NAMES,
    FACE_PARAMS,
    NUM_EXPRESSION_PARAMS,
    Frames,
    changed_pixels,
    cov,
    draw_background,
    draw_eyes_and_brows,
    draw_glasses,
    draw_mouth,
    draw_neck_and_face,
    draw_nose,
    ellipse_sd,
    hsv,
    lerp,
    moved_to_bounds,
    over,
)


def _over_map(canvas: Tensor, colour: Tensor, alpha: Tensor) -> None:
    """Composite a per-pixel ``colour`` ([N, 3, H, W]) with coverage ``alpha`` ([N, H, W]), in place."""
    canvas.lerp_(colour, alpha[:, None])


def _check(identity: Tensor, expression: Tensor, hidden_seed: Tensor, frame: Tensor) -> None:
    if identity.ndim != 2 or identity.shape[1] != NUM_ID_ATTRIBUTES:
        raise ValueError(
            f"identity must be [N, {NUM_ID_ATTRIBUTES}], got {tuple(identity.shape)}; "
            "use identity_params(ids)"
        )
    if expression.ndim != 2 or expression.shape[1] != NUM_EXPRESSION_PARAMS:
        raise ValueError(
            f"expression must be [N, {NUM_EXPRESSION_PARAMS}] ({', '.join(EXPRESSION_NAMES)}), "
            f"got {tuple(expression.shape)}"
        )
    n = identity.shape[0]
    for name, value in (("expression", expression), ("hidden_seed", hidden_seed), ("frame", frame)):
        if value.shape[0] != n:
            raise ValueError(
                f"identity has {n} rows but {name} has {value.shape[0]}; give one per frame"
            )


def render_v2(
    identity: Tensor,
    expression: Tensor,
    hidden_seed: Tensor,
    frame: Tensor,
    size: int = 64,
    chunk: int | None = None,
    config: HiddenConfig | None = None,
) -> Tensor:
    """Frames ``[N, 3, size, size]`` in [0, 1] of world v2.

    ``identity`` ``[N, 20]``, ``expression`` ``[N, 7]`` as in v1; ``hidden_seed`` ``[N]`` (int,
    one per clip, never given to a model) and ``frame`` ``[N]`` (each frame's index in its clip)
    pick the hidden scene.
    """
    hidden_seed = torch.as_tensor(hidden_seed, dtype=torch.int64).flatten()
    frame = torch.as_tensor(frame, dtype=torch.int64).flatten()
    _check(identity, expression, hidden_seed, frame)
    if size < 16:
        raise ValueError(f"size={size} is too small for world v2's scene; use size >= 16")
    if chunk is None:
        chunk = max(1, 2**23 // size**3)
    if chunk < 1:
        raise ValueError(f"chunk={chunk} must be positive; use e.g. chunk=32")
    frames = torch.empty(identity.shape[0], 3, size, size)
    scratch = torch.empty(min(chunk, identity.shape[0]), 3, size, size)
    for i in range(0, identity.shape[0], chunk):
        canvas = frames[i : i + chunk]
        state = hidden_state(hidden_seed[i : i + chunk], frame[i : i + chunk], config)
        _render_chunk(
            identity[i : i + chunk],
            expression[i : i + chunk],
            state,
            grain_noise(hidden_seed[i : i + chunk], frame[i : i + chunk], size),
            canvas,
            scratch[: canvas.shape[0]],
        )
    return frames


def _draw_scene(canvas: Tensor, f: Frames, state: dict[str, Tensor]) -> None:
    """Over v1's gradient: a moving wave texture and drifting out-of-focus lights."""
    gx, gy, colour = f.gx, f.gy, f.colours["background"]
    tex = state["texture"][:, :, None, None]
    along = gx * tex[:, 0] + gy * tex[:, 1]
    across = gx * tex[:, 1] - gy * tex[:, 0]
    wave = torch.sin(along * tex[:, 2] + tex[:, 3]) * torch.sin(
        across * (0.6 * tex[:, 2]) - 0.5 * tex[:, 3]
    )
    canvas.mul_(wave.mul_(tex[:, 4]).add_(1.0)[:, None])
    for b in range(state["blob_x"].shape[1]):
        bx = state["blob_x"][:, b, None, None]
        by = state["blob_y"][:, b, None, None]
        radius = state["blob_radius"][:, b, None, None]
        distance = ((gx - bx).square() + (gy - by).square()).add_(1e-8).sqrt_().sub_(radius)
        # Out of focus: a soft edge a few pixels wide, and translucent.
        alpha = cov(distance, 4.0 * f.soft).mul_(0.6)
        tone = (colour * (1.0 + 0.6 * state["blob_colour"][:, b]) + 0.2).clamp(0.0, 1.0)
        over(canvas, tone, alpha)


def _draw_clothing(canvas: Tensor, f: Frames, state: dict[str, Tensor]) -> None:
    """Clothing of a hidden colour and stripes below the neck, rising and falling with the breath."""
    n, size = f.n, f.size
    cloth = state["clothing"]
    cloth_colour = hsv(cloth[:, 0], cloth[:, 1], cloth[:, 2])
    body_y = f.gy - state["body_dy"][:, None, None]
    shoulders = (0.74 + 0.35 * f.gx.square()) - body_y
    stripes = (
        torch.sin(body_y * cloth[:, 3, None, None] + cloth[:, 4, None, None]).mul_(0.12).add_(1.0)
    )
    cloth_map = cloth_colour[:, :, None, None] * stripes[:, None]
    _over_map(
        canvas,
        cloth_map.expand(n, 3, size, size),
        cov(shoulders.expand(n, size, size).clone(), f.soft),
    )


def _draw_hair(canvas: Tensor, f: Frames, h: Callable[[str], Tensor]) -> Tensor:
    """v1's hair, swinging on its own (more at the tips) with flowing strands; returns its colour map."""
    x, y = f.x, f.y
    hair_shift_x = -0.10 * f.sin_yaw
    hair_shift_y = -0.06 * f.sin_pitch
    swing = h("sway") * ((y + 0.3) / 0.9).clamp(0.0, 1.3)
    hair_x = x - hair_shift_x - swing
    strands = (
        torch.sin(
            (x - 0.5 * swing) * h("strand_freq") + 3.0 * torch.sin(2.5 * y) + h("strand_phase")
        )
        .mul_(h("strand_amplitude"))
        .add_(1.0)
    )
    hair_map = (f.colours["hair"][:, :, None, None] * strands[:, None]).clamp_(0.0, 1.0)
    back = ellipse_sd(hair_x, y - (hair_shift_y - 0.06), f.face_a + 0.08, f.face_b + 0.06)
    hair_len = lerp(f.p("hair_length"), 0.0, 0.75)
    curtain = hair_x.abs().sub_(f.face_a + 0.07)
    torch.maximum(curtain, (y - 0.35 * hair_len).abs_().sub_(0.35 * hair_len), out=curtain)
    _over_map(canvas, hair_map, cov(torch.minimum(back, curtain, out=back), f.soft))
    return hair_map


def _draw_fringe(
    canvas: Tensor, f: Frames, face_sd: Tensor, hair_map: Tensor, h: Callable[[str], Tensor]
) -> None:
    """v1's fringe, its wave following the hair's swing, in the hair's strands."""
    x, face_a, face_b = f.x, f.face_a, f.face_b
    depth = lerp(f.p("fringe"), 0.05, 0.45) * face_b
    line = torch.sin((x * 18.0).add_(f.p("fringe") * 20.0).add_(h("sway") * 12.0)).mul_(0.03)
    line.addcmul_(x.square(), 0.1 * depth / face_a.square()).add_(depth - face_b)
    fringe = face_sd.sub_(0.01)
    torch.maximum(fringe, line.neg_().add_(f.y), out=fringe)
    _over_map(canvas, hair_map, cov(fringe, f.soft))


def _draw_light_and_grain(
    canvas: Tensor, f: Frames, state: dict[str, Tensor], grain: Tensor
) -> None:
    """The scene's light (gain, a slope across the frame, colour temperature), then film grain."""
    lighting = state["light"][:, :, None, None]
    field = (f.gx * lighting[:, 1] + f.gy * lighting[:, 2]).add_(1.0 + lighting[:, 0])
    canvas.mul_(field[:, None]).mul_(1.0 + state["tint"][:, :, None, None])
    canvas.add_(grain.mul_(state["grain"][:, None, None, None]))


def _render_chunk(
    identity: Tensor,
    expression: Tensor,
    state: dict[str, Tensor],
    grain: Tensor,
    canvas: Tensor,
    scratch: Tensor,
) -> None:
    """Draw frames into ``canvas`` ``[N, 3, size, size]``: v1's layers, with v2's in between."""

    def h(name: str) -> Tensor:
        return state[name][:, None, None]

    # The head is translated by micro-motion and breathing.
    f = Frames(identity, expression, canvas.shape[-1], offset=(h("head_dx"), h("head_dy")))
    draw_background(canvas, f)
    _draw_scene(canvas, f, state)
    _draw_clothing(canvas, f, state)
    hair_map = _draw_hair(canvas, f, h)
    # The neck meets the clothing in a V.
    v_neck = (f.gy - h("body_dy") - 0.74) - 0.9 * (0.22 - (f.gx - h("head_dx") * 0.5).abs())
    face_sd = draw_neck_and_face(canvas, scratch, f, neck_cut=v_neck)
    # The iris and pupil look where the hidden gaze points.
    eye_w, eye_centres = draw_eyes_and_brows(canvas, f, gaze=(h("gaze_x"), h("gaze_y")))
    draw_nose(canvas, f)
    draw_mouth(canvas, f)
    _draw_fringe(canvas, f, face_sd, hair_map, h)
    draw_glasses(canvas, f, eye_w, eye_centres)
    _draw_light_and_grain(canvas, f, state, grain)
    canvas.clamp_(0.0, 1.0)


def render_video_v2(
    identity: Tensor,
    expression: Tensor,
    hidden_seed: Tensor,
    start: Tensor | int = 0,
    size: int = 64,
    config: HiddenConfig | None = None,
) -> Tensor:
    """Video ``[B, 3, T, size, size]``: identities ``[B, 20]``, expressions ``[B, T, 7]``, hidden seeds ``[B]``, first frame indices ``start`` ``[B]``."""
    if expression.ndim != 3:
        raise ValueError(
            f"expression must be [B, T, {NUM_EXPRESSION_PARAMS}], got {tuple(expression.shape)}"
        )
    b, t, _ = expression.shape
    hidden_seed = torch.as_tensor(hidden_seed, dtype=torch.int64).flatten().expand(b)
    start = torch.as_tensor(start, dtype=torch.int64).flatten().expand(b)
    frame = (start[:, None] + torch.arange(t)).reshape(-1)
    frames = render_v2(
        identity.repeat_interleave(t, dim=0),
        expression.reshape(b * t, -1),
        hidden_seed.repeat_interleave(t),
        frame,
        size,
        config=config,
    )
    return frames.view(b, t, 3, size, size).transpose(1, 2)


def expression_regions_v2(
    identity: Tensor,
    expression: Tensor,
    hidden_seed: Tensor,
    frame: Tensor,
    size: int = 64,
    threshold: float = 0.05,
    params: tuple[str, ...] = FACE_PARAMS,
) -> Tensor:
    """v1's ``expression_regions`` in world v2: the pixels that ``params`` move in this hidden scene, ``[N, 1, size, size]``."""
    hidden_seed = torch.as_tensor(hidden_seed, dtype=torch.int64).flatten()
    frame = torch.as_tensor(frame, dtype=torch.int64).flatten()
    fa, fb = render_v2(
        identity.repeat(2, 1),
        moved_to_bounds(expression, params),
        hidden_seed.repeat(2),
        frame.repeat(2),
        size,
    ).chunk(2)
    return changed_pixels(fa, fb, threshold)


__all__ = ["expression_regions_v2", "render_v2", "render_video_v2"]
