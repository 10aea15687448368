"""Identity similarity: ArcFace on InsightFace's real photo, and the per-frame curve with any encoder."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from metrics.faces import insightface_photo
from metrics.identity import ArcFaceEncoder, IdentitySimilarity, to_bgr_uint8


@pytest.fixture(scope="module")
def arcface() -> ArcFaceEncoder:
    return ArcFaceEncoder()


@pytest.fixture(scope="module")
def group_photo() -> torch.Tensor:
    """InsightFace's t1.jpg (six people) as [3, H, W] RGB in [0, 1]."""
    import cv2

    bgr = cv2.imread(str(insightface_photo("t1.jpg")))
    return torch.from_numpy(np.ascontiguousarray(bgr[:, :, ::-1])).permute(2, 0, 1).float() / 255


@pytest.fixture(scope="module")
def face_crops(arcface, group_photo) -> list[torch.Tensor]:
    """A 160x160 crop around each detected face, twice the face's size, left to right."""
    _, boxes = arcface.embed_faces(group_photo)
    crops = []
    for x1, y1, x2, y2 in sorted(boxes.tolist()):
        half = max(x2 - x1, y2 - y1)
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        top, left = max(int(cy - half), 0), max(int(cx - half), 0)
        crop = group_photo[:, top : int(cy + half), left : int(cx + half)]
        crops.append(
            F.interpolate(crop[None], size=(160, 160), mode="bilinear", align_corners=False)[0]
        )
    return crops


def test_arcface_finds_the_six_people_and_tells_them_apart(arcface, group_photo) -> None:
    embeddings, boxes = arcface.embed_faces(group_photo)
    assert embeddings.shape == (6, 512) and boxes.shape == (6, 4)
    unit = F.normalize(embeddings, dim=1)
    cosine = unit @ unit.T
    assert cosine[~torch.eye(6, dtype=torch.bool)].max() < 0.3  # measured: 0.23


def test_same_face_with_noise_scores_above_09_other_people_below_03_blank_frame_counted(
    arcface, face_crops
) -> None:
    generator = torch.Generator().manual_seed(0)
    person = face_crops[0]
    frames = [
        (person + 0.03 * torch.randn(person.shape, generator=generator)).clamp(0, 1),
        person.flip(-1),  # mirrored
        face_crops[1],
        torch.full_like(person, 0.5),  # no face
        face_crops[4],
    ]
    metric = IdentitySimilarity(encoder=arcface)
    metric.update(person[None], torch.stack(frames, dim=1)[None])
    result = metric.compute()
    curve = result["per_frame"]
    assert curve[0] > 0.9 and curve[1] > 0.9, curve  # measured: 0.94 and 0.95
    assert curve[2] < 0.3 and curve[4] < 0.3
    assert torch.isnan(curve[3])
    assert result["faces_not_found"].item() == 1 and result["frames"].item() == 5
    assert result["mean"].item() == pytest.approx(curve[[0, 1, 2, 4]].mean().item(), rel=1e-12)
    assert metric.backend_info() == {
        "backend": "arcface-w600k_mbf",
        "weights": arcface.weight_hashes,
    }


def test_a_reference_without_a_face_is_an_error(arcface) -> None:
    blank = torch.full((1, 3, 64, 64), 0.5)
    with pytest.raises(ValueError, match=r"no face found in reference image\(s\) \[0\]"):
        IdentitySimilarity(encoder=arcface).update(blank, blank[:, :, None].expand(1, 3, 2, 64, 64))


def test_bgr_conversion_flips_channels_and_rounds_to_uint8() -> None:
    image = torch.zeros(1, 3, 2, 2)
    image[0, 0] = 1.0  # pure red
    image[0, 2, 0, 0] = 0.5
    bgr = to_bgr_uint8(image)
    assert bgr.shape == (1, 2, 2, 3) and bgr.dtype == np.uint8
    assert bgr[0, 1, 1].tolist() == [0, 0, 255] and bgr[0, 0, 0].tolist() == [128, 0, 255]


class ColourEncoder:
    """Embeds an image by its mean colour minus 0.5; reports no face where the image is uniformly black."""

    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return images.mean(dim=(2, 3)) - 0.5, images.amax(dim=(1, 2, 3)) > 0


def reference_curve(reference: np.ndarray, videos: np.ndarray) -> tuple[np.ndarray, int]:
    """Per-frame mean cosine (NaN-aware) with plain numpy, and the count of frames without a face."""
    ref = reference.mean(axis=(2, 3)) - 0.5
    frames = videos.mean(axis=(3, 4)).transpose(0, 2, 1) - 0.5  # [B, T, 3]
    found = videos.max(axis=(1, 3, 4)) > 0  # [B, T]
    cosine = (frames * ref[:, None]).sum(-1) / (
        np.linalg.norm(frames, axis=-1) * np.linalg.norm(ref, axis=-1)[:, None]
    )
    cosine[~found] = np.nan
    return np.nanmean(cosine, axis=0), int((~found).sum())


def test_per_frame_curve_and_missing_faces_match_a_numpy_reference() -> None:
    generator = torch.Generator().manual_seed(5)
    reference = torch.rand(3, 3, 4, 4, generator=generator, dtype=torch.float64)
    videos = torch.rand(3, 3, 6, 4, 4, generator=generator, dtype=torch.float64)
    videos[1, :, 2] = 0  # no face in video 1 at frame 2
    videos[:, :, 5] = 0  # nor in any video at frame 5
    metric = IdentitySimilarity(encoder=ColourEncoder())
    metric.update(reference, videos)
    result = metric.compute()
    with np.errstate(invalid="ignore"), pytest.warns(RuntimeWarning, match="Mean of empty slice"):
        expected_curve, expected_missing = reference_curve(reference.numpy(), videos.numpy())
    np.testing.assert_allclose(result["per_frame"].numpy(), expected_curve, rtol=1e-12)
    assert result["faces_not_found"].item() == expected_missing == 4
    assert result["frames"].item() == 18


@given(splits=st.lists(st.integers(1, 3), min_size=1, max_size=4), frames=st.integers(1, 5))
def test_identity_result_is_invariant_to_batch_splits(splits: list[int], frames: int) -> None:
    generator = torch.Generator().manual_seed(6)
    reference = torch.rand(sum(splits), 3, 4, 4, generator=generator)
    videos = torch.rand(sum(splits), 3, frames, 4, 4, generator=generator)
    whole, split = (
        IdentitySimilarity(encoder=ColourEncoder()),
        IdentitySimilarity(encoder=ColourEncoder()),
    )
    whole.update(reference, videos)
    for ref, video in zip(torch.split(reference, splits), torch.split(videos, splits), strict=True):
        split.update(ref, video)
    expected, actual = whole.compute(), split.compute()
    torch.testing.assert_close(actual["per_frame"], expected["per_frame"], rtol=1e-12, atol=1e-15)
    assert actual["mean"].item() == pytest.approx(expected["mean"].item(), rel=1e-12)
