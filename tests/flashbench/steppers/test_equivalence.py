"""Steppers that never skip are Euler bit for bit; ALP without dynamic functions is TaylorSeer."""

import pytest
import torch
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from stepper_models import never_skip_configs, toy, toy_inputs

from flashbench.sampling import Guidance, sample
from flashbench.schedule import flow_match_sigmas
from flashbench.settings import steppers
from flashbench.steppers import Euler
from flashbench.windowing import Full, Sliding

STEPS = 7
# Every registered stepper's own never-skip parameters (its Facts): a new stepper is tested here.
NEVER_SKIP = never_skip_configs(STEPS)

WINDOWINGS = st.sampled_from(
    [
        Full(),
        Sliding(window=4, overlap=2),
        Sliding(window=3, overlap=0, weighting="uniform", shift=1),
    ]
)
GUIDANCE = st.sampled_from([None, Guidance(scale=3.0, drop=("motion",))])


@pytest.mark.parametrize(
    ("name", "params"), NEVER_SKIP, ids=[f"{name}-{params}" for name, params in NEVER_SKIP]
)
@hypothesis_settings(max_examples=6)
@given(seed=st.integers(0, 2**16), windowing=WINDOWINGS, guidance=GUIDANCE)
def test_never_skipping_stepper_equals_euler_bit_for_bit(name, params, seed, windowing, guidance):
    model = toy(seed % 3)
    noise, cond = toy_inputs(seed)
    sigmas = flow_match_sigmas(STEPS)
    stepper = steppers.build(name, **params)
    ours = sample(
        model, noise, sigmas, cond, stepper=stepper, windowing=windowing, guidance=guidance
    )
    euler = sample(
        model, noise, sigmas, cond, stepper=Euler(), windowing=windowing, guidance=guidance
    )
    assert torch.equal(ours.latents, euler.latents)
    assert ours.nfe == euler.nfe


@hypothesis_settings(max_examples=12)
@given(
    seed=st.integers(0, 2**16),
    order=st.integers(0, 3),
    interval=st.integers(1, 5),
    warmup=st.integers(1, 4),
    spacing=st.sampled_from(["step", "sigma"]),
    form=st.sampled_from(["taylor", "newton"]),
    level=st.sampled_from(["layer", "output"]),
    guidance=GUIDANCE,
)
def test_alp_without_dynamic_functions_is_taylorseer(
    seed, order, interval, warmup, spacing, form, level, guidance
):
    model = toy()
    noise, cond = toy_inputs(seed)
    sigmas = flow_match_sigmas(12)
    common = {
        "interval": interval,
        "order": order,
        "warmup": warmup,
        "spacing": spacing,
        "form": form,
        "level": level,
    }
    alp = sample(
        model,
        noise,
        sigmas,
        cond,
        stepper=steppers.build("alp", dynamic=False, **common),
        guidance=guidance,
    )
    seer = sample(
        model,
        noise,
        sigmas,
        cond,
        stepper=steppers.build("taylorseer", **common),
        guidance=guidance,
    )
    assert torch.equal(alp.latents, seer.latents)
    assert [r.action for r in alp.trace] == [r.action for r in seer.trace]
    if interval > 1:
        assert alp.actions.get("predict", 0) > 0


def test_alp_dynamic_functions_change_the_prediction():
    model = toy()
    noise, cond = toy_inputs(1)
    sigmas = flow_match_sigmas(12)
    plain = sample(model, noise, sigmas, cond, stepper=steppers.build("alp", dynamic=False))
    for reading in ("rate", "std"):
        dynamic = sample(model, noise, sigmas, cond, stepper=steppers.build("alp", reading=reading))
        assert dynamic.nfe == plain.nfe
        assert torch.isfinite(dynamic.latents).all()
        assert not torch.equal(dynamic.latents, plain.latents)


@hypothesis_settings(max_examples=12, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    depth=st.integers(1, 5),
    order=st.integers(0, 3),
    interval=st.integers(2, 4),
    form=st.sampled_from(["taylor", "newton"]),
    data=st.data(),
)
def test_forecasting_groups_of_blocks_equals_forecasting_every_block_without_dynamic_functions(
    seed, depth, order, interval, form, data
):
    # The forecast is linear in the factors: the sum over a group's blocks of their forecast
    # residuals is the forecast of the group's summed residual (up to rounding).
    groups = data.draw(st.integers(1, depth), label="groups")
    model = toy(seed % 3, depth=depth)
    noise, cond = toy_inputs(seed)
    sigmas = flow_match_sigmas(10)
    common = {"interval": interval, "order": order, "warmup": 1, "form": form}
    per_block = sample(model, noise, sigmas, cond, stepper=steppers.build("taylorseer", **common))
    grouped = sample(
        model, noise, sigmas, cond, stepper=steppers.build("taylorseer", groups=groups, **common)
    )
    assert [r.action for r in grouped.trace] == [r.action for r in per_block.trace]
    torch.testing.assert_close(grouped.latents, per_block.latents, rtol=1e-4, atol=1e-5)
    assert grouped.peak_cache_bytes * depth == per_block.peak_cache_bytes * groups


def test_group_ends_split_blocks_into_contiguous_near_equal_runs():
    alp = steppers.build("alp", groups=3)
    assert alp.group_ends(7) == {1: 0, 3: 1, 6: 2}
    assert steppers.build("alp").group_ends(3) == {0: 0, 1: 1, 2: 2}
    with pytest.raises(ValueError, match="groups=3 exceeds the model's 2 blocks"):
        alp.group_ends(2)


def test_low_precision_factors_cost_half_the_bytes_and_stay_close():
    model = toy()
    noise, cond = toy_inputs(3)
    sigmas = flow_match_sigmas(12)
    full = sample(model, noise, sigmas, cond, stepper=steppers.build("alp"))
    half = sample(model, noise, sigmas, cond, stepper=steppers.build("alp", cache_dtype="bfloat16"))
    assert half.latents.dtype == full.latents.dtype
    assert [r.action for r in half.trace] == [r.action for r in full.trace]
    assert not torch.equal(half.latents, full.latents)
    torch.testing.assert_close(half.latents, full.latents, rtol=0.05, atol=0.05)
    # The factors halve; ALP's (order + 1) x layers weights halve too; the previous latent stays.
    assert half.peak_cache_bytes < 0.51 * full.peak_cache_bytes + noise.numel() * 4
