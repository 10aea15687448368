"""World v2's renderer: world v1's faces in a scene with hidden dynamics (``hidden.py``).

Same identities, same expression/pose parameters and the same face geometry as v1
(``renderer.py``, which stays as it is); around them, content that the reference image and the
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

import torch
from torch import Tensor

from reference_model.world.hidden import HiddenConfig, grain_noise, hidden_state
from reference_model.world.identities import ID_ATTRIBUTES, NUM_ID_ATTRIBUTES
from reference_model.world.renderer import (
    _CUTOFF,
    EXPRESSION_NAMES,
    FACE_PARAMS,
    NUM_EXPRESSION_PARAMS,
    _colours,
    _cov,
    _ellipse_sd,
    _hsv,
    _lerp,
    _over,
    _thin_ellipse_sd,
    expression_bounds,
)

_A = {name: i for i, name in enumerate(ID_ATTRIBUTES)}


def _over_map(canvas: Tensor, colour: Tensor, alpha: Tensor) -> None:
    """Composite a per-pixel ``colour`` ([N, 3, H, W]) with coverage ``alpha`` ([N, H, W]), in place."""
    canvas.lerp_(colour, alpha[:, None])


class _Windows:
    """v1's per-frame pixel windows (``renderer._Windows``), with the head translated per frame."""

    def __init__(
        self,
        grid: Tensor,
        head_y: float,
        cos_roll: Tensor,
        sin_roll: Tensor,
        dx: Tensor,
        dy: Tensor,
    ) -> None:
        self.grid, self.head_y = grid, head_y
        self.cos_roll, self.sin_roll = cos_roll, sin_roll
        self.dx, self.dy = dx, dy  # [N, 1, 1]

    def head_coords(self, gx: Tensor, gy: Tensor, frames: Tensor) -> tuple[Tensor, Tensor]:
        cr, sr = self.cos_roll[frames], self.sin_roll[frames]
        dx, dy = gx - self.dx[frames], gy - self.head_y - self.dy[frames]
        return cr * dx + sr * dy, cr * dy - sr * dx

    def _span(self, low: Tensor, high: Tensor) -> tuple[Tensor, int]:
        size = self.grid.shape[0]
        first = torch.floor((low + 1.0) * (size / 2) - 0.5).long().clamp(0, size - 1)
        last = torch.ceil((high + 1.0) * (size / 2) - 0.5).long().clamp(0, size - 1)
        count = int((last - first).clamp(min=0).max()) + 1
        return first.clamp(max=size - count), count

    def take(
        self, canvas: Tensor, frames: Tensor, box: tuple[Tensor, Tensor, Tensor, Tensor]
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        size = self.grid.shape[0]
        x_low, x_high, y_low, y_high = (b.flatten() for b in box)
        cr, sr = self.cos_roll[frames].flatten(), self.sin_roll[frames].flatten()
        corners_x = torch.stack([x_low, x_low, x_high, x_high])
        corners_y = torch.stack([y_low, y_high, y_low, y_high])
        image_x = cr * corners_x - sr * corners_y + self.dx[frames].flatten()
        image_y = self.head_y + self.dy[frames].flatten() + sr * corners_x + cr * corners_y
        col0, w = self._span(image_x.min(0).values, image_x.max(0).values)
        row0, h = self._span(image_y.min(0).values, image_y.max(0).values)
        cols = col0[:, None] + torch.arange(w)
        rows = row0[:, None] + torch.arange(h)
        m = frames.shape[0]
        pixel = (rows[:, :, None] * size + cols[:, None, :]).view(m, 1, h * w)
        channel = (frames.view(m, 1, 1) * 3 + torch.arange(3).view(1, 3, 1)) * (size * size)
        index = channel + pixel
        x, y = self.head_coords(
            self.grid[cols].view(m, 1, w), self.grid[rows].view(m, h, 1), frames
        )
        return canvas.take(index).view(m, 3, h, w), x, y, index


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


def _background(
    canvas: Tensor, colour: Tensor, state: dict[str, Tensor], gx: Tensor, gy: Tensor, soft: float
) -> None:
    """v1's gradient, a moving wave texture and drifting out-of-focus lights."""
    n, size = canvas.shape[0], canvas.shape[-1]
    shade = (1.05 - 0.2 * (gy + 1.0) * 0.5).expand(n, size, size)
    torch.mul(colour[:, :, None, None], shade[:, None], out=canvas)
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
        alpha = _cov(distance, 4.0 * soft).mul_(0.6)
        tone = (colour * (1.0 + 0.6 * state["blob_colour"][:, b]) + 0.2).clamp(0.0, 1.0)
        _over(canvas, tone, alpha)


def _render_chunk(
    identity: Tensor,
    expression: Tensor,
    state: dict[str, Tensor],
    grain: Tensor,
    canvas: Tensor,
    scratch: Tensor,
) -> None:
    """Draw frames into ``canvas`` ``[N, 3, size, size]``; v1's layers, marked where v2 adds to them."""
    identity = identity.float()
    low, high = expression_bounds()
    expression = torch.minimum(torch.maximum(expression.float(), low), high)
    n, size = identity.shape[0], canvas.shape[-1]
    soft = 1.2 / size
    margin = _CUTOFF * soft

    def p(name: str) -> Tensor:
        return identity[:, _A[name], None, None]

    def e(name: str) -> Tensor:
        return expression[:, EXPRESSION_NAMES.index(name), None, None]

    def h(name: str) -> Tensor:
        return state[name][:, None, None]

    colours = _colours(identity)
    grid = (torch.arange(size, dtype=torch.float32) + 0.5) * (2.0 / size) - 1.0
    gx, gy = grid.view(1, 1, size), grid.view(1, size, 1)

    yaw, pitch, roll = e("yaw"), e("pitch"), e("roll")
    sin_yaw, cos_yaw = torch.sin(yaw), torch.cos(yaw)
    sin_pitch, cos_pitch = torch.sin(pitch), torch.cos(pitch)
    head_y = 0.06
    # v2: the head is translated by micro-motion and breathing.
    windows = _Windows(grid, head_y, torch.cos(roll), torch.sin(roll), h("head_dx"), h("head_dy"))
    every = torch.arange(n)
    x, y = windows.head_coords(gx, gy, every)

    face_a = _lerp(p("face_width"), 0.36, 0.48)
    face_b = _lerp(p("face_height"), 0.48, 0.60)

    _background(canvas, colours["background"], state, gx, gy, soft)

    # v2: clothing below the neck, rising and falling with the breath; the neck covers its V.
    cloth = state["clothing"]
    cloth_colour = _hsv(cloth[:, 0], cloth[:, 1], cloth[:, 2])
    body_y = gy - h("body_dy")
    shoulders = (0.74 + 0.35 * gx.square()) - body_y
    stripes = (
        torch.sin(body_y * cloth[:, 3, None, None] + cloth[:, 4, None, None]).mul_(0.12).add_(1.0)
    )
    cloth_map = cloth_colour[:, :, None, None] * stripes[:, None]
    _over_map(
        canvas,
        cloth_map.expand(n, 3, size, size),
        _cov(shoulders.expand(n, size, size).clone(), soft),
    )

    # v2: the hair swings on its own (more at the tips) and carries flowing strands.
    hair_shift_x = -0.10 * sin_yaw
    hair_shift_y = -0.06 * sin_pitch
    swing = h("sway") * ((y + 0.3) / 0.9).clamp(0.0, 1.3)
    hair_x = x - hair_shift_x - swing
    strands = (
        torch.sin(
            (x - 0.5 * swing) * h("strand_freq") + 3.0 * torch.sin(2.5 * y) + h("strand_phase")
        )
        .mul_(h("strand_amplitude"))
        .add_(1.0)
    )
    hair_map = (colours["hair"][:, :, None, None] * strands[:, None]).clamp_(0.0, 1.0)
    back = _ellipse_sd(hair_x, y - (hair_shift_y - 0.06), face_a + 0.08, face_b + 0.06)
    hair_len = _lerp(p("hair_length"), 0.0, 0.75)
    curtain = hair_x.abs().sub_(face_a + 0.07)
    torch.maximum(curtain, (y - 0.35 * hair_len).abs_().sub_(0.35 * hair_len), out=curtain)
    _over_map(canvas, hair_map, _cov(torch.minimum(back, curtain, out=back), soft))

    neck = x.abs().sub_(0.5 * face_a)
    torch.maximum(neck, (y - (face_b + 0.25)).abs_().sub_(0.35), out=neck)
    # The neck meets the clothing in a V.
    v_neck = (gy - h("body_dy") - 0.74) - 0.9 * (0.22 - (gx - h("head_dx") * 0.5).abs())
    torch.maximum(neck, v_neck.expand_as(neck), out=neck)
    skin_dark = colours["skin"] * 0.8
    _over(canvas, skin_dark, _cov(neck, soft))
    face_sd = _ellipse_sd(
        x, y, face_a * (0.92 + 0.08 * cos_yaw), face_b * (0.95 + 0.05 * cos_pitch)
    )
    light = torch.addcmul(1.0 + 0.132 * sin_yaw.square(), x, -0.22 * sin_yaw / face_a)
    light.addcmul_(y, -0.15 * sin_pitch / face_b)
    face_alpha = _cov(face_sd.clone(), soft)
    torch.mul(colours["skin"][:, :, None, None], light[:, None], out=scratch)
    canvas.lerp_(scratch, face_alpha[:, None])

    def place(
        x0: Tensor | float, y0: Tensor | float, depth: float
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        x0 = torch.as_tensor(x0, dtype=torch.float32)
        y0 = torch.as_tensor(y0, dtype=torch.float32)
        cx = x0 * cos_yaw + depth * sin_yaw
        cy = y0 * cos_pitch + depth * sin_pitch
        fx = torch.cos(
            torch.clamp(yaw + torch.asin(torch.clamp(x0 / 0.55, -1.0, 1.0) * 0.9), -1.45, 1.45)
        )
        fy = torch.cos(
            torch.clamp(pitch + torch.asin(torch.clamp(y0 / 0.65, -1.0, 1.0) * 0.9), -1.45, 1.45)
        )
        return cx, cy, fx, fy

    spacing = _lerp(p("eye_spacing"), 0.13, 0.21)
    eye_w = _lerp(p("eye_size"), 0.075, 0.105)
    eye_y = -0.06
    openness = e("eye_open")
    brow_raise = e("brow_raise")
    smile = e("smile")
    white = torch.tensor([[0.96, 0.96, 0.94]]).expand(n, 3)
    dark = torch.tensor([[0.06, 0.05, 0.05]]).expand(n, 3)
    thick = _lerp(p("brow_thickness"), 0.014, 0.03)
    eye_centres = []
    for side in (-1.0, 1.0):
        cx, cy, fx, fy = place(side * spacing, eye_y, 0.40)
        eye_centres.append((cx, cy, fx, fy))
        half_h = eye_w * 0.55 * fy * (0.04 + 0.96 * openness)
        half_w = eye_w * fx
        brow_y = cy - eye_w * 0.9 - 0.04 - 0.09 * brow_raise
        tilt = side * (0.25 * (brow_raise - 0.4) - 0.2 * torch.clamp(-smile, min=0.0))
        brow_w = eye_w * 1.25 * fx
        brow_h = thick * fy
        brow_reach = brow_h + margin + tilt.abs() * (brow_w + margin)
        eye_reach = torch.maximum(half_h, half_h * 0.6 + 0.012) + margin
        patch, x_eye, y_eye, index = windows.take(
            canvas,
            every,
            (
                cx - brow_w - margin,
                cx + brow_w + margin,
                torch.minimum(brow_y - brow_reach, cy - eye_reach),
                torch.maximum(brow_y + brow_reach, cy + eye_reach),
            ),
        )
        ex, ey = x_eye - cx, y_eye - cy
        inside = _cov(_thin_ellipse_sd(ex, ey, half_w, half_h), soft)
        lash = ex.abs().sub_(half_w)
        torch.maximum(lash, (ey - half_h * 0.6).abs_().sub_(0.012), out=lash)
        _over(patch, dark, _cov(lash, soft).mul_((1.0 - openness) * 0.8))
        _over(patch, white, inside)
        iris_r = eye_w * 0.5
        # v2: the iris and pupil look where the hidden gaze points.
        gaze_x = ex - h("gaze_x") * eye_w * fx
        gaze_y = ey - h("gaze_y") * eye_w * fy
        iris_d = (gaze_x / fx).square_().add_(gaze_y.square()).add_(1e-8).sqrt_()
        iris = _cov(iris_d - iris_r, soft)
        _over(patch, colours["eye"], torch.minimum(iris, inside, out=iris))
        pupil = _cov(iris_d.sub_(iris_r * 0.45), soft)
        _over(patch, dark, torch.minimum(pupil, inside, out=pupil))
        by = torch.addcmul(y_eye - brow_y, tilt, ex)
        brow = _thin_ellipse_sd(ex, by, brow_w, brow_h)
        _over(patch, colours["brow"], _cov(brow, soft))
        canvas.put_(index, patch)

    nose_len = _lerp(p("nose_length"), 0.08, 0.15)
    nose_w = _lerp(p("nose_width"), 0.035, 0.07)
    ncx, ncy, nfx, nfy = place(0.0, 0.07, 0.55)
    nx, ny = x - ncx, y - ncy
    nose_a = (ny * (0.2 / nose_len)).add_(0.8).clamp_(min=0.3).mul_(nose_w * nfx)
    nose = _ellipse_sd(nx, ny, nose_a, nose_len * nfy)
    _over(canvas, colours["skin"] * 0.72, _cov(nose, soft).mul_(0.85))

    mouth_w = _lerp(p("mouth_width"), 0.10, 0.17)
    mcx, mcy, mfx, mfy = place(0.0, 0.28, 0.45)
    half_w = mouth_w * mfx * (1.0 + 0.12 * smile.clamp(min=0.0))
    reach = 0.04 * smile.abs() + (0.10 * e("mouth_open") + 0.022) * mfy + margin
    patch, x_mouth, y_mouth, index = windows.take(
        canvas,
        every,
        (mcx - half_w - margin, mcx + half_w + margin, mcy - reach, mcy + reach),
    )
    mx, my = x_mouth - mcx, y_mouth - mcy
    t_square = (mx / half_w).clamp_(-1.0, 1.0).square_()
    bow = t_square.neg().add_(1.0)
    off = torch.addcmul(my - 0.02 * smile, t_square, 0.06 * smile).abs_()
    gap = bow * (0.10 * e("mouth_open") * mfy)
    lip_edge = bow.mul_(0.7 * 0.022 * mfy).add_(gap).add_(0.3 * 0.022 * mfy)
    mx_abs = mx.abs_()
    lips = mx_abs - half_w
    torch.maximum(lips, lip_edge.neg_().add_(off), out=lips)
    _over(patch, colours["lip"], _cov(lips, soft))
    inner = mx_abs.sub_(half_w * 0.85)
    torch.maximum(inner, off.sub_(gap), out=inner)
    _over(patch, torch.tensor([[0.25, 0.05, 0.07]]).expand(n, 3), _cov(inner, soft))
    canvas.put_(index, patch)

    # v2: the fringe's wave follows the hair's swing, and carries its strands.
    depth = _lerp(p("fringe"), 0.05, 0.45) * face_b
    line = torch.sin((x * 18.0).add_(p("fringe") * 20.0).add_(h("sway") * 12.0)).mul_(0.03)
    line.addcmul_(x.square(), 0.1 * depth / face_a.square()).add_(depth - face_b)
    fringe = face_sd.sub_(0.01)
    torch.maximum(fringe, line.neg_().add_(y), out=fringe)
    _over_map(canvas, hair_map, _cov(fringe, soft))

    wearers = (p("glasses") < 0.35).flatten().nonzero().flatten()
    if wearers.numel() > 0:
        ring_r = eye_w[wearers] * 1.35
        (lx, ly, lfx, _), (rx, ry, rfx, _) = (
            tuple(v[wearers] for v in centre_values) for centre_values in eye_centres
        )
        ring_reach = ring_r + 0.012 + margin
        patch, x_glasses, y_glasses, index = windows.take(
            canvas,
            wearers,
            (
                torch.minimum(
                    torch.minimum(lx - lfx * ring_reach, rx - rfx * ring_reach),
                    torch.minimum(lx, rx) - margin,
                ),
                torch.maximum(
                    torch.maximum(lx + lfx * ring_reach, rx + rfx * ring_reach),
                    torch.maximum(lx, rx) + margin,
                ),
                torch.minimum(ly, ry) - ring_reach,
                torch.maximum(ly, ry) + ring_reach,
            ),
        )
        rings = [
            (
                torch.sqrt(((x_glasses - cx) / fx).square() + (y_glasses - cy).square() + 1e-8)
                - ring_r
            ).abs()
            - 0.012
            for cx, cy, fx in ((lx, ly, lfx), (rx, ry, rfx))
        ]
        bridge = torch.maximum(
            (x_glasses - 0.5 * (lx + rx)).abs() - 0.5 * (rx - lx).abs(),
            (y_glasses - 0.5 * (ly + ry)).abs() - 0.01,
        )
        frame_sd = torch.minimum(torch.minimum(rings[0], rings[1]), bridge)
        _over(patch, colours["glasses"][wearers], _cov(frame_sd, soft))
        canvas.put_(index, patch)

    # v2: the scene's light (gain, a slope across the frame, colour temperature), then grain.
    lighting = state["light"][:, :, None, None]
    field = (gx * lighting[:, 1] + gy * lighting[:, 2]).add_(1.0 + lighting[:, 0])
    canvas.mul_(field[:, None]).mul_(1.0 + state["tint"][:, :, None, None])
    canvas.add_(grain.mul_(state["grain"][:, None, None, None]))
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
    unknown = sorted(set(params) - set(EXPRESSION_NAMES))
    if unknown:
        raise ValueError(f"params {unknown} are not expression parameters; use {EXPRESSION_NAMES}")
    low, high = expression_bounds()
    moved = [EXPRESSION_NAMES.index(name) for name in params]
    extremes = []
    for bound in (low, high):
        ex = expression.clone()
        ex[:, moved] = bound[moved]
        extremes.append(ex)
    hidden_seed = torch.as_tensor(hidden_seed, dtype=torch.int64).flatten()
    frame = torch.as_tensor(frame, dtype=torch.int64).flatten()
    fa, fb = render_v2(
        identity.repeat(2, 1), torch.cat(extremes), hidden_seed.repeat(2), frame.repeat(2), size
    ).chunk(2)
    changed = ((fa - fb).abs().amax(dim=1, keepdim=True) > threshold).float()
    return torch.nn.functional.max_pool2d(changed, 3, stride=1, padding=1)


__all__ = ["expression_regions_v2", "render_v2", "render_video_v2"]
