"""A vectorised procedural portrait renderer: identity + expression/pose -> RGB frames.

Every shape is soft: its coverage is a sigmoid of an (approximate) signed distance, about
one pixel wide, so frames are anti-aliased and smooth in every parameter. Layers are
composited back to front (background, hair, neck, face, eyes, brows, nose, mouth, fringe,
glasses). Head pose is a 2.5D approximation: roll rotates the head, yaw and pitch move the
facial features over a sphere-like surface (features nearer the viewer move more) and
foreshorten them, shift the hair the other way and shade the skin.
"""

from __future__ import annotations

import torch
from torch import Tensor

from reference_model.world.identities import ID_ATTRIBUTES, NUM_ID_ATTRIBUTES

EXPRESSION_NAMES: tuple[str, ...] = (
    "yaw",
    "pitch",
    "roll",
    "eye_open",
    "brow_raise",
    "mouth_open",
    "smile",
)
NUM_EXPRESSION_PARAMS = len(EXPRESSION_NAMES)
# Valid range of each expression/pose parameter (angles in radians).
EXPRESSION_RANGES: dict[str, tuple[float, float]] = {
    "yaw": (-0.6, 0.6),
    "pitch": (-0.35, 0.35),
    "roll": (-0.3, 0.3),
    "eye_open": (0.0, 1.0),
    "brow_raise": (0.0, 1.0),
    "mouth_open": (0.0, 1.0),
    "smile": (-1.0, 1.0),
}
NEUTRAL_EXPRESSION: tuple[float, ...] = (0.0, 0.0, 0.0, 0.85, 0.3, 0.0, 0.2)

_A = {name: i for i, name in enumerate(ID_ATTRIBUTES)}


def expression_bounds() -> tuple[Tensor, Tensor]:
    """Lower and upper bounds ``[NUM_EXPRESSION_PARAMS]`` of the expression parameters."""
    low = torch.tensor([EXPRESSION_RANGES[n][0] for n in EXPRESSION_NAMES])
    high = torch.tensor([EXPRESSION_RANGES[n][1] for n in EXPRESSION_NAMES])
    return low, high


def random_expression(n: int, generator: torch.Generator) -> Tensor:
    """``n`` expression/pose vectors drawn uniformly over their ranges, ``[n, 7]``."""
    low, high = expression_bounds()
    return low + (high - low) * torch.rand(n, NUM_EXPRESSION_PARAMS, generator=generator)


def hsv(h: Tensor, s: Tensor, v: Tensor) -> Tensor:
    """HSV (each ``[N]``, in [0, 1]) to RGB ``[N, 3]``."""
    k = torch.tensor([5.0, 3.0, 1.0])
    t = (k + h[:, None] * 6.0) % 6.0
    return v[:, None] - v[:, None] * s[:, None] * torch.clamp(torch.minimum(t, 4.0 - t), 0.0, 1.0)


def lerp(u: Tensor, low: float, high: float) -> Tensor:
    return low + (high - low) * u


def _colours(identity: Tensor) -> dict[str, Tensor]:
    """RGB ``[N, 3]`` of each coloured part of the identities."""
    a = identity

    def col(name: str) -> Tensor:
        return a[:, _A[name]]

    tone = col("skin_tone")
    skin = hsv(lerp(col("skin_hue"), 0.02, 0.10), lerp(tone, 0.25, 0.6), lerp(tone, 0.95, 0.45))
    hair_l = col("hair_lightness")
    hair = hsv(col("hair_hue"), lerp(hair_l, 0.3, 0.8), lerp(hair_l, 0.12, 0.85))
    eye = hsv(col("eye_hue"), torch.full_like(tone, 0.7), torch.full_like(tone, 0.55))
    lip = hsv(
        lerp(col("lip_hue"), 0.95, 1.03) % 1.0, torch.full_like(tone, 0.55), lerp(tone, 0.8, 0.45)
    )
    glasses = hsv(col("glasses_hue"), torch.full_like(tone, 0.6), torch.full_like(tone, 0.3))
    bg_l = col("background_lightness")
    background = hsv(col("background_hue"), lerp(bg_l, 0.5, 0.2), lerp(bg_l, 0.35, 0.95))
    return {
        "skin": skin,
        "hair": hair,
        "brow": hair * 0.55,
        "eye": eye,
        "lip": lip,
        "glasses": glasses,
        "background": background,
    }


