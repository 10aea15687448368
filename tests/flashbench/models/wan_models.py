"""Tiny random-init Wan transformers, VAE and pipelines built from configs (no weights)."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

diffusers = pytest.importorskip(
    "diffusers", reason="the Wan adapter tests need diffusers: pip install 'flashbench[wan]'"
)
for package in ("transformers", "accelerate"):
    pytest.importorskip(
        package, reason=f"the Wan tests need {package}: pip install 'flashbench[wan]'"
    )

from diffusers import (  # noqa: E402
    AutoencoderKLWan,
    FlowMatchEulerDiscreteScheduler,
    WanImageToVideoPipeline,
    WanPipeline,
    WanTransformer3DModel,
)
from transformers import (  # noqa: E402
    CLIPImageProcessor,
    CLIPVisionConfig,
    CLIPVisionModelWithProjection,
)

LATENT_CHANNELS = 4
TEXT_DIM, TEXT_TOKENS = 12, 5
IMAGE_DIM = 4
# Pixels: 5 latent frames of 4 x 4 (2 x 2 tokens each) from 17 frames of 32 x 32.
NUM_FRAMES, HEIGHT, WIDTH = 17, 32, 32
LATENT_SHAPE = (1, LATENT_CHANNELS, 5, 4, 4)


def tiny_transformer(image_to_video: bool = False, seed: int = 0) -> WanTransformer3DModel:
    """2 layers, 2 heads of dim 8; I2V adds the mask + first-frame channels and image tokens."""
    torch.manual_seed(seed)
    inner = 2 * 8
    model = WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=8,
        in_channels=LATENT_CHANNELS * 2 + 4 if image_to_video else LATENT_CHANNELS,
        out_channels=LATENT_CHANNELS,
        text_dim=TEXT_DIM,
        freq_dim=16,
        ffn_dim=32,
        num_layers=2,
        cross_attn_norm=True,
        image_dim=IMAGE_DIM if image_to_video else None,
        added_kv_proj_dim=inner if image_to_video else None,
        rope_max_seq_len=32,
    )
    return model.eval()


def tiny_vae(seed: int = 0) -> AutoencoderKLWan:
    torch.manual_seed(seed)
    return AutoencoderKLWan(
        base_dim=3,
        z_dim=LATENT_CHANNELS,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
        latents_mean=[0.1 * i for i in range(LATENT_CHANNELS)],
        latents_std=[1.0 + 0.1 * i for i in range(LATENT_CHANNELS)],
    ).eval()


def scheduler() -> FlowMatchEulerDiscreteScheduler:
    return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=5.0)


def t2v_pipeline(transformer: WanTransformer3DModel) -> WanPipeline:
    # No VAE, text encoder or tokenizer: latents out, prompt embeddings in.
    pipe = WanPipeline(
        tokenizer=None, text_encoder=None, vae=None, scheduler=scheduler(), transformer=transformer
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def i2v_pipeline(transformer: WanTransformer3DModel) -> WanImageToVideoPipeline:
    # The pipeline refuses ``image_embeds`` next to the ``image`` its VAE encodes, so a tiny
    # CLIP encodes the image: 16 patches + the class token, of width IMAGE_DIM.
    torch.manual_seed(1)
    encoder = CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=IMAGE_DIM,
            projection_dim=IMAGE_DIM,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=HEIGHT,
            intermediate_size=8,
            patch_size=8,
        )
    ).eval()
    pipe = WanImageToVideoPipeline(
        tokenizer=None,
        text_encoder=None,
        vae=tiny_vae(),
        scheduler=scheduler(),
        transformer=transformer,
        image_encoder=encoder,
        image_processor=CLIPImageProcessor(crop_size=HEIGHT, size=HEIGHT),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def text_embeddings(seed: int, batch: int = 1) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, TEXT_TOKENS, TEXT_DIM, generator=g)


def first_frame(seed: int) -> Tensor:
    """An image in [0, 1], ``[1, 3, H, W]``, as the I2V pipeline's ``image``."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, HEIGHT, WIDTH, generator=g)


def noise(seed: int, frames: int = LATENT_SHAPE[2]) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    shape = (*LATENT_SHAPE[:2], frames, *LATENT_SHAPE[3:])
    return torch.randn(shape, generator=g)


def layers_per_call(transformer: WanTransformer3DModel) -> list[set]:
    """Per transformer call, the block layers that really ran (their query/input projections)."""
    calls: list[set] = []
    transformer.register_forward_pre_hook(lambda *_: calls.append(set()))
    for index, block in enumerate(transformer.blocks):
        for name in ("attn1.to_q", "attn2.to_q", "ffn.net.0.proj"):
            block.get_submodule(name).register_forward_hook(
                lambda *_, key=(index, name): calls[-1].add(key)
            )
    return calls


def pipeline_sigmas(pipe: WanPipeline | WanImageToVideoPipeline, steps: int) -> Tensor:
    """The sigmas the pipeline's scheduler walks for ``steps`` steps."""
    pipe.scheduler.set_timesteps(steps)
    return pipe.scheduler.sigmas.clone()


def run_pipeline(
    pipe: WanPipeline | WanImageToVideoPipeline,
    x: Tensor,
    text: Tensor,
    negative: Tensor,
    steps: int,
    guidance_scale: float = 3.0,
    **kwargs,
) -> Tensor:
    """The pipeline's final latents from noise ``x`` and prompt embeddings (no text encoder)."""
    return pipe(
        prompt_embeds=text,
        negative_prompt_embeds=negative,
        height=HEIGHT,
        width=WIDTH,
        num_frames=NUM_FRAMES,
        num_inference_steps=steps,
        guidance_scale=guidance_scale,
        latents=x,
        output_type="latent",
        **kwargs,
    ).frames
