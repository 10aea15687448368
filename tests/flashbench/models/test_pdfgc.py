"""PD-FGC's driving-expression extractor: the released key layout loads, crops land on the template, features come out in order."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from flashbench.models.flashportrait.pdfgc import (
    CROP_SIZE,
    FEATURE_ORDER,
    NUM_LANDMARKS,
    FanEncoder,
    align_face,
    driving_features,
    load_pdfgc,
)
from flashbench.models.flashportrait.transformer import FEATURE_DIM, FEATURE_SIZES

cv2 = pytest.importorskip(
    "cv2", reason="alignment needs opencv: pip install 'flashbench[flashportrait]'"
)
pytest.importorskip(
    "skimage", reason="alignment needs scikit-image: pip install 'flashbench[flashportrait]'"
)

# The released alignment, spelled out here so that the tests pin it: these five of the 222
# points (pupils, nose tip, mouth corners) go to these fractions of the crop's side.
RELEASED_INDICES = [182, 202, 36, 149, 133]
RELEASED_TEMPLATE = np.array(
    [[0.3843, 0.27], [0.62, 0.2668], [0.503, 0.4185], [0.406, 0.5273], [0.5977, 0.525]]
)


@pytest.fixture(scope="module")
def encoder() -> FanEncoder:
    torch.manual_seed(0)
    model = FanEncoder()
    # Batch-norm statistics away from their defaults, so that loading them is visible.
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm1d | torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    return model.eval()


def similarity(scale: float, angle: float, shift: tuple[float, float]) -> np.ndarray:
    """The 2 x 3 matrix taking crop pixels to image pixels."""
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[scale * c, -scale * s, shift[0]], [scale * s, scale * c, shift[1]]])


def landmarks_for(crop_to_image: np.ndarray, size: int = CROP_SIZE, seed: int = 0) -> np.ndarray:
    """222 points whose aligned five are the template mapped into the image; the rest are noise."""
    points = np.random.default_rng(seed).uniform(0, 50, (NUM_LANDMARKS, 2))
    template = RELEASED_TEMPLATE * size
    points[RELEASED_INDICES] = template @ crop_to_image[:, :2].T + crop_to_image[:, 2]
    return points


def pattern(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """A smooth RGB pattern in crop coordinates, different in every channel -> [..., 3] uint8-ranged."""
    return np.stack(
        [
            128 + 90 * np.sin(u / 9) * np.cos(v / 13),
            128 + 90 * np.cos(u / 11 + v / 17),
            128 + 90 * np.sin((u - v) / 15),
        ],
        axis=-1,
    )


def image_of_pattern(crop_to_image: np.ndarray, height: int, width: int) -> np.ndarray:
    """An image whose pixel (x, y) shows the pattern at the crop point mapped onto (x, y)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    inverse = cv2.invertAffineTransform(crop_to_image)
    u = inverse[0, 0] * x + inverse[0, 1] * y + inverse[0, 2]
    v = inverse[1, 0] * x + inverse[1, 1] * y + inverse[1, 2]
    return np.round(pattern(u, v)).astype(np.uint8)


def as_frames(images: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255


# ---- weights --------------------------------------------------------------------------


def test_state_dict_has_the_released_key_layout(encoder):
    shapes = {k: tuple(v.shape) for k, v in encoder.state_dict().items()}
    assert len(shapes) == 387  # the released FanEncoder's state dict, buffers included
    assert shapes["model.conv1.weight"] == (64, 3, 7, 7)
    assert shapes["model.conv2.downsample.2.weight"] == (128, 64, 1, 1)
    assert "model.conv3.downsample.0.weight" not in shapes  # 128 -> 128 needs no projection
    assert shapes["model.m0.b2_plus_1.conv1.weight"] == (128, 256, 3, 3)
    assert {
        f"model.m0.b{b}_{level}.bn3.running_var" for b in (1, 2, 3) for level in (1, 2, 3, 4)
    } <= set(shapes)
    assert "model.m0.b2_plus_2.conv1.weight" not in shapes
    assert shapes["model.l0.weight"] == (68, 256, 1, 1)
    assert shapes["model.conv6.weight"] == (1, 68, 3, 3)
    assert shapes["model.fc.weight"] == (512, 28 * 28)
    assert shapes["to_mouth.2.running_mean"] == (512,)
    assert shapes["mouth_embed.1.weight"] == (500, 512)
    assert shapes["headpose_embed.1.weight"] == (6, 512)
    assert shapes["eye_embed.1.weight"] == (6, 512)
    assert shapes["emo_embed.1.weight"] == (30, 512)


def test_forward_returns_feature_sizes_in_feature_order(encoder):
    assert tuple(FEATURE_SIZES) == FEATURE_ORDER
    with torch.no_grad():
        out = encoder(torch.randn(1, 3, CROP_SIZE, CROP_SIZE))
    assert tuple(out) == FEATURE_ORDER
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        k: (1, n) for k, n in FEATURE_SIZES.items()
    }


