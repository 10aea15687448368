"""Identity distance calibrated on a face set: 0 = the reference's own frames, 1 = the median other identity.

Cosine similarity saturates: an encoder can score every generated frame >= 0.999 and a
different face 0.85, so drift does not show. With d = 1 - cosine between the reference
image's embedding and a frame's, the calibrated distance is

    distance = (d - d_own) / (d_other - d_own)

where, on a face set of identities each given as a reference image and other frames of the
same face, d_own is the median over identities of the mean d from a reference image to its
own identity's frames, and d_other the median over ordered pairs of different identities of
the mean d from one's reference image to the other's frames. Being affine in cosine, the
mean over frames and the per-frame curve (identity drift over time) carry over exactly.

Each encoder needs its own calibration: the synthetic world's identity encoder is
calibrated on rendered world identities (reference_model/calibration.py stores it next to
the weights); ArcFace (`IdentityDistance("arcface")`) on InsightFace's sample photos,
`arcface_face_set`, built when the metric is.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from metrics.faces import insightface_photo
from metrics.identity import ArcFaceEncoder, Encoder, IdentitySimilarity, embed
from metrics.weights import describe_backend

__all__ = ["IdentityCalibration", "IdentityDistance", "arcface_face_set", "calibrate_identity"]


@dataclass(frozen=True)
class IdentityCalibration:
    """The two levels of d = 1 - cosine that map to distance 0 (own frames) and 1 (median other identity)."""

    own: float
    other: float
    backend: str
    identities: int
    frames: int
    made_with: str

    def __post_init__(self) -> None:
        if not self.other > self.own:
            raise ValueError(
                f"calibration other={self.other} must exceed own={self.own}: the face set's other "
                "identities are no farther than its own frames; calibrate on distinct identities"
            )

    def scale(self, d: Tensor) -> Tensor:
        """Calibrated distance of d = 1 - cosine (any shape)."""
        return (d - self.own) / (self.other - self.own)

    @classmethod
    def read(cls, path: str | Path) -> IdentityCalibration:
        """A calibration from a JSON file (other keys in it, such as provenance, are ignored)."""
        data = json.loads(Path(path).read_text())
        return cls(**{f.name: data[f.name] for f in fields(cls)})

    def to_dict(self) -> dict:
        return asdict(self)


def calibrate_identity(
    encoder: Encoder, views: Tensor, backend: str | None = None, made_with: str = ""
) -> IdentityCalibration:
    """Calibrate `encoder` on a face set `views` [N, V, 3, H, W]: N identities, view 0 each one's reference.

    Frames where the encoder finds no face are left out; a reference without one is an error.
    """
    if views.ndim != 5 or views.shape[0] < 2 or views.shape[1] < 2:
        raise ValueError(
            f"views must be [N >= 2 identities, V >= 2 views, 3, H, W], got {tuple(views.shape)}"
        )
    identities, count = views.shape[:2]
    embeddings, found = embed(encoder, views.flatten(0, 1))
    embeddings, found = embeddings.view(identities, count, -1), found.view(identities, count)
    if not found[:, 0].all():
        missing = torch.nonzero(~found[:, 0]).flatten().tolist()
        raise ValueError(f"no face found in the reference view of identities {missing}")
    d = 1.0 - torch.einsum("id,jvd->ijv", embeddings[:, 0], embeddings[:, 1:])
    frames = found[None, :, 1:].expand_as(d)
    mean = (d * frames).sum(-1) / frames.sum(-1)  # [reference i, frames of j]
    other = ~torch.eye(identities, dtype=torch.bool)
    return IdentityCalibration(
        own=float(mean.diagonal().nanquantile(0.5)),
        other=float(mean[other].nanquantile(0.5)),
        backend=backend or describe_backend(encoder)["backend"],
        identities=identities,
        frames=int(found[:, 1:].sum()),
        made_with=made_with,
    )


class IdentityDistance(IdentitySimilarity):
    """Calibrated identity distance of every generated frame to its reference image (0 own frames, 1 another identity).

    `update(reference [B, 3, H, W], videos [B, 3, T, H, W])` as `IdentitySimilarity`;
    `compute()` returns {"mean", "per_frame" [T_max], "faces_not_found", "frames"}, the means
    in calibrated units. `encoder="arcface"` calibrates on `arcface_face_set`; an injected
    encoder needs its `calibration` (from `calibrate_identity` on faces of its domain).
    """

    higher_is_better = False

    def __init__(
        self,
        encoder: str | Encoder = "arcface",
        calibration: IdentityCalibration | None = None,
        **kwargs,
    ) -> None:
        super().__init__(encoder, **kwargs)
        if calibration is None:
            if not isinstance(self.encoder, ArcFaceEncoder):
                raise ValueError(
                    f"encoder {describe_backend(self.encoder)['backend']!r} needs a calibration: "
                    "pass calibration=calibrate_identity(encoder, views) on faces it knows"
                )
            calibration = calibrate_identity(
                self.encoder, arcface_face_set(self.encoder), made_with=ARCFACE_FACE_SET
            )
        self.calibration = calibration

    def backend_info(self) -> dict:
        return {**describe_backend(self.encoder), "calibration": self.calibration.to_dict()}

    def compute(self) -> dict[str, Tensor]:
        result = super().compute()
        for key in ("mean", "per_frame"):
            result[key] = self.calibration.scale(1.0 - result[key])
        return result


ARCFACE_FACE_SET = (
    "InsightFace's sample photos: the six people of t1.jpg and Tom_Hanks_54745.png (padded); "
    "view 0 each face's crop (twice the face box, 160x160), the other views the same face "
    "shifted, rescaled, mirrored, re-lit and noised (torch.Generator seed 0)"
)


def arcface_face_set(encoder: ArcFaceEncoder, views: int = 6, seed: int = 0) -> Tensor:
    """The ArcFace calibration faces [7, views, 3, 160, 160] in [0, 1] (see `ARCFACE_FACE_SET`)."""
    import cv2

    photos = [cv2.imread(str(insightface_photo("t1.jpg")))]
    # The aligned 112x112 crop is too tight for the detector; a replicated border gives it context.
    photos.append(
        cv2.copyMakeBorder(
            cv2.imread(str(insightface_photo("Tom_Hanks_54745.png"))),
            *[56] * 4,
            cv2.BORDER_REPLICATE,
        )
    )
    generator = torch.Generator().manual_seed(seed)
    faces = []
    for photo_bgr in photos:
        photo = torch.from_numpy(photo_bgr[:, :, ::-1].copy()).permute(2, 0, 1).float() / 255
        boxes, _ = encoder.detect(photo_bgr)
        for x1, y1, x2, y2 in sorted(boxes[:, :4].tolist()):
            half = max(x2 - x1, y2 - y1)
            centre = ((x1 + x2) / 2, (y1 + y2) / 2)
            faces.append(
                torch.stack(
                    [_crop(photo, centre, half)]
                    + [_jittered(photo, centre, half, generator) for _ in range(views - 1)]
                )
            )
    return torch.stack(faces)


def _jittered(
    photo: Tensor, centre: tuple[float, float], half: float, generator: torch.Generator
) -> Tensor:
    u = torch.rand(5, generator=generator)  # shift x, shift y, scale, mirror, light
    shift = (u[:2] - 0.5) * 0.2 * half
    crop = _crop(
        photo,
        (centre[0] + shift[0].item(), centre[1] + shift[1].item()),
        half * (0.85 + 0.3 * u[2].item()),
    )
    if u[3] < 0.5:
        crop = crop.flip(-1)
    crop = crop * (0.8 + 0.4 * u[4]) + 0.01 * torch.randn(crop.shape, generator=generator)
    return crop.clamp(0.0, 1.0)


def _crop(photo: Tensor, centre: tuple[float, float], half: float, size: int = 160) -> Tensor:
    """The square of side 2 * half around `centre` (edges replicated), resized to size x size."""
    side = max(2, round(2 * half))
    top, left = round(centre[1] - half) + side, round(centre[0] - half) + side
    padded = F.pad(photo[None], (side, side, side, side), mode="replicate")
    crop = padded[:, :, top : top + side, left : left + side]
    return F.interpolate(
        crop, size=(size, size), mode="bilinear", align_corners=False, antialias=True
    )[0]
