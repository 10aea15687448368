import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler
from hypothesis import given
from hypothesis import strategies as st

from flashbench.schedule import flow_match_sigmas
from flashbench.steppers import euler_step


@given(steps=st.integers(1, 60), shift=st.sampled_from([1.0, 3.0, 5.0, 7.5]))
def test_sigmas_match_diffusers_flow_match_euler(steps, shift):
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=shift)
    scheduler.set_timesteps(steps)
    torch.testing.assert_close(
        flow_match_sigmas(steps, shift), scheduler.sigmas.float(), atol=1e-6, rtol=0
    )


def test_euler_step_matches_diffusers_step():
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=5.0)
    scheduler.set_timesteps(30)
    sigmas = flow_match_sigmas(30, 5.0)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 3, 5, 5, generator=g)
    ours = x.clone()
    for i, t in enumerate(scheduler.timesteps):
        v = torch.randn(x.shape, generator=g)
        x = scheduler.step(v, t, x).prev_sample
        ours = euler_step(ours, v, sigmas[i], sigmas[i + 1])
    torch.testing.assert_close(ours, x, atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [({"steps": 0}, "steps"), ({"shift": float("nan")}, "shift"), ({"shift": -1.0}, "shift")],
)
def test_bad_schedule_arguments_name_the_argument(kwargs, word):
    with pytest.raises(ValueError, match=word):
        flow_match_sigmas(**kwargs)
