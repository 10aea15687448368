"""FID: the shipped Inception against pytorch-fid's architecture, the metric against pytorch-fid's formula."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
import torch
from pytorch_fid.fid_score import calculate_frechet_distance

from metrics.fid import FrechetInceptionDistance, InceptionFeatures
from metrics.weights import verified_path


class PatchStatistics(torch.nn.Module):
    """A cheap injected image feature: mean colour of each 2x2 block of a 4x4 pooled image (12-d)."""

    num_features = 12

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.adaptive_avg_pool2d(images, 2).flatten(1)


def pytorch_fid_inception_with_shipped_weights() -> torch.nn.Module:
    """pytorch-fid's own InceptionV3, its state dict filled from the shipped TorchScript's 94 conv/BN sets."""
    from pytorch_fid import inception as pytorch_fid_inception

    with pytest.warns(FutureWarning):
        shipped = torch.jit.load(str(verified_path("inception-fid"))).state_dict()
    shipped_convs = [key.removesuffix(".weight") for key in shipped if key.endswith(".weight")]
    built = {}
    original = pytorch_fid_inception._inception_v3

    def capture(*args, **kwargs):
        built["model"] = original(*args, **kwargs)
        return built["model"]

    def shipped_state_dict(*args, **kwargs):
        target = built["model"].state_dict()
        names = [key.removesuffix(".conv.weight") for key in target if key.endswith(".conv.weight")]
        assert len(names) == len(shipped_convs) == 94
        state = dict(target)  # the unused 1008-class head keeps its initial values
        for name, source in zip(names, shipped_convs, strict=True):
            assert target[f"{name}.conv.weight"].shape == shipped[f"{source}.weight"].shape, (
                name,
                source,
            )
            state[f"{name}.conv.weight"] = shipped[f"{source}.weight"]
            state[f"{name}.bn.weight"] = torch.ones_like(
                shipped[f"{source}.beta"]
            )  # TF's BN has no scale
            state[f"{name}.bn.bias"] = shipped[f"{source}.beta"]
            state[f"{name}.bn.running_mean"] = shipped[f"{source}.mean"]
            state[f"{name}.bn.running_var"] = shipped[f"{source}.var"]
        return state

    with (
        mock.patch.object(pytorch_fid_inception, "_inception_v3", capture),
        mock.patch.object(pytorch_fid_inception, "load_state_dict_from_url", shipped_state_dict),
    ):
        model = pytorch_fid_inception.InceptionV3(
            [pytorch_fid_inception.InceptionV3.BLOCK_INDEX_BY_DIM[2048]]
        )
    return model.eval()


@pytest.mark.slow
def test_shipped_inception_features_match_pytorch_fid_architecture() -> None:
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    ours = InceptionFeatures()(images)
    assert ours.shape == (2, 2048)
    with torch.no_grad():
        reference = pytorch_fid_inception_with_shipped_weights()(images)[0].flatten(1)
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-5)  # measured: 1e-6 apart


def test_fid_matches_pytorch_fid_formula_on_the_same_features() -> None:
    generator = torch.Generator().manual_seed(1)
    real = torch.rand(40, 3, 8, 8, generator=generator)
    fake = torch.rand(30, 3, 8, 8, generator=generator).sqrt()
    metric = FrechetInceptionDistance(feature=PatchStatistics())
    metric.update(real, real=True)
    metric.update(fake, real=False)
    real_features, fake_features = (PatchStatistics()(x).double().numpy() for x in (real, fake))
    expected = calculate_frechet_distance(
        real_features.mean(0),
        np.cov(real_features, rowvar=False),
        fake_features.mean(0),
        np.cov(fake_features, rowvar=False),
    )
    assert metric.compute().item() == pytest.approx(expected, rel=1e-6)


def test_fid_over_videos_uses_every_frame() -> None:
    generator = torch.Generator().manual_seed(2)
    real, fake = (
        torch.rand(3, 3, 5, 8, 8, generator=generator),
        torch.rand(2, 3, 4, 8, 8, generator=generator),
    )
    as_videos = FrechetInceptionDistance(feature=PatchStatistics())
    as_videos.update(real, real=True)
    as_videos.update(fake, real=False)
    as_frames = FrechetInceptionDistance(feature=PatchStatistics())
    as_frames.update(real.permute(0, 2, 1, 3, 4).flatten(0, 1), real=True)
    as_frames.update(fake.permute(0, 2, 1, 3, 4).flatten(0, 1), real=False)
    assert as_videos.real_count.item() == 15 and as_videos.fake_count.item() == 8
    assert as_videos.compute().item() == pytest.approx(as_frames.compute().item(), rel=1e-12)
