"""NFE counts full passes; every stepper runs inside sliding windows and with guidance."""

import itertools

import pytest
import torch
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from stepper_models import (
    CountingToy,
    black_box,
    example_configs,
    stepper_facts,
    toy,
    toy_inputs,
    toy_steppers,
)

from flashbench.sampling import Guidance, sample
from flashbench.schedule import flow_match_sigmas
from flashbench.settings import settings, steppers
from flashbench.steppers import Euler
from flashbench.steppers.base import Facts
from flashbench.windowing import Full, Sliding

STEPS = 10
# Every registered stepper's own examples (its Facts): a new stepper is tested here.
CONFIGS = example_configs(STEPS)


def build(config: str):
    name, params = CONFIGS[config]
    return steppers.build(name, **params)


@pytest.mark.parametrize("config", sorted(CONFIGS))
@hypothesis_settings(max_examples=5)
@given(
    seed=st.integers(0, 2**16),
    windowing=st.sampled_from(
        [Full(), Sliding(window=4, overlap=2), Sliding(window=4, overlap=0, shift=1)]
    ),
    guidance=st.sampled_from([None, Guidance(scale=2.0, drop=("motion",))]),
)
def test_nfe_is_the_number_of_full_passes_and_latents_stay_in_range(
    config, seed, windowing, guidance
):
    model = CountingToy()
    noise, cond = toy_inputs(seed, frames=7)
    sigmas = flow_match_sigmas(STEPS)
    result = sample(
        model, noise, sigmas, cond, stepper=build(config), windowing=windowing, guidance=guidance
    )
    assert result.nfe == model.passes
    assert result.nfe == sum(r.action == "compute" for r in result.trace)
    assert set(result.actions) <= {"compute", "predict", "reuse"}
    reference = sample(
        model, noise, sigmas, cond, stepper=Euler(), windowing=windowing, guidance=guidance
    )
    assert torch.isfinite(result.latents).all()
    bound = 4 * reference.latents.abs().max()
    assert result.latents.abs().max() <= bound


def test_accelerators_skip_passes_and_report_their_cache():
    model = toy()
    noise, cond = toy_inputs(3, frames=8)
    sigmas = flow_match_sigmas(20)
    euler = sample(model, noise, sigmas, cond)
    for config, (name, _) in CONFIGS.items():
        facts = stepper_facts(name, STEPS)
        if not facts.accelerates:
            continue
        result = sample(
            model, noise, sigmas, cond, stepper=build(config), guidance=Guidance(2.0, ("motion",))
        )
        assert result.nfe < 2 * euler.nfe, config
        if facts.caches:
            assert result.peak_cache_bytes > 0, config


def test_guidance_branches_keep_separate_caches():
    model = toy()
    noise, cond = toy_inputs(4, frames=6)
    sigmas = flow_match_sigmas(10)
    result = sample(
        model,
        noise,
        sigmas,
        cond,
        stepper=steppers.build("alp"),
        guidance=Guidance(3.0, ("motion",)),
    )
    cond_actions = [r.action for r in result.trace if r.branch == "cond"]
    uncond_actions = [r.action for r in result.trace if r.branch == "uncond"]
    assert cond_actions == uncond_actions and "predict" in cond_actions
    # One branch's cached features alone would give both branches the same prediction.
    single = sample(model, noise, sigmas, cond, stepper=steppers.build("alp"))
    assert result.peak_cache_bytes == 2 * single.peak_cache_bytes


def test_adaptive_alp_follows_the_threshold_and_caps_the_gap():
    model = toy()
    noise, cond = toy_inputs(5, frames=6)
    sigmas = flow_match_sigmas(24)
    nfes = []
    for threshold in (0.0, 0.02, 0.1, 10.0):
        result = sample(
            model,
            noise,
            sigmas,
            cond,
            stepper=steppers.build("alp", threshold=threshold, interval=6),
        )
        nfes.append(result.nfe)
        computed = [r.step for r in result.trace if r.action == "compute"]
        assert max(b - a for a, b in itertools.pairwise(computed)) <= 6
    assert nfes[0] == 24
    assert nfes == sorted(nfes, reverse=True) and nfes[-1] < nfes[0]


@pytest.mark.parametrize(
    "name", [name for name in toy_steppers(STEPS) if stepper_facts(name, STEPS).layered]
)
def test_layered_steppers_refuse_a_black_box_denoiser(name):
    noise, cond = toy_inputs(0)
    with pytest.raises(ValueError, match="output"):
        sample(black_box, noise, flow_match_sigmas(4), cond, stepper=steppers.build(name))


@pytest.mark.parametrize(
    "name",
    [name for name in steppers.names() if stepper_facts(name, STEPS).black_box is not None],
)
def test_output_level_forecasts_a_black_box_denoiser(name):
    noise, cond = toy_inputs(0)
    stepper = steppers.build(name, **stepper_facts(name, STEPS).black_box)
    result = sample(black_box, noise, flow_match_sigmas(12), cond, stepper=stepper)
    assert result.actions["predict"] > 0 and torch.isfinite(result.latents).all()


@pytest.mark.parametrize("name", steppers.names())
def test_every_registered_stepper_declares_its_facts(name):
    facts = stepper_facts(name, STEPS)
    assert isinstance(facts, Facts), f"stepper {name!r} declares no facts (Stepper.facts)"
    assert facts.examples, f"stepper {name!r} declares no example parameters"


def test_every_named_setting_builds_and_samples():
    model = toy()
    noise, cond = toy_inputs(0, frames=10)
    for name in settings.names():
        if stepper_facts(settings.get(name).stepper, 8).diffusers:
            continue
        stepper, windowing, guidance = settings.get(name).build()
        result = sample(
            model,
            noise,
            flow_match_sigmas(8),
            cond,
            stepper=stepper,
            windowing=windowing,
            guidance=guidance,
        )
        assert torch.isfinite(result.latents).all(), name


@pytest.mark.parametrize("config", sorted(CONFIGS))
@hypothesis_settings(max_examples=3)
@given(
    seed=st.integers(0, 2**16),
    windowing=st.sampled_from([Full(), Sliding(window=4, overlap=2)]),
    guidance=st.sampled_from([None, Guidance(scale=2.0, drop=("motion",))]),
)
def test_replayed_flop_counts_equal_counting_every_op(config, seed, windowing, guidance):
    # The toy declares flops_follow_shapes, so counted sampling replays repeated passes; the same
    # model with the declaration taken back is counted op by op.
    replayed, counted = toy(), toy()
    counted.flops_follow_shapes = False
    noise, cond = toy_inputs(seed, frames=7)
    sigmas = flow_match_sigmas(STEPS)
    runs = [
        sample(
            model,
            noise,
            sigmas,
            cond,
            stepper=build(config),
            windowing=windowing,
            guidance=guidance,
            count_flops=True,
        )
        for model in (replayed, counted)
    ]
    assert [r.flops for r in runs[0].trace] == [r.flops for r in runs[1].trace]
    assert runs[0].flops == runs[1].flops > 0
    assert torch.equal(runs[0].latents, runs[1].latents)
    assert "forward" not in vars(replayed) and not any(
        "forward" in vars(b) for b in replayed.blocks
    )