def test_load_pdfgc_round_trips_weights_and_logs_extra_keys_once(encoder, tmp_path, caplog):
    path = tmp_path / "pd_fpg.pth"
    extras = {"net_audio.fc.weight": torch.zeros(2), "net_id.scale": torch.ones(())}
    torch.save({**encoder.state_dict(), **extras}, path)
    with caplog.at_level(logging.WARNING, logger="flashbench.models.flashportrait.pdfgc"):
        loaded = load_pdfgc(path)
    assert not loaded.training
    images = torch.randn(2, 3, CROP_SIZE, CROP_SIZE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, got = encoder(images), loaded(images)
    for name in FEATURE_ORDER:
        torch.testing.assert_close(got[name], expected[name], rtol=0, atol=0)
    records = [
        r.getMessage() for r in caplog.records if r.name == "flashbench.models.flashportrait.pdfgc"
    ]
    assert len(records) == 1
    assert "net_audio.fc.weight" in records[0] and "net_id.scale" in records[0]


def test_load_pdfgc_names_a_missing_key(encoder, tmp_path):
    state = encoder.state_dict()
    del state["model.m0.b2_plus_1.conv3.weight"]
    torch.save(state, tmp_path / "pd_fpg.pth")
    with pytest.raises(ValueError, match=r"model\.m0\.b2_plus_1\.conv3\.weight.*not FlashPortrait"):
        load_pdfgc(tmp_path / "pd_fpg.pth")


def test_load_pdfgc_names_a_wrongly_shaped_key(encoder, tmp_path):
    state = encoder.state_dict()
    state["emo_embed.1.weight"] = torch.zeros(20, 512)
    torch.save(state, tmp_path / "pd_fpg.pth")
    with pytest.raises(ValueError, match=r"emo_embed\.1\.weight \(20, 512\) != \(30, 512\)"):
        load_pdfgc(tmp_path / "pd_fpg.pth")


def test_load_pdfgc_accepts_a_file_without_batch_norm_counters(encoder, tmp_path):
    state = {k: v for k, v in encoder.state_dict().items() if "num_batches_tracked" not in k}
    torch.save(state, tmp_path / "pd_fpg.pth")
    loaded = load_pdfgc(tmp_path / "pd_fpg.pth")
    torch.testing.assert_close(loaded.to_emo[2].running_var, encoder.to_emo[2].running_var)


def test_load_pdfgc_missing_file_names_the_path(tmp_path):
    path = tmp_path / "checkpoints" / "pd_fpg.pth"
    with pytest.raises(ValueError, match=r"checkpoints.pd_fpg\.pth.*released pd_fpg\.pth"):
        load_pdfgc(path)


# ---- alignment ------------------------------------------------------------------------


@settings(deadline=None, max_examples=10)
@given(
    scale=st.floats(0.7, 2.0),
    angle=st.floats(-0.6, 0.6),
    offset=st.tuples(st.floats(-20, 20), st.floats(-20, 20)),
)
def test_align_face_undoes_a_known_similarity(scale, angle, offset):
    # The crop's corners land at most scale * 224 * sqrt(2) / 2 from its centre; leave a margin.
    half = math.ceil(scale * CROP_SIZE * math.sqrt(2) / 2) + 25
    centre = np.array([half, half]) + offset
    crop_to_image = similarity(scale, angle, (0.0, 0.0))
    crop_to_image[:, 2] = centre - crop_to_image[:, :2] @ np.full(2, (CROP_SIZE - 1) / 2)
    image = image_of_pattern(crop_to_image, 2 * half, 2 * half)
    crop = align_face(image, landmarks_for(crop_to_image))
    assert crop.shape == (CROP_SIZE, CROP_SIZE, 3)
    v, u = np.mgrid[0:CROP_SIZE, 0:CROP_SIZE].astype(np.float64)
    error = np.abs(crop.astype(np.float64) - pattern(u, v))
    assert error.mean() < 0.75 and error.max() < 3


def test_align_face_puts_marked_landmarks_on_the_template_at_any_size():
    size = 112
    crop_to_image = similarity(2.5, 0.3, (150.0, 40.0))
    image = np.zeros((480, 560), dtype=np.uint8)
    landmarks = landmarks_for(crop_to_image, size=size)
    marks = [60, 100, 140, 180, 220]
    for (x, y), value in zip(landmarks[RELEASED_INDICES], marks, strict=True):
        cv2.circle(image, (round(x), round(y)), 6, value, thickness=-1)
    crop = align_face(image, landmarks, size=size)
    assert crop.shape == (size, size)
    for (u, v), value in zip(RELEASED_TEMPLATE * size, marks, strict=True):
        assert crop[round(v), round(u)] == pytest.approx(value, abs=2)
    assert crop[5, 5] == 0 and crop[size - 5, size // 2] == 0


def test_align_face_is_a_bicubic_warp_by_the_inverse_of_the_known_similarity():
    # Noise tells interpolations apart where a smooth pattern cannot.
    image = np.random.default_rng(4).integers(0, 256, (400, 420, 3), dtype=np.uint8)
    crop_to_image = similarity(1.3, -0.25, (60.0, 110.0))
    crop = align_face(image, landmarks_for(crop_to_image))
    inverse = cv2.invertAffineTransform(crop_to_image)
    expected = cv2.warpAffine(image, inverse, (CROP_SIZE, CROP_SIZE), flags=cv2.INTER_CUBIC)
    assert np.abs(crop.astype(int) - expected.astype(int)).max() <= 1


def test_align_face_of_template_landmarks_is_the_identity():
    image = np.random.default_rng(3).integers(0, 256, (CROP_SIZE, CROP_SIZE, 3), dtype=np.uint8)
    crop = align_face(image, landmarks_for(similarity(1.0, 0.0, (0.0, 0.0))))
    np.testing.assert_array_equal(crop, image)


# ---- features -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clip() -> tuple[torch.Tensor, torch.Tensor]:
    """Two 200 x 260 frames of a patterned face region under different similarities."""
    transforms = [similarity(0.6, 0.2, (70.0, 30.0)), similarity(0.7, -0.3, (60.0, 70.0))]
    frames = as_frames([image_of_pattern(m, 200, 260) for m in transforms])
    landmarks = torch.from_numpy(
        np.stack([landmarks_for(m, seed=i) for i, m in enumerate(transforms)])
    )
    return frames, landmarks.float()


def test_driving_features_are_encoder_outputs_on_aligned_crops_in_feature_order(encoder, clip):
    frames, landmarks = clip
    features = driving_features(encoder, frames, landmarks)
    assert features.shape == (2, FEATURE_DIM) and features.dtype == torch.float32
    pixels = (frames * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    crops = np.stack(
        [align_face(p, q) for p, q in zip(pixels, landmarks.double().numpy(), strict=True)]
    )
    images = torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 255 * 2 - 1
    with torch.no_grad():
        expected = encoder(images)
    start = 0
    for name in FEATURE_ORDER:
        width = FEATURE_SIZES[name]
        torch.testing.assert_close(features[:, start : start + width], expected[name])
        start += width


def test_driving_features_do_not_depend_on_batch_size(encoder, clip):
    frames, landmarks = clip
    one = driving_features(encoder, frames, landmarks, batch_size=1)
    torch.testing.assert_close(driving_features(encoder, frames, landmarks, batch_size=16), one)


def test_encoder_sees_rgb_crops_scaled_to_minus_one_one(encoder):
    # Template landmarks in a 224 frame make the crop the frame itself; the channels differ.
    image = np.zeros((CROP_SIZE, CROP_SIZE, 3), dtype=np.uint8)
    image[..., 0], image[..., 1], image[..., 2] = 255, 51, 0
    seen = []
    hook = encoder.model.register_forward_pre_hook(lambda _, args: seen.append(args[0]))
    try:
        landmarks = torch.from_numpy(landmarks_for(similarity(1.0, 0.0, (0.0, 0.0))))
        driving_features(encoder, as_frames([image]), landmarks[None])
    finally:
        hook.remove()
    (images,) = seen
    assert images.shape == (1, 3, CROP_SIZE, CROP_SIZE)
    for channel, value in enumerate((1.0, -0.6, -1.0)):
        torch.testing.assert_close(images[0, channel], torch.full((CROP_SIZE, CROP_SIZE), value))


# ---- validation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frames_shape", "landmarks_shape", "message"),
    [
        ((2, 3, 64, 64), (2, 68, 2), r"landmarks must be \[T, 222, 2\].*\(2, 68, 2\)"),
        ((2, 64, 64, 3), (2, 222, 2), r"frames must be \[T, 3, H, W\].*\(2, 64, 64, 3\)"),
        ((3, 64, 64), (3, 222, 2), r"frames must be \[T, 3, H, W\].*\(3, 64, 64\)"),
        ((2, 3, 64, 64), (3, 222, 2), r"frames has 2 frames but landmarks has 3"),
        ((0, 3, 64, 64), (0, 222, 2), r"frames is empty"),
    ],
)
def test_driving_features_rejects_bad_shapes(encoder, frames_shape, landmarks_shape, message):
    with pytest.raises(ValueError, match=message):
        driving_features(encoder, torch.rand(frames_shape), torch.rand(landmarks_shape))


def test_driving_features_rejects_frames_outside_zero_one(encoder):
    with pytest.raises(ValueError, match=r"\[0, 1\].*255"):
        driving_features(encoder, torch.full((1, 3, 8, 8), 200.0), torch.rand(1, 222, 2))


def test_align_face_rejects_other_landmark_schemes_and_degenerate_points():
    image = np.zeros((64, 64, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match=r"\[222, 2\].*\(68, 2\)"):
        align_face(image, np.zeros((68, 2)))
    with pytest.raises(ValueError, match="degenerate"):
        align_face(image, np.full((NUM_LANDMARKS, 2), 10.0))
    with pytest.raises(ValueError, match="finite"):
        align_face(image, np.full((NUM_LANDMARKS, 2), np.nan))
