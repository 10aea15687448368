"""The Wan adapter is diffusers' transformer and pipelines, bit for bit, under every stepper."""

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

from flashbench.denoiser import is_layered
from flashbench.flops import count_flops
from flashbench.models.wan.denoiser import PROMPT, WanDenoiser, wan_cond
from flashbench.sampling import Guidance, sample
from flashbench.schedule import flow_match_sigmas
from flashbench.settings import steppers
from flashbench.steppers import Euler
from flashbench.windowing import Full, Sliding

STEPS = 4
CFG = Guidance(scale=3.0, drop=(PROMPT,))


@pytest.mark.parametrize("image_to_video", [False, True])
@pytest.mark.parametrize("sigma", [1.0, 0.73, 0.02])
def test_adapter_forward_equals_diffusers_forward_bit_for_bit(image_to_video, sigma):
    transformer = tiny_transformer(image_to_video)
    model = WanDenoiser(transformer)
    assert is_layered(model)
    x = torch.cat([noise(0), noise(1)])
    text = torch.cat([text_embeddings(2), text_embeddings(3)])
    sigmas = torch.tensor([sigma, sigma / 2])
    condition = torch.randn(2, 8, LATENT_SHAPE[2], *LATENT_SHAPE[3:]) if image_to_video else None
    image = torch.randn(2, 17, 4) if image_to_video else None
    inputs = x if condition is None else torch.cat([x, condition], dim=1)
    with torch.no_grad():
        expected = transformer(inputs, sigmas * 1000, text, image, return_dict=False)[0]
        ours = model(x, sigmas, wan_cond(text, image_embeds=image, condition=condition))
    assert torch.equal(ours, expected)


@pytest.mark.parametrize("guidance_scale", [1.0, 3.0])
def test_euler_through_sample_equals_wan_pipeline(guidance_scale):
    transformer = tiny_transformer()
    pipe = t2v_pipeline(transformer)
    x, text, negative = noise(0), text_embeddings(1), text_embeddings(2)
    expected = run_pipeline(pipe, x, text, negative, STEPS, guidance_scale)
    guidance = CFG if guidance_scale > 1 else None
    ours = sample(
        WanDenoiser(transformer),
        x,
        pipeline_sigmas(pipe, STEPS),
        wan_cond(text, negative),
        guidance=guidance,
    )
    assert torch.equal(ours.latents, expected)
    assert ours.nfe == STEPS * (2 if guidance else 1)
    # FlashBench's own schedule walks the scheduler's sigmas to float32 rounding.
    own = sample(
        WanDenoiser(transformer),
        x,
        flow_match_sigmas(STEPS),
        wan_cond(text, negative),
        guidance=guidance,
    )
    torch.testing.assert_close(own.latents, expected, atol=1e-5, rtol=1e-5)


def test_euler_through_sample_equals_wan_image_to_video_pipeline():
    transformer = tiny_transformer(image_to_video=True)
    pipe = i2v_pipeline(transformer)
    x, text, negative, image = noise(0), text_embeddings(1), text_embeddings(2), first_frame(3)
    expected = run_pipeline(pipe, x, text, negative, STEPS, image=image)
    # The pipeline's own conditioning: CLIP features and the mask + encoded first frame.
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
    cond = wan_cond(text, negative, image_embeds=image_embeds, condition=condition)
    ours = sample(WanDenoiser(transformer), x, pipeline_sigmas(pipe, STEPS), cond, guidance=CFG)
    assert torch.equal(ours.latents, expected)


def never_skip_configs() -> list[tuple[str, dict]]:
    return [
        (name, dict(params))
        for name in steppers.names()
        for params in type(steppers.build(name)).facts(STEPS).never_skip
    ]


@pytest.mark.parametrize(("name", "params"), never_skip_configs(), ids=str)
@pytest.mark.parametrize("windowing", [Full(), Sliding(window=3, overlap=1)], ids=str)
def test_never_skipping_stepper_on_wan_equals_euler_bit_for_bit(name, params, windowing):
    model = WanDenoiser(tiny_transformer())
    x, cond = noise(0), wan_cond(text_embeddings(1), text_embeddings(2))
    sigmas = flow_match_sigmas(STEPS)
    stepper = steppers.build(name, **params)
    ours = sample(model, x, sigmas, cond, stepper=stepper, windowing=windowing, guidance=CFG)
    euler = sample(model, x, sigmas, cond, stepper=Euler(), windowing=windowing, guidance=CFG)
    assert torch.equal(ours.latents, euler.latents)
    assert ours.nfe == euler.nfe


def example_configs() -> list[tuple[str, dict]]:
    steps = 8
    return [
        (name, dict(params))
        for name in steppers.names()
        for params in type(steppers.build(name)).facts(steps).examples.values()
    ]


