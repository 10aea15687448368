"""cache-dit's DBCache runs as the ``cache_dit`` stepper: what cache-dit's own pipeline hooks give, skips counted honestly."""

import sys

import pytest
import torch
from wan_models import (
    layers_per_call,
    noise,
    pipeline_sigmas,
    run_pipeline,
    t2v_pipeline,
    text_embeddings,
    tiny_transformer,
)

from flashbench.models.toy import ToyDenoiser
from flashbench.models.wan.denoiser import PROMPT, WanDenoiser, wan_cond
from flashbench.sampling import Guidance, sample
from flashbench.settings import steppers
from flashbench.steppers.cache_dit import CacheDiT, import_cache_dit

cache_dit = pytest.importorskip("cache_dit", reason="pip install 'flashbench[wan]'")

STEPS = 8
CFG = Guidance(scale=3.0, drop=(PROMPT,))
EXAMPLES = CacheDiT.facts(STEPS).examples


@pytest.mark.parametrize("label", sorted(EXAMPLES))
def test_stepper_equals_cache_dit_on_an_unmodified_wan_pipeline(label):
    # cache-dit's own way: the whole pipeline, its separate-CFG bookkeeping telling the
    # conditional call of each step from the unconditional one.
    params = EXAMPLES[label]
    x, text, negative = noise(0), text_embeddings(1), text_embeddings(2)
    transformer = tiny_transformer()
    pipe = t2v_pipeline(transformer)
    ours = sample(
        WanDenoiser(transformer),
        x,
        pipeline_sigmas(pipe, STEPS),
        wan_cond(text, negative),
        stepper=steppers.build("cache_dit", **params),
        guidance=CFG,
    )
    configs = CacheDiT(**params).configs(STEPS)
    configs["cache_config"].enable_separate_cfg = True
    cache_dit.enable_cache(pipe, **configs)
    try:
        theirs = run_pipeline(pipe, x, text, negative, STEPS)
    finally:
        cache_dit.disable_cache(pipe)
    assert ours.actions.get("partial", 0) > 0
    assert torch.equal(ours.latents, theirs)


@pytest.mark.parametrize("label", sorted(EXAMPLES))
def test_skips_change_the_output_and_nfe_counts_only_full_passes(label):
    transformer = tiny_transformer()
    model = WanDenoiser(transformer)
    x, sigmas = noise(0), pipeline_sigmas(t2v_pipeline(transformer), STEPS)
    cond = wan_cond(text_embeddings(1), text_embeddings(2))
    euler = sample(model, x, sigmas, cond, guidance=CFG)
    calls = layers_per_call(transformer)
    stepper = steppers.build("cache_dit", **EXAMPLES[label])
    result = sample(model, x, sigmas, cond, stepper=stepper, guidance=CFG)
    assert not torch.equal(result.latents, euler.latents)
    total = 3 * len(transformer.blocks)
    assert len(calls) == euler.nfe
    assert result.nfe == sum(len(ran) == total for ran in calls) < euler.nfe
    assert result.actions["partial"] == sum(0 < len(ran) < total for ran in calls)
    # Each branch has its own context: the unguided run holds half the guided one's bytes.
    unguided = sample(model, x, sigmas, cond, stepper=stepper)
    assert result.peak_cache_bytes == 2 * unguided.peak_cache_bytes > 0
    # Each sample starts from no context, and the transformer is plain again afterwards.
    again = sample(model, x, sigmas, cond, stepper=stepper, guidance=CFG)
    assert torch.equal(again.latents, result.latents)
    assert not hasattr(transformer, "_context_manager")
    assert torch.equal(sample(model, x, sigmas, cond, guidance=CFG).latents, euler.latents)


def test_taylorseer_calibrator_forecasts_where_plain_dbcache_reuses():
    model = WanDenoiser(tiny_transformer())
    x, cond = noise(0), wan_cond(text_embeddings(1), text_embeddings(2))
    sigmas = pipeline_sigmas(t2v_pipeline(model.transformer), STEPS)
    runs = {
        label: sample(model, x, sigmas, cond, stepper=steppers.build("cache_dit", **params))
        for label, params in EXAMPLES.items()
    }
    assert runs["dbcache"].actions == runs["dbcache_taylorseer"].actions
    assert not torch.equal(runs["dbcache"].latents, runs["dbcache_taylorseer"].latents)


def test_refuses_a_model_that_is_not_a_diffusers_transformer():
    toy = ToyDenoiser(channels=4, dim=8, depth=2)
    with pytest.raises(ValueError, match=r"needs a diffusers transformer .* got ToyDenoiser"):
        sample(toy, noise(0), torch.linspace(1, 0, 5), stepper=steppers.build("cache_dit"))


def test_too_many_compute_blocks_for_the_transformer_is_a_clear_error():
    model = WanDenoiser(tiny_transformer())
    cond = wan_cond(text_embeddings(1))
    with pytest.raises(ValueError, match=r"Fn_compute_blocks=8 .* exceeds the transformer's 2"):
        sample(model, noise(0), torch.linspace(1, 0, 5), cond, stepper=steppers.build("cache_dit"))


def test_missing_cache_dit_names_the_wan_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "cache_dit", None)
    with pytest.raises(ValueError, match=r"flashbench\[wan\]"):
        import_cache_dit()


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"args": {"Fn_compute_block": 1}}, "DBCacheConfig"),
        ({"args": {"enable_separate_cfg": True}}, "sets itself"),
        ({"args": {"num_inference_steps": 8}}, "sets itself"),
        ({"args": [1]}, "mapping"),
        ({"taylorseer_order": 0}, "integer >= 1"),
        ({"taylorseer_order": True}, "integer >= 1"),
    ],
)
def test_bad_args_raise_a_clear_value_error(params, words):
    with pytest.raises(ValueError, match=words):
        steppers.build("cache_dit", **params)
