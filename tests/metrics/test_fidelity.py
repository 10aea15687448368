"""PSNR, SSIM and LPIPS against torchmetrics functional, an independent SSIM and the lpips package."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torchvision
from hypothesis import given
from hypothesis import strategies as st
from scipy.ndimage import correlate1d
from torchmetrics.functional.image import peak_signal_noise_ratio

from metrics.fidelity import LPIPS, PSNR, SSIM, DetailRatio
from metrics.weights import CorruptWeightError, MissingWeightError


def video_pair(
    seed: int, batch: int = 2, frames: int = 3, size: int = 24
) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    target = torch.rand(batch, 3, frames, size, size, generator=generator)
    noise = 0.1 * torch.randn(target.shape, generator=generator)
    return (target + noise).clamp(0, 1), target


def frames_of(videos: torch.Tensor) -> torch.Tensor:
    return videos.permute(0, 2, 1, 3, 4).flatten(0, 1)


def test_psnr_is_the_mean_of_torchmetrics_per_frame_psnr() -> None:
    generated, target = video_pair(0)
    metric = PSNR()
    metric.update(generated, target)
    expected = peak_signal_noise_ratio(
        frames_of(generated).double(),
        frames_of(target).double(),
        data_range=1.0,
        reduction="none",
        dim=(1, 2, 3),
    ).mean()
    assert metric.compute().item() == pytest.approx(
        expected.item(), rel=1e-6
    )  # torchmetrics works in float32


def reference_ssim(x: np.ndarray, y: np.ndarray) -> float:
    """SSIM of two HxWxC images in [0, 1] (Wang et al. 2004): Gaussian window 11, sigma 1.5,
    averaged over the whole image with mirrored borders (torchmetrics' convention)."""
    radius = 5
    window = np.exp(-((np.arange(-radius, radius + 1)) ** 2) / (2 * 1.5**2))
    window /= window.sum()

    def blur(image: np.ndarray) -> np.ndarray:
        return correlate1d(
            correlate1d(image, window, axis=0, mode="mirror"), window, axis=1, mode="mirror"
        )

    c1, c2 = 0.01**2, 0.03**2
    mu_x, mu_y = blur(x), blur(y)
    var_x, var_y = blur(x * x) - mu_x**2, blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / (
        (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    )
    return float(ssim_map.mean())


def test_ssim_matches_an_independent_gaussian_window_implementation() -> None:
    generated, target = video_pair(1, batch=1, frames=2, size=32)
    metric = SSIM()
    metric.update(generated, target)
    expected = np.mean(
        [
            reference_ssim(g.permute(1, 2, 0).double().numpy(), t.permute(1, 2, 0).double().numpy())
            for g, t in zip(frames_of(generated), frames_of(target), strict=True)
        ]
    )
    assert metric.compute().item() == pytest.approx(expected, abs=1e-5)


@given(splits=st.lists(st.integers(1, 3), min_size=1, max_size=4))
def test_psnr_and_ssim_are_invariant_to_batch_splits(splits: list[int]) -> None:
    generated, target = video_pair(2, batch=sum(splits), frames=2, size=16)
    for metric_class in (PSNR, SSIM):
        whole, split = metric_class(), metric_class()
        whole.update(generated, target)
        for g, t in zip(torch.split(generated, splits), torch.split(target, splits), strict=True):
            split.update(g, t)
        assert split.compute().item() == pytest.approx(whole.compute().item(), rel=1e-9)


def test_mismatched_shapes_are_a_clear_error() -> None:
    generated, target = video_pair(3)
    with pytest.raises(ValueError, match="must have one shape"):
        PSNR().update(generated, target[:, :, :2])


def test_lpips_with_a_seeded_random_backbone_equals_the_lpips_package() -> None:
    import lpips

    generated, target = video_pair(4, batch=1, frames=2, size=32)
    torch.manual_seed(0)
    metric = LPIPS(pnet_rand=True)
    torch.manual_seed(0)
    reference = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False).eval()
    metric.update(generated, target)
    with torch.no_grad():
        expected = reference(frames_of(generated), frames_of(target), normalize=True).mean()
    assert metric.compute().item() == pytest.approx(expected.item(), rel=1e-6)


pytestmark = [  # the lpips package calls torchvision with the pre-0.13 `pretrained=` argument
    pytest.mark.filterwarnings("ignore:Arguments other than a weight enum:UserWarning"),
    pytest.mark.filterwarnings("ignore:The parameter 'pretrained' is deprecated:UserWarning"),
]


@pytest.fixture(scope="module")
def fake_alexnet_hub(tmp_path_factory):
    """A torch hub cache holding a torchvision AlexNet state dict (seeded random weights) under the real name."""
    torch_home = tmp_path_factory.mktemp("torch")
    checkpoints = torch_home / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.manual_seed(1)
    torch.save(torchvision.models.alexnet().state_dict(), checkpoints / "alexnet-owt-7be5be79.pth")
    return torch_home


def test_lpips_backbone_from_a_path_equals_lpips_loading_it_through_torchvision(
    fake_alexnet_hub, monkeypatch
) -> None:
    import lpips

    monkeypatch.setenv("TORCH_HOME", str(fake_alexnet_hub))
    generated, target = video_pair(5, batch=1, frames=2, size=32)
    metric = LPIPS(
        backbone_path=fake_alexnet_hub / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth",
        verify=False,
    )
    # lpips asks torchvision for the pretrained AlexNet; torchvision finds the file in TORCH_HOME's hub cache.
    reference = lpips.LPIPS(net="alex", verbose=False).eval()
    metric.update(generated, target)
    with torch.no_grad():
        expected = reference(frames_of(generated), frames_of(target), normalize=True).mean()
    assert metric.compute().item() == pytest.approx(expected.item(), rel=1e-6)


def test_lpips_without_a_backbone_names_the_file_and_the_fix(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(
        MissingWeightError, match=r"alexnet-owt-7be5be79\.pth not found.*Fix: copy torchvision"
    ):
        LPIPS()


def test_lpips_with_a_wrong_backbone_file_in_the_hub_cache_is_a_hash_error(
    tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    (tmp_path / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth").write_bytes(
        b"truncated download"
    )
    with pytest.raises(
        CorruptWeightError, match=r"alexnet-owt-7be5be79\.pth has sha256 .* expected 7be5be79"
    ):
        LPIPS()


def _texture(size: int = 16) -> torch.Tensor:
    """A +-1 checkerboard: every 4x4 block averages to 0, so a box blur removes all of it."""
    index = torch.arange(size)
    return ((index[:, None] + index[None, :]) % 2 * 2 - 1).double()


def test_coarse_psnr_ignores_what_averages_out_and_keeps_what_does_not() -> None:
    smooth = torch.linspace(0.3, 0.7, 16).double().expand(16, 16)
    target = (smooth + 0.05 * _texture()).expand(2, 3, 16, 16)
    noisy = smooth.expand(2, 3, 16, 16)  # the texture gone: pixel change, no coarse change
    coarse = PSNR(cap_db=60.0, downsample=4)
    coarse.update(noisy, target)
    assert float(coarse.compute()) == 60.0
    full = PSNR(cap_db=60.0)
    full.update(noisy, target)
    assert float(full.compute()) == pytest.approx(10 * math.log10(1 / 0.05**2))
    shifted = PSNR(downsample=4)
    shifted.update(target + 0.1, target)  # a change of layout/brightness survives averaging
    assert float(shifted.compute()) == pytest.approx(20.0)


@pytest.mark.parametrize("amount", [0.0, 0.5, 1.0, 2.0])
def test_detail_ratio_is_the_squared_amplitude_of_the_kept_texture(amount: float) -> None:
    smooth = (0.3 + 0.1 * (torch.arange(16) // 4)).double().expand(16, 16)  # constant per block
    target = (smooth + 0.05 * _texture()).expand(1, 3, 16, 16)
    generated = (smooth + 0.05 * amount * _texture()).expand(1, 3, 16, 16)
    ratio = DetailRatio()
    ratio.update(generated, target)
    assert float(ratio.compute()) == pytest.approx(amount**2)


def test_detail_ratio_against_a_flat_target_is_a_clear_error() -> None:
    flat = torch.full((1, 3, 16, 16), 0.5)
    with pytest.raises(ValueError, match="no high-frequency energy"):
        DetailRatio().update(torch.rand(1, 3, 16, 16), flat)
    with pytest.raises(ValueError, match=r"downsample=0 must be an integer >= 1"):
        PSNR(downsample=0)