@pytest.mark.parametrize(("name", "params"), example_configs(), ids=str)
def test_nfe_on_wan_counts_the_transformer_passes(name, params):
    transformer = tiny_transformer()
    passes = []
    # The last block's query projection runs only when its attention really computes: diffusers'
    # cache hooks replace the block's forward, so a hook on the block fires on skips too.
    transformer.blocks[-1].attn1.to_q.register_forward_hook(lambda *_: passes.append(1))
    model = WanDenoiser(transformer)
    x, cond = noise(0, frames=4), wan_cond(text_embeddings(1), text_embeddings(2))
    result = sample(
        model,
        x,
        flow_match_sigmas(8),
        cond,
        stepper=steppers.build(name, **params),
        windowing=Sliding(window=3, overlap=1),
        guidance=CFG,
        count_flops=True,
    )
    assert result.nfe == len(passes)
    # Both windows are 3 frames wide and both prompts equally long: every full pass costs the
    # same, and partial passes (diffusers' hooks included) add to the passes, up to a pass each.
    with torch.no_grad():
        _, per_pass = count_flops(model, x[:, :, :3], torch.tensor([0.5]), cond.window(0, 3))
    assert result.nfe * per_pass <= result.flops <= len(result.trace) * per_pass
    assert torch.isfinite(result.latents).all()
    facts = type(steppers.build(name)).facts(8)
    if facts.caches:
        assert result.peak_cache_bytes > 0


def test_windowing_cuts_the_image_to_video_condition_with_the_latent():
    model = WanDenoiser(tiny_transformer(image_to_video=True))
    condition = torch.randn(1, 8, LATENT_SHAPE[2], *LATENT_SHAPE[3:])
    cond = wan_cond(text_embeddings(1), image_embeds=torch.randn(1, 17, 4), condition=condition)
    x, sigma = noise(0), torch.tensor([0.5])
    window = cond.window(1, 3)
    assert torch.equal(window.temporal["condition"].transpose(1, 2), condition[:, :, 1:3])
    with torch.no_grad():
        expected = model.transformer(
            torch.cat([x[:, :, 1:3], condition[:, :, 1:3]], dim=1),
            sigma * 1000,
            text_embeddings(1),
            cond.static["image_embeds"],
            return_dict=False,
        )[0]
        assert torch.equal(model(x[:, :, 1:3], sigma, window), expected)


@pytest.mark.parametrize(
    ("image_to_video", "cond", "words"),
    [
        (False, wan_cond(text_embeddings(1)).without((PROMPT,)), "negative_prompt_embeds"),
        (False, wan_cond(text_embeddings(1), image_embeds=torch.randn(1, 17, 4)), "takes no"),
        (True, wan_cond(text_embeddings(1), image_embeds=torch.randn(1, 17, 4)), "input channels"),
        (True, wan_cond(text_embeddings(1), condition=torch.randn(1, 8, 5, 4, 4)), "needs"),
    ],
)
def test_wrong_conditioning_names_what_is_missing(image_to_video, cond, words):
    model = WanDenoiser(tiny_transformer(image_to_video))
    with pytest.raises(ValueError, match=words):
        model(noise(0), torch.tensor([0.5]), cond)


def _t2v_flops_by_hand(config, latent_shape, text_tokens: int) -> int:
    """One T2V pass's convolution, linear and attention FLOPs (2 per multiply-add), from the config."""
    b, channels, frames, height, width = latent_shape
    pt, ph, pw = config.patch_size
    inner = config.num_attention_heads * config.attention_head_dim
    tokens = (frames // pt) * (height // ph) * (width // pw)

    def linear(n, width_in, width_out):
        return 2 * n * width_in * width_out

    def attention(queries, keys):
        return 2 * 2 * b * queries * keys * inner

    embed = linear(b * tokens, channels * pt * ph * pw, inner)  # the patch convolution
    embed += (
        linear(b, config.freq_dim, inner) + linear(b, inner, inner) + linear(b, inner, 6 * inner)
    )
    embed += linear(b * text_tokens, config.text_dim, inner) + linear(b * text_tokens, inner, inner)
    block = 4 * linear(b * tokens, inner, inner) + attention(tokens, tokens)  # self-attention
    block += 2 * linear(b * tokens, inner, inner) + 2 * linear(b * text_tokens, inner, inner)
    block += attention(tokens, text_tokens)  # cross-attention to the text
    block += linear(b * tokens, inner, config.ffn_dim) + linear(b * tokens, config.ffn_dim, inner)
    head = linear(b * tokens, inner, config.out_channels * pt * ph * pw)
    return embed + config.num_layers * block + head


def test_a_pass_counts_the_transformers_convolution_linear_layers_and_attention():
    transformer = tiny_transformer()
    model = WanDenoiser(transformer)
    x, text = noise(0), text_embeddings(1)
    with torch.no_grad():
        _, flops = count_flops(model, x, torch.tensor([0.5]), wan_cond(text, text_embeddings(2)))
    assert flops == _t2v_flops_by_hand(transformer.config, LATENT_SHAPE, text.shape[1])
    # Guided Euler: both branches every step (the negative prompt has the prompt's length).
    result = sample(
        model,
        x,
        flow_match_sigmas(STEPS),
        wan_cond(text, text_embeddings(2)),
        guidance=CFG,
        count_flops=True,
    )
    assert result.flops == STEPS * 2 * flops
