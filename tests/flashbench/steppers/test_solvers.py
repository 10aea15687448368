"""fewer_steps resamples the schedule faithfully; DPM-Solver++(2M) is second order."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from flashbench.denoiser import Cond
from flashbench.sampling import sample
from flashbench.schedule import flow_match_sigmas
from flashbench.steppers import Euler
from flashbench.steppers.dpm_solver import DPMSolver
from flashbench.steppers.fewer_steps import FewerSteps, resample_sigmas


@given(steps=st.integers(2, 40), fewer=st.integers(2, 40), shift=st.sampled_from([1.0, 3.0, 5.0]))
def test_resampling_with_the_shift_reproduces_the_schedule(steps, fewer, shift):
    resampled = resample_sigmas(flow_match_sigmas(steps, shift), fewer, shift)
    torch.testing.assert_close(resampled, flow_match_sigmas(fewer, shift), atol=2e-6, rtol=0)


@given(steps=st.integers(2, 40), fewer=st.integers(1, 40))
def test_resampling_without_the_shift_keeps_the_ends_and_the_order(steps, fewer):
    sigmas = flow_match_sigmas(steps)
    resampled = resample_sigmas(sigmas, fewer)
    assert len(resampled) == fewer + 1
    assert resampled[0] == sigmas[0] and resampled[-1] == sigmas[-1]
    if fewer > 1:
        assert resampled[-2] == pytest.approx(float(sigmas[-2]), abs=1e-6)
    assert (resampled[1:] <= resampled[:-1]).all()


def test_fewer_steps_runs_that_many_passes():
    result = sample(
        lambda x, s, c: -x, torch.ones(1, 1, 1, 1, 1), flow_match_sigmas(30), stepper=FewerSteps(6)
    )
    assert result.nfe == 6 and len({r.step for r in result.trace}) == 6


class LinearData:
    """x0(x, sigma) = b - x, so dx/dsigma = (2x - b) / sigma and x(sigma) = b/2 + (x(1) - b/2) sigma^2."""

    def __call__(self, x, sigma, cond):
        s = sigma.view(-1, 1, 1, 1, 1)
        return (x - (0.5 - x)) / s


def final_error(stepper, steps):
    x1 = torch.full((1, 1, 1, 1, 1), 2.0, dtype=torch.float64)
    sigmas = torch.linspace(1.0, 0.2, steps + 1, dtype=torch.float64)
    out = sample(LinearData(), x1, sigmas, Cond(), stepper=stepper).latents
    exact = 0.25 + (2.0 - 0.25) * 0.2**2
    return abs(float(out) - exact)


def test_dpm_solver_2m_is_second_order_and_beats_euler():
    errors = {n: final_error(DPMSolver(), n) for n in (8, 16, 32)}
    euler = {n: final_error(Euler(), n) for n in (8, 16, 32)}
    assert errors[16] / errors[32] > 3.5  # second order: 4x per halving
    assert 1.7 < euler[16] / euler[32] < 2.3  # first order: 2x
    assert errors[16] < euler[16] / 5


def test_dpm_solver_first_step_and_final_step_are_euler():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 2, 2, 2, 2, generator=g)
    v = torch.randn(1, 2, 2, 2, 2, generator=g)
    sigmas = torch.tensor([1.0, 0.6, 0.0])
    history: dict = {}
    first = DPMSolver().advance(x, v, sigmas, 0, history)
    torch.testing.assert_close(first, x + (0.6 - 1.0) * v, atol=1e-6, rtol=0)
    last = DPMSolver().advance(first, v, sigmas, 1, history)
    torch.testing.assert_close(last, first - 0.6 * v, atol=1e-6, rtol=0)
    assert torch.isfinite(last).all()
