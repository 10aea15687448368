import numpy as np
import pytest
import torch

from flashbench.planning.regime import velocity_profile
from flashbench.schedule import flow_match_sigmas


class Constant(torch.nn.Module):
    """v = c: a straight path, where every step's velocity equals the last."""

    def forward(self, x, sigma, cond):
        return torch.ones_like(x) * 0.5


class Decay(torch.nn.Module):
    """v = x: the Euler path gives v_(i+1) = (1 + sigma_(i+1) - sigma_i) v_i exactly."""

    def forward(self, x, sigma, cond):
        return x.clone()


def test_straight_path_has_no_velocity_change():
    noise = torch.randn(2, 3, 4, 4, 4, generator=torch.Generator().manual_seed(0))
    profile = velocity_profile(Constant(), noise, flow_match_sigmas(10, shift=5.0))
    assert profile.relative_change == pytest.approx(np.zeros(9), abs=1e-12)
    assert profile.magnitude_ratio == pytest.approx(np.ones(9), abs=1e-12)


def test_linear_flow_profile_matches_its_closed_form():
    noise = torch.randn(1, 3, 4, 4, 4, generator=torch.Generator().manual_seed(1))
    sigmas = flow_match_sigmas(8, shift=3.0)
    profile = velocity_profile(Decay(), noise, sigmas)
    factor = (1 + sigmas[1:-1] - sigmas[:-2]).double().numpy()
    assert profile.magnitude_ratio == pytest.approx(factor, rel=1e-6)
    assert profile.relative_change == pytest.approx(np.abs(factor - 1), rel=1e-6)
    assert profile.sigmas == pytest.approx(sigmas[1:-1].double().numpy())


def test_recorder_as_a_sample_callback_covers_every_sliding_window():
    from flashbench.planning.regime import VelocityRecorder
    from flashbench.sampling import sample
    from flashbench.windowing import Sliding

    noise = torch.randn(1, 3, 10, 4, 4, generator=torch.Generator().manual_seed(2))
    sigmas = flow_match_sigmas(6, shift=3.0)
    recorder = VelocityRecorder()
    sample(Decay(), noise, sigmas, windowing=Sliding(window=6, overlap=2), callback=recorder)
    assert recorder.previous.shape[2] == 12
    full = velocity_profile(Decay(), noise, sigmas)
    windowed = recorder.profile()
    assert windowed.magnitude_ratio == pytest.approx(full.magnitude_ratio, rel=1e-6)
    assert windowed.relative_change == pytest.approx(full.relative_change, rel=1e-6)


def test_recorder_records_are_the_profile_by_step():
    from flashbench.planning.regime import VelocityRecorder
    from flashbench.sampling import sample

    noise = torch.randn(1, 3, 4, 4, 4, generator=torch.Generator().manual_seed(3))
    sigmas = flow_match_sigmas(5, shift=3.0)
    recorder = VelocityRecorder()
    sample(Decay(), noise, sigmas, callback=recorder)
    records = recorder.records()
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    profile = recorder.profile()
    assert [r["magnitude_ratio"] for r in records] == list(profile.magnitude_ratio)
    assert [r["sigma"] for r in records] == pytest.approx(sigmas[1:-1].double().numpy())
