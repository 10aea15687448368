"""diffusers' own caches run as the ``diffusers_cache`` stepper: skips counted honestly, state per branch and sample."""

import contextlib
import sys

import pytest
import torch
from wan_models import layers_per_call, noise, text_embeddings, tiny_transformer

from flashbench.models.toy import ToyDenoiser
from flashbench.models.wan.denoiser import PROMPT, WanDenoiser, wan_cond
from flashbench.sampling import Guidance, sample
from flashbench.schedule import flow_match_sigmas
from flashbench.settings import steppers
from flashbench.steppers.diffusers_cache import DiffusersCache
from flashbench.windowing import Sliding

STEPS = 8
CFG = Guidance(scale=3.0, drop=(PROMPT,))
EXAMPLES = DiffusersCache.facts(STEPS).examples


def inputs():
    return noise(0), flow_match_sigmas(STEPS), wan_cond(text_embeddings(1), text_embeddings(2))


@pytest.mark.parametrize("label", sorted(EXAMPLES))
def test_skipping_config_changes_the_output_and_nfe_counts_only_full_passes(label):
    transformer = tiny_transformer()
    model = WanDenoiser(transformer)
    x, sigmas, cond = inputs()
    euler = sample(model, x, sigmas, cond, guidance=CFG)
    calls = layers_per_call(transformer)
    result = sample(
        model,
        x,
        sigmas,
        cond,
        stepper=steppers.build("diffusers_cache", **EXAMPLES[label]),
        guidance=CFG,
    )
    assert not torch.equal(result.latents, euler.latents)
    assert torch.isfinite(result.latents).all()
    total = 3 * len(transformer.blocks)
    assert len(calls) == euler.nfe
    assert result.nfe == sum(len(ran) == total for ran in calls) < euler.nfe
    assert result.actions.get("partial", 0) == sum(0 < len(ran) < total for ran in calls)
    assert result.peak_cache_bytes > 0
    # The transformer is plain again: Euler after the cached run is Euler before it.
    assert not transformer.is_cache_enabled
    assert torch.equal(sample(model, x, sigmas, cond, guidance=CFG).latents, euler.latents)


@pytest.mark.parametrize("label", sorted(EXAMPLES))
def test_each_guidance_branch_and_each_sample_starts_its_own_state(label):
    model = WanDenoiser(tiny_transformer())
    x, sigmas, cond = inputs()
    stepper = steppers.build("diffusers_cache", **EXAMPLES[label])
    first = sample(model, x, sigmas, cond, stepper=stepper, guidance=CFG)
    second = sample(model, x, sigmas, cond, stepper=stepper, guidance=CFG)
    assert torch.equal(first.latents, second.latents)
    assert first.actions == second.actions
    if label != "first_block_cache":  # its skips follow each branch's own residual change
        branch = {b: [r.action for r in first.trace if r.branch == b] for b in ("cond", "uncond")}
        assert branch["cond"] == branch["uncond"]
    unguided = sample(model, x, sigmas, cond, stepper=stepper)
    assert first.peak_cache_bytes == 2 * unguided.peak_cache_bytes


def test_pab_keeps_its_broadcast_per_branch_where_diffusers_shares_one_state():
    # diffusers' PAB hook keeps one state for every context: under separate CFG calls the
    # unconditional call would reuse the conditional call's attention.
    model = WanDenoiser(tiny_transformer())
    x, sigmas, cond = inputs()
    stepper = steppers.build("diffusers_cache", **EXAMPLES["pyramid_attention_broadcast"])
    result = sample(model, x, sigmas, cond, stepper=stepper, guidance=CFG)
    actions = [r.action for r in result.trace if r.branch == "uncond"]
    assert actions == ["compute", "partial"] * (STEPS // 2)


def test_refuses_a_model_that_is_not_a_diffusers_transformer():
    x, sigmas, _ = inputs()
    toy = ToyDenoiser(channels=4, dim=8, depth=2)
    with pytest.raises(ValueError, match=r"needs a diffusers transformer .* got ToyDenoiser"):
        sample(toy, x, sigmas, stepper=steppers.build("diffusers_cache"))


def test_missing_diffusers_names_the_wan_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "diffusers.hooks", None)
    with pytest.raises(ValueError, match=r"flashbench\[wan\]"):
        steppers.build("diffusers_cache")


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"config": "first_block"}, "did you mean 'first_block_cache'"),
        ({"config": "faster_cache"}, "is not a diffusers cache"),
        ({"args": {"treshold": 0.1}}, "FirstBlockCacheConfig"),
        ({"config": "mag_cache"}, "mag_ratios"),
        (
            {"config": "pyramid_attention_broadcast", "args": {"current_timestep_callback": 1}},
            "callback",
        ),
    ],
)
def test_bad_config_or_args_raise_a_clear_value_error(params, words):
    with pytest.raises(ValueError, match=words):
        steppers.build("diffusers_cache", **params)


@pytest.mark.parametrize("label", sorted(EXAMPLES))
def test_the_cache_is_enabled_once_per_sample_and_stays_on_between_its_steps(label):
    transformer = tiny_transformer()
    enabled, disabled, on = [], [], []
    enable, disable = transformer.enable_cache, transformer.disable_cache
    transformer.enable_cache = lambda config: enabled.append(1) or enable(config)
    transformer.disable_cache = lambda: disabled.append(1) or disable()
    _, sigmas, cond = inputs()
    sample(
        WanDenoiser(transformer),
        noise(0, frames=5),
        sigmas,
        cond,
        stepper=steppers.build("diffusers_cache", **EXAMPLES[label]),
        windowing=Sliding(window=3, overlap=1, shift=1),
        guidance=CFG,
        callback=lambda end: on.append(transformer.is_cache_enabled),
    )
    assert (len(enabled), len(disabled)) == (1, 1)
    assert on == [True] * STEPS
    assert not transformer.is_cache_enabled


def stop_at_third_call():
    """A hook or callback that raises on its third call."""
    calls = []

    def stop(*_):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("stop")

    return stop


def mag_cache_failure(transformer, run) -> None:
    """Euler on ``transformer`` before and after a MagCache sample that ``run`` makes fail."""
    model = WanDenoiser(transformer)
    x, sigmas, cond = inputs()
    euler = sample(model, x, sigmas, cond, guidance=CFG)
    run(model, x, sigmas, cond, steppers.build("diffusers_cache", **EXAMPLES["mag_cache"]))
    assert not transformer.is_cache_enabled
    # MagCache's hooks would run without a context here: Euler is Euler only on a plain model.
    assert torch.equal(sample(model, x, sigmas, cond, guidance=CFG).latents, euler.latents)


def test_a_sample_failing_in_the_transformer_leaves_it_plain():
    transformer = tiny_transformer()

    def run(model, x, sigmas, cond, stepper):
        handle = transformer.blocks[0].register_forward_hook(stop_at_third_call())
        # pytest.raises keeps the traceback, and with it the failed sample's caches.
        with pytest.raises(RuntimeError, match="stop"):
            sample(model, x, sigmas, cond, stepper=stepper, guidance=CFG)
        handle.remove()

    mag_cache_failure(transformer, run)


def test_a_sample_failing_between_steps_leaves_the_transformer_plain_once_its_error_is_handled():
    def run(model, x, sigmas, cond, stepper):
        with contextlib.suppress(RuntimeError):
            sample(
                model,
                x,
                sigmas,
                cond,
                stepper=stepper,
                guidance=CFG,
                callback=stop_at_third_call(),
            )

    mag_cache_failure(tiny_transformer(), run)