# Frame-sized temporaries are freed and allocated again for every shape, and each fresh one
# costs page faults, so the helpers below chain in-place operations on one new buffer.


def cov(sd: Tensor, softness: float) -> Tensor:
    """Coverage of a shape from its signed distance (negative inside); overwrites ``sd``."""
    return sd.mul_(-1.0 / softness).sigmoid_()


def ellipse_sd(x: Tensor, y: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """Approximate signed distance to an axis-aligned ellipse centred at the origin."""
    r = (x / a).square_().add_((y / b).square_())
    return r.add_(1e-8).sqrt_().sub_(1.0).mul_(torch.minimum(a, b))


def _thin_ellipse_sd(x: Tensor, y: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """Signed distance to a thin ellipse, measured vertically and cut at its tips."""
    # The radial approximation badly underestimates distance for thin ellipses, which
    # would smear a closed eye into a line across the frame.
    profile = (x / a).square_().neg_().add_(1.0).clamp_(min=0.0).sqrt_().mul_(b)
    outside = x.abs().sub_(a)
    return torch.maximum(outside, y.abs().sub_(profile), out=outside)


def over(canvas: Tensor, colour: Tensor, alpha: Tensor) -> None:
    """Composite ``colour`` ([N, 3]) with coverage ``alpha`` ([N, H, W]) over ``canvas``, in place."""
    canvas.lerp_(colour[:, :, None, None], alpha[:, None])


def render(
    identity: Tensor, expression: Tensor, size: int = 64, chunk: int | None = None
) -> Tensor:
    """Frames ``[N, 3, size, size]`` in [0, 1] for identities ``[N, 20]`` and expressions ``[N, 7]``.

    ``chunk`` frames are drawn at a time; by default 32 at 64x64 and 256 at 32x32, the
    fastest measured on one thread.
    """
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
    if identity.shape[0] != expression.shape[0]:
        raise ValueError(
            f"identity has {identity.shape[0]} rows but expression has {expression.shape[0]}; "
            "repeat the identity per frame"
        )
    if size < 8:
        raise ValueError(f"size={size} is too small to draw a face; use size >= 8")
    if chunk is None:
        # Small frames need many per chunk to amortise the per-operation overhead, large
        # ones few to keep every intermediate in cache; whole batches are several times slower.
        chunk = max(1, 2**23 // size**3)
    if chunk < 1:
        raise ValueError(f"chunk={chunk} must be positive; use e.g. chunk=32")
    # Each chunk is drawn straight into its slice of the frames, with one scratch buffer
    # shared by all chunks, so no frame-sized temporary is allocated per chunk.
    frames = torch.empty(identity.shape[0], 3, size, size)
    scratch = torch.empty(min(chunk, identity.shape[0]), 3, size, size)
    for i in range(0, identity.shape[0], chunk):
        canvas = frames[i : i + chunk]
        _render_chunk(
            identity[i : i + chunk], expression[i : i + chunk], canvas, scratch[: canvas.shape[0]]
        )
    return frames


# Beyond this many softness widths outside a shape its coverage is below sigmoid(-14) ~ 8e-7,
# so features are drawn only in windows around them: the frame differs from drawing
# everywhere by well under 1e-5, and the networks trained on these frames see the same world.
_CUTOFF = 14.0


class _Windows:
    """Per-frame pixel windows of one common size, placed around boxes in head coordinates.

    ``offset`` (``[N, 1, 1]`` each, world v2's micro-motion) translates the head per frame.
    """

    def __init__(
        self,
        grid: Tensor,
        head_y: float,
        cos_roll: Tensor,
        sin_roll: Tensor,
        offset: tuple[Tensor, Tensor] | None = None,
    ) -> None:
        self.grid = grid
        self.head_y = head_y
        self.cos_roll = cos_roll
        self.sin_roll = sin_roll
        self.offset = offset

    def head_coords(self, gx: Tensor, gy: Tensor, frames: Tensor) -> tuple[Tensor, Tensor]:
        """Head-local coordinates: the image rotated about the head centre by -roll."""
        cr, sr = self.cos_roll[frames], self.sin_roll[frames]
        dx, dy = gx, gy - self.head_y
        if self.offset is not None:
            dx, dy = dx - self.offset[0][frames], dy - self.offset[1][frames]
        return cr * dx + sr * dy, cr * dy - sr * dx

    def _span(self, low: Tensor, high: Tensor) -> tuple[Tensor, int]:
        """First pixel and common pixel count of windows holding ``[low, high]`` (image units)."""
        size = self.grid.shape[0]
        first = torch.floor((low + 1.0) * (size / 2) - 0.5).long().clamp(0, size - 1)
        last = torch.ceil((high + 1.0) * (size / 2) - 0.5).long().clamp(0, size - 1)
        count = int((last - first).clamp(min=0).max()) + 1
        return first.clamp(max=size - count), count

    def take(
        self, canvas: Tensor, frames: Tensor, box: tuple[Tensor, Tensor, Tensor, Tensor]
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Canvas patch ``[m, 3, h, w]``, its head-local x and y and flat index, for a box.

        ``box`` is ``(x_low, x_high, y_low, y_high)`` in head coordinates, each ``[m, 1, 1]``
        for the canvas frames ``frames``; the window holds the image of the box.
        """
        size = self.grid.shape[0]
        x_low, x_high, y_low, y_high = (b.flatten() for b in box)
        cr, sr = self.cos_roll[frames].flatten(), self.sin_roll[frames].flatten()
        corners_x = torch.stack([x_low, x_low, x_high, x_high])
        corners_y = torch.stack([y_low, y_high, y_low, y_high])
        image_x = cr * corners_x - sr * corners_y
        centre_y = self.head_y
        if self.offset is not None:
            image_x = image_x + self.offset[0][frames].flatten()
            centre_y = self.head_y + self.offset[1][frames].flatten()
        image_y = centre_y + sr * corners_x + cr * corners_y
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


class Frames:
    """One chunk of frames to draw: identities, clamped expressions, colours and the head's frame
    (translated per frame by ``offset``, as ``_Windows``).

    The drawing steps below read it and composite their layer into the canvas, back to front.
    """

    def __init__(
        self,
        identity: Tensor,
        expression: Tensor,
        size: int,
        offset: tuple[Tensor, Tensor] | None = None,
    ) -> None:
        self.identity = identity.float()
        low, high = expression_bounds()
        self.expression = torch.minimum(torch.maximum(expression.float(), low), high)
        self.n, self.size = self.identity.shape[0], size
        self.soft = 1.2 / size  # about 0.6 pixel in the [-1, 1] frame
        self.margin = _CUTOFF * self.soft
        self.colours = _colours(self.identity)
        grid = (torch.arange(size, dtype=torch.float32) + 0.5) * (2.0 / size) - 1.0
        self.gx, self.gy = grid.view(1, 1, size), grid.view(1, size, 1)
        self.yaw, self.pitch, roll = self.e("yaw"), self.e("pitch"), self.e("roll")
        self.sin_yaw, self.cos_yaw = torch.sin(self.yaw), torch.cos(self.yaw)
        self.sin_pitch, self.cos_pitch = torch.sin(self.pitch), torch.cos(self.pitch)
        self.windows = _Windows(grid, 0.06, torch.cos(roll), torch.sin(roll), offset)
        self.every = torch.arange(self.n)
        self.x, self.y = self.windows.head_coords(self.gx, self.gy, self.every)
        self.face_a = lerp(self.p("face_width"), 0.36, 0.48)
        self.face_b = lerp(self.p("face_height"), 0.48, 0.60)

    def p(self, name: str) -> Tensor:
        """Identity attribute ``name`` per frame, ``[N, 1, 1]``."""
        return self.identity[:, _A[name], None, None]

    def e(self, name: str) -> Tensor:
        """Expression/pose parameter ``name`` per frame, ``[N, 1, 1]``."""
        return self.expression[:, EXPRESSION_NAMES.index(name), None, None]

    def place(
        self, x0: Tensor | float, y0: Tensor | float, depth: float
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Image-local centre and foreshortening of a feature at (x0, y0) and depth on the face."""
        x0 = torch.as_tensor(x0, dtype=torch.float32)
        y0 = torch.as_tensor(y0, dtype=torch.float32)
        cx = x0 * self.cos_yaw + depth * self.sin_yaw
        cy = y0 * self.cos_pitch + depth * self.sin_pitch
        fx = torch.cos(
            torch.clamp(self.yaw + torch.asin(torch.clamp(x0 / 0.55, -1.0, 1.0) * 0.9), -1.45, 1.45)
        )
        fy = torch.cos(
            torch.clamp(
                self.pitch + torch.asin(torch.clamp(y0 / 0.65, -1.0, 1.0) * 0.9), -1.45, 1.45
            )
        )
        return cx, cy, fx, fy


def draw_background(canvas: Tensor, f: Frames) -> None:
    """A vertical gradient of the background colour."""
    shade = (1.05 - 0.2 * (f.gy + 1.0) * 0.5).expand(f.n, f.size, f.size)
    torch.mul(f.colours["background"][:, :, None, None], shade[:, None], out=canvas)


def _draw_hair(canvas: Tensor, f: Frames) -> None:
    """Hair behind the head moves against the turn, showing more of the back of the head."""
    hair_shift_x = -0.10 * f.sin_yaw
    hair_shift_y = -0.06 * f.sin_pitch
    hair_x = f.x - hair_shift_x
    back = ellipse_sd(hair_x, f.y - (hair_shift_y - 0.06), f.face_a + 0.08, f.face_b + 0.06)
    hair_len = lerp(f.p("hair_length"), 0.0, 0.75)
    curtain = hair_x.abs_().sub_(f.face_a + 0.07)
    torch.maximum(curtain, (f.y - 0.35 * hair_len).abs_().sub_(0.35 * hair_len), out=curtain)
    over(canvas, f.colours["hair"], cov(torch.minimum(back, curtain, out=back), f.soft))


def draw_neck_and_face(
    canvas: Tensor, scratch: Tensor, f: Frames, neck_cut: Tensor | None = None
) -> Tensor:
    """Neck, then the face, its skin shaded by the turn so that yaw and pitch read as light.

    ``neck_cut`` (a signed distance) cuts the neck where something in front meets it.
    Returns the face's signed distance (the fringe is drawn within the face outline).
    """
    x, y, face_a, face_b = f.x, f.y, f.face_a, f.face_b
    neck = x.abs().sub_(0.5 * face_a)
    torch.maximum(neck, (y - (face_b + 0.25)).abs_().sub_(0.35), out=neck)
    if neck_cut is not None:
        torch.maximum(neck, neck_cut.expand_as(neck), out=neck)
    skin_dark = f.colours["skin"] * 0.8
    over(canvas, skin_dark, cov(neck, f.soft))
    face_sd = ellipse_sd(
        x, y, face_a * (0.92 + 0.08 * f.cos_yaw), face_b * (0.95 + 0.05 * f.cos_pitch)
    )
    # 1 - 0.22 (x / a - 0.6 sin yaw) sin yaw - 0.15 (y / b) sin pitch, as two passes.
    light = torch.addcmul(1.0 + 0.132 * f.sin_yaw.square(), x, -0.22 * f.sin_yaw / face_a)
    light.addcmul_(y, -0.15 * f.sin_pitch / face_b)
    face_alpha = cov(face_sd.clone(), f.soft)
    torch.mul(f.colours["skin"][:, :, None, None], light[:, None], out=scratch)
    canvas.lerp_(scratch, face_alpha[:, None])
    return face_sd


def draw_eyes_and_brows(
    canvas: Tensor, f: Frames, gaze: tuple[Tensor, Tensor] | None = None
) -> tuple[Tensor, list[tuple[Tensor, Tensor, Tensor, Tensor]]]:
    """Eyes (sclera, iris and pupil inside an opening whose height follows eye_open) and brows.

    ``gaze`` (``[N, 1, 1]`` each, in eye widths; world v2) moves the iris and pupil off centre.
    Returns the eye width and each eye's centre and foreshortening (the glasses sit on them).
    """
    soft, margin, windows = f.soft, f.margin, f.windows
    spacing = lerp(f.p("eye_spacing"), 0.13, 0.21)
    eye_w = lerp(f.p("eye_size"), 0.075, 0.105)
    eye_y = -0.06
    openness = f.e("eye_open")
    brow_raise = f.e("brow_raise")
    smile = f.e("smile")
    white = torch.tensor([[0.96, 0.96, 0.94]]).expand(f.n, 3)
    dark = torch.tensor([[0.06, 0.05, 0.05]]).expand(f.n, 3)
    thick = lerp(f.p("brow_thickness"), 0.014, 0.03)
    eye_centres = []
    for side in (-1.0, 1.0):
        cx, cy, fx, fy = f.place(side * spacing, eye_y, 0.40)
        eye_centres.append((cx, cy, fx, fy))
        half_h = eye_w * 0.55 * fy * (0.04 + 0.96 * openness)
        half_w = eye_w * fx
        brow_y = cy - eye_w * 0.9 - 0.04 - 0.09 * brow_raise
        tilt = side * (0.25 * (brow_raise - 0.4) - 0.2 * torch.clamp(-smile, min=0.0))
        brow_w = eye_w * 1.25 * fx
        brow_h = thick * fy
        # The brow is sheared by its tilt, so its reach in y grows with the window's width;
        # a closed eye's lash line reaches below its opening.
        brow_reach = brow_h + margin + tilt.abs() * (brow_w + margin)
        eye_reach = torch.maximum(half_h, half_h * 0.6 + 0.012) + margin
        patch, x_eye, y_eye, index = windows.take(
            canvas,
            f.every,
            (
                cx - brow_w - margin,
                cx + brow_w + margin,
                torch.minimum(brow_y - brow_reach, cy - eye_reach),
                torch.maximum(brow_y + brow_reach, cy + eye_reach),
            ),
        )
        ex, ey = x_eye - cx, y_eye - cy
        inside = cov(_thin_ellipse_sd(ex, ey, half_w, half_h), soft)
        # A closed eye leaves its lash line: a thin dark stroke across the eye.
        lash = ex.abs().sub_(half_w)
        torch.maximum(lash, (ey - half_h * 0.6).abs_().sub_(0.012), out=lash)
        over(patch, dark, cov(lash, soft).mul_((1.0 - openness) * 0.8))
        over(patch, white, inside)
        iris_r = eye_w * 0.5
        look_x, look_y = ex, ey
        if gaze is not None:
            look_x, look_y = ex - gaze[0] * eye_w * fx, ey - gaze[1] * eye_w * fy
        iris_d = (look_x / fx).square_().add_(look_y.square()).add_(1e-8).sqrt_()
        iris = cov(iris_d - iris_r, soft)
        over(patch, f.colours["eye"], torch.minimum(iris, inside, out=iris))
        pupil = cov(iris_d.sub_(iris_r * 0.45), soft)
        over(patch, dark, torch.minimum(pupil, inside, out=pupil))

        # Brows: lifted by brow_raise; the inner ends tilt down with a frown (negative smile).
        by = torch.addcmul(y_eye - brow_y, tilt, ex)
        brow = _thin_ellipse_sd(ex, by, brow_w, brow_h)
        over(patch, f.colours["brow"], cov(brow, soft))
        canvas.put_(index, patch)
    return eye_w, eye_centres


def draw_nose(canvas: Tensor, f: Frames) -> None:
    """A shaded wedge that sits farthest forward, so it moves most with the turn.

    Its approximate distance grows slowly above its narrow top, leaving a faint streak up the
    frame, so it is drawn everywhere rather than in a window.
    """
    nose_len = lerp(f.p("nose_length"), 0.08, 0.15)
    nose_w = lerp(f.p("nose_width"), 0.035, 0.07)
    ncx, ncy, nfx, nfy = f.place(0.0, 0.07, 0.55)
    nx, ny = f.x - ncx, f.y - ncy
    # The half width 0.6 + 0.4 (ny / nose_len + 1) / 2, in nose widths, widens downwards.
    nose_a = (ny * (0.2 / nose_len)).add_(0.8).clamp_(min=0.3).mul_(nose_w * nfx)
    nose = ellipse_sd(nx, ny, nose_a, nose_len * nfy)
    over(canvas, f.colours["skin"] * 0.72, cov(nose, f.soft).mul_(0.85))


def draw_mouth(canvas: Tensor, f: Frames) -> None:
    """A lip band around a centre line bent by smile; mouth_open opens a dark gap."""
    smile, margin = f.e("smile"), f.margin
    mouth_w = lerp(f.p("mouth_width"), 0.10, 0.17)
    mcx, mcy, mfx, mfy = f.place(0.0, 0.28, 0.45)
    half_w = mouth_w * mfx * (1.0 + 0.12 * smile.clamp(min=0.0))
    # The centre line stays within 0.04 |smile| of mcy; the gap and lips extend it.
    reach = 0.04 * smile.abs() + (0.10 * f.e("mouth_open") + 0.022) * mfy + margin
    patch, x_mouth, y_mouth, index = f.windows.take(
        canvas,
        f.every,
        (mcx - half_w - margin, mcx + half_w + margin, mcy - reach, mcy + reach),
    )
    mx, my = x_mouth - mcx, y_mouth - mcy
    t_square = (mx / half_w).clamp_(-1.0, 1.0).square_()
    bow = t_square.neg().add_(1.0)
    # The lip centre line is 0.02 smile - 0.06 smile t^2.
    off = torch.addcmul(my - 0.02 * smile, t_square, 0.06 * smile).abs_()
    gap = bow * (0.10 * f.e("mouth_open") * mfy)
    lip_edge = bow.mul_(0.7 * 0.022 * mfy).add_(gap).add_(0.3 * 0.022 * mfy)
    mx_abs = mx.abs_()
    lips = mx_abs - half_w
    torch.maximum(lips, lip_edge.neg_().add_(off), out=lips)
    over(patch, f.colours["lip"], cov(lips, f.soft))
    inner = mx_abs.sub_(half_w * 0.85)
    torch.maximum(inner, off.sub_(gap), out=inner)
    over(patch, torch.tensor([[0.25, 0.05, 0.07]]).expand(f.n, 3), cov(inner, f.soft))
    canvas.put_(index, patch)


def _draw_fringe(canvas: Tensor, f: Frames, face_sd: Tensor) -> None:
    """Hair over the forehead, within the head outline (``face_sd``, consumed), down to a wavy line."""
    x, face_a, face_b = f.x, f.face_a, f.face_b
    depth = lerp(f.p("fringe"), 0.05, 0.45) * face_b
    # line = -face_b + depth + 0.03 sin(18 x + 20 fringe) + 0.1 (x / face_a)^2 depth
    line = torch.sin((x * 18.0).add_(f.p("fringe") * 20.0)).mul_(0.03)
    line.addcmul_(x.square(), 0.1 * depth / face_a.square()).add_(depth - face_b)
    fringe = face_sd.sub_(0.01)
    torch.maximum(fringe, line.neg_().add_(f.y), out=fringe)
    over(canvas, f.colours["hair"], cov(fringe, f.soft))


def draw_glasses(
    canvas: Tensor,
    f: Frames,
    eye_w: Tensor,
    eye_centres: list[tuple[Tensor, Tensor, Tensor, Tensor]],
) -> None:
    """Two rings and a bridge, drawn only on the frames of identities that wear them."""
    wearers = (f.p("glasses") < 0.35).flatten().nonzero().flatten()
    if wearers.numel() == 0:
        return
    margin = f.margin
    ring_r = eye_w[wearers] * 1.35
    (lx, ly, lfx, _), (rx, ry, rfx, _) = (
        tuple(v[wearers] for v in centre_values) for centre_values in eye_centres
    )
    # Rings are foreshortened in x, so the bridge's own margin can reach further out.
    ring_reach = ring_r + 0.012 + margin
    patch, x_glasses, y_glasses, index = f.windows.take(
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
            torch.sqrt(((x_glasses - cx) / fx).square() + (y_glasses - cy).square() + 1e-8) - ring_r
        ).abs()
        - 0.012
        for cx, cy, fx in ((lx, ly, lfx), (rx, ry, rfx))
    ]
    bridge = torch.maximum(
        (x_glasses - 0.5 * (lx + rx)).abs() - 0.5 * (rx - lx).abs(),
        (y_glasses - 0.5 * (ly + ry)).abs() - 0.01,
    )
    frame_sd = torch.minimum(torch.minimum(rings[0], rings[1]), bridge)
    over(patch, f.colours["glasses"][wearers], cov(frame_sd, f.soft))
    canvas.put_(index, patch)


def _render_chunk(identity: Tensor, expression: Tensor, canvas: Tensor, scratch: Tensor) -> None:
    """Draw frames into ``canvas`` ``[N, 3, size, size]``; ``scratch`` is a buffer of its shape."""
    frames = Frames(identity, expression, canvas.shape[-1])
    draw_background(canvas, frames)
    _draw_hair(canvas, frames)
    face_sd = draw_neck_and_face(canvas, scratch, frames)
    eye_w, eye_centres = draw_eyes_and_brows(canvas, frames)
    draw_nose(canvas, frames)
    draw_mouth(canvas, frames)
    _draw_fringe(canvas, frames, face_sd)
    draw_glasses(canvas, frames, eye_w, eye_centres)
    canvas.clamp_(0.0, 1.0)


def render_video(identity: Tensor, expression: Tensor, size: int = 64) -> Tensor:
    """Video ``[B, 3, T, size, size]`` for identities ``[B, 20]`` and expressions ``[B, T, 7]``."""
    if expression.ndim != 3:
        raise ValueError(
            f"expression must be [B, T, {NUM_EXPRESSION_PARAMS}], got {tuple(expression.shape)}"
        )
    b, t, _ = expression.shape
    frames = render(identity.repeat_interleave(t, dim=0), expression.reshape(b * t, -1), size)
    return frames.view(b, t, 3, size, size).transpose(1, 2)


# The expression parameters that move the face, head pose aside.
FACE_PARAMS = ("eye_open", "brow_raise", "mouth_open", "smile")


def expression_regions(
    identity: Tensor,
    expression: Tensor,
    size: int = 64,
    threshold: float = 0.05,
    params: tuple[str, ...] = FACE_PARAMS,
) -> Tensor:
    """Masks ``[N, 1, size, size]`` of the face parts that ``params`` move (by default eyes, brows and mouth) at each frame's pose.

    The pixels that differ between the frame with every one of ``params`` at its lower bound
    and at its upper bound, dilated by one pixel: the face and lip regions that FlashPortrait
    (arXiv 2512.16900) weights in its loss, found without a landmark detector.
    """
    fa, fb = render(identity.repeat(2, 1), moved_to_bounds(expression, params), size).chunk(2)
    return changed_pixels(fa, fb, threshold)


def moved_to_bounds(expression: Tensor, params: tuple[str, ...]) -> Tensor:
    """``expression`` ``[N, 7]`` with ``params`` at their lower bounds, then at their upper ones, ``[2N, 7]``."""
    unknown = sorted(set(params) - set(EXPRESSION_NAMES))
    if unknown:
        raise ValueError(f"params {unknown} are not expression parameters; use {EXPRESSION_NAMES}")
    low, high = expression_bounds()
    moved = [EXPRESSION_NAMES.index(name) for name in params]
    extremes = []
    for bound in (low, high):
        e = expression.clone()
        e[:, moved] = bound[moved]
        extremes.append(e)
    return torch.cat(extremes)


def changed_pixels(a: Tensor, b: Tensor, threshold: float) -> Tensor:
    """Where frames ``a`` and ``b`` differ by more than ``threshold``, dilated by a pixel, ``[N, 1, H, W]``."""
    changed = ((a - b).abs().amax(dim=1, keepdim=True) > threshold).float()
    return torch.nn.functional.max_pool2d(changed, 3, stride=1, padding=1)


def neutral_expression(n: int) -> Tensor:
    """``n`` copies of the neutral expression, ``[n, 7]``."""
    return torch.tensor(NEUTRAL_EXPRESSION).expand(n, NUM_EXPRESSION_PARAMS).clone()


__all__ = [
    "EXPRESSION_NAMES",
    "EXPRESSION_RANGES",
    "NEUTRAL_EXPRESSION",
    "NUM_EXPRESSION_PARAMS",
    "expression_bounds",
    "neutral_expression",
    "random_expression",
    "render",
    "render_video",
]
