"""Our steppers as a hook inside unmodified Wan pipelines give the latents of ``sample`` with the same setting."""

import pytest
import torch
from wan_models import (
    HEIGHT,
    LATENT_SHAPE,
    NUM_FRAMES,
    WIDTH,
    first_frame,
    i2v_pipeline,
    noise,
    pipeline_sigmas,
    run_pipeline,
    t2v_pipeline,
    text_embeddings,
    tiny_transformer,
)

from flashbench.models.wan.denoiser import PROMPT, WanDenoiser, wan_cond
from flashbench.models.wan.hooks import StepperHookConfig, apply_stepper_hook, remove_stepper_hook
from flashbench.sampling import Guidance, sample
from flashbench.settings import steppers

STEPS = 10
CFG = Guidance(scale=3.0, drop=(PROMPT,))
# Settings that predict or reuse on 10 steps, and one that never skips.
SETTINGS = [
    ("alp", {}),
    ("alp", {"form": "newton", "threshold": 0.05, "interval": 4}),
    ("taylorseer", {"interval": 3, "order": 2}),
    ("teacache", {"threshold": 3.0}),
    ("fora", {"interval": 3}),
    ("first_block_cache", {"threshold": 0.5}),
    ("alp", {"interval": 1}),
]


@pytest.mark.parametrize(("name", "params"), SETTINGS, ids=str)
def test_stepper_hook_in_wan_pipeline_equals_sample(name, params):
    transformer = tiny_transformer()
    passes = []
    transformer.blocks[-1].register_forward_hook(lambda *_: passes.append(1))
    pipe = t2v_pipeline(transformer)
    x, text, negative = noise(0), text_embeddings(1), text_embeddings(2)
    stepper = steppers.build(name, **params)
    expected = sample(
        WanDenoiser(transformer),
        x,
        pipeline_sigmas(pipe, STEPS),
        wan_cond(text, negative),
        stepper=stepper,
        guidance=CFG,
    )
    passes.clear()
    apply_stepper_hook(transformer, StepperHookConfig(stepper))
    hooked = run_pipeline(pipe, x, text, negative, STEPS)
    assert torch.equal(hooked, expected.latents)
    assert len(passes) == expected.nfe
    # The pipeline reset the branch caches: a second call is the same, not a continuation.
    assert torch.equal(run_pipeline(pipe, x, text, negative, STEPS), hooked)
    remove_stepper_hook(transformer)
    plain = run_pipeline(pipe, x, text, negative, STEPS)
    euler = sample(
        WanDenoiser(transformer),
        x,
        pipeline_sigmas(pipe, STEPS),
        wan_cond(text, negative),
        guidance=CFG,
    )
    assert torch.equal(plain, euler.latents)
    if expected.nfe < 2 * STEPS:
        assert not torch.equal(plain, hooked)


def test_stepper_hook_in_image_to_video_pipeline_equals_sample():
    transformer = tiny_transformer(image_to_video=True)
    pipe = i2v_pipeline(transformer)
    x, text, negative, image = noise(0), text_embeddings(1), text_embeddings(2), first_frame(3)
    with torch.no_grad():
        image_embeds = pipe.encode_image(image, "cpu")
        pixels = pipe.video_processor.preprocess(image, height=HEIGHT, width=WIDTH)
        _, condition = pipe.prepare_latents(
            pixels.float(),
            1,
            LATENT_SHAPE[1],
            HEIGHT,
            WIDTH,
            NUM_FRAMES,
            torch.float32,
            "cpu",
            None,
            x,
        )
    stepper = steppers.build("alp")
    cond = wan_cond(text, negative, image_embeds=image_embeds, condition=condition)
    expected = sample(
        WanDenoiser(transformer),
        x,
        pipeline_sigmas(pipe, STEPS),
        cond,
        stepper=stepper,
        guidance=CFG,
    )
    # The I2V pipeline's cache contexts carry no step count: the config gives it.
    apply_stepper_hook(transformer, StepperHookConfig(stepper, num_inference_steps=STEPS))
    hooked = run_pipeline(pipe, x, text, negative, STEPS, image=image)
    assert torch.equal(hooked, expected.latents)


def test_stepper_hook_refuses_what_it_cannot_run():
    with pytest.raises(ValueError, match="plan/advance"):
        StepperHookConfig(steppers.build("fewer_steps"))
    transformer = tiny_transformer(image_to_video=True)
    apply_stepper_hook(transformer, StepperHookConfig(steppers.build("alp")))
    with pytest.raises(ValueError, match="already"):
        apply_stepper_hook(transformer, StepperHookConfig(steppers.build("fora")))
    pipe = i2v_pipeline(transformer)
    with pytest.raises(ValueError, match="num_inference_steps"):
        run_pipeline(
            pipe, noise(0), text_embeddings(1), text_embeddings(2), STEPS, image=first_frame(3)
        )
