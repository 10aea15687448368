"""diffusers' ``WanTransformer3DModel`` as a FlashBench layered denoiser (Wan 2.1, Wan Team 2025, arXiv 2503.20314).

Conventions, read from diffusers' ``WanPipeline`` / ``WanImageToVideoPipeline`` and
``FlowMatchEulerDiscreteScheduler`` (0.42):

- sigma and velocity: the pipeline passes ``t = sigma * num_train_timesteps`` (float32, as the
  scheduler's ``timesteps``) and steps ``x + (sigma_next - sigma) * model_output``; FlashBench's
  ``euler_step`` is the same update, so the transformer's output is FlashBench's velocity
  (``noise - x0``) unchanged.
- conditioning (``Cond``), named as the pipelines' arguments:
  ``static["prompt_embeds"]`` ``[B, L, text_dim]`` (the text encoder's output);
  ``static["negative_prompt_embeds"]``, used when ``prompt_embeds`` is dropped, so
  ``Guidance(drop=("prompt_embeds",))`` is the pipelines' CFG; ``static["image_embeds"]``
  ``[B, 257, image_dim]`` (I2V: CLIP features of the first frame, shared by both branches);
  ``temporal["condition"]`` ``[B, T, 4 + C, H, W]`` (I2V: the first-frame mask and the encoded
  first frame, per latent frame, time on dim 1 so windowing cuts it with the latent).
- latents stay in float32 as the pipelines keep them; the input is cast to the transformer's
  dtype, as ``latents.to(transformer_dtype)`` does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from flashbench.denoiser import Cond, run_layers

PROMPT = "prompt_embeds"
NEGATIVE_PROMPT = "negative_prompt_embeds"
IMAGE = "image_embeds"
CONDITION = "condition"
COND_KEYS = (PROMPT, NEGATIVE_PROMPT, IMAGE, CONDITION)


class WanBlock:
    """One ``WanTransformerBlock`` as a FlashBench block ``(h, ctx) -> h``."""

    def __init__(self, block: nn.Module) -> None:
        self.block = block

    def __call__(self, h: Tensor, ctx: Mapping[str, Any]) -> Tensor:
        return self.block(h, ctx["text"], ctx["modulation"], ctx["rotary"])


class WanDenoiser(nn.Module):
    """A ``WanTransformer3DModel`` (T2V or I2V) split into embed / blocks / head.

    The pieces replay ``WanTransformer3DModel.forward`` operation for operation (tests check
    bit equality against it), calling the transformer's own submodules, so its weights, dtype,
    device placement and attention backend are used as they are. The block context carries
    ``"time"`` (the time embedding TeaCache watches), ``"modulation"`` (the blocks' adaLN
    input), ``"text"`` (the cross-attention tokens), ``"rotary"`` and the token grid.
    """

    def __init__(self, transformer: nn.Module, train_timesteps: int = 1000) -> None:
        super().__init__()
        if not isinstance(getattr(transformer, "blocks", None), nn.ModuleList):
            raise ValueError(
                f"transformer {type(transformer).__name__} has no `blocks` ModuleList; "
                "pass a diffusers WanTransformer3DModel"
            )
        self.transformer = transformer
        self.train_timesteps = train_timesteps
        self.blocks = [WanBlock(block) for block in transformer.blocks]

    def transformer_inputs(self, x: Tensor, cond: Cond) -> tuple[Tensor, Tensor, Tensor | None]:
        """The transformer's input, text tokens and image tokens for this latent and conditioning."""
        text = cond.static.get(PROMPT, cond.static.get(NEGATIVE_PROMPT))
        if text is None:
            raise ValueError(
                f"Wan conditioning has neither {PROMPT!r} nor {NEGATIVE_PROMPT!r} in cond.static "
                f"(got {sorted(cond.static)}); give the text encoder's output for the prompt, and "
                "the negative prompt's (the empty prompt's for none) for guidance"
            )
        image = cond.static.get(IMAGE)
        channels = x.shape[1]
        if CONDITION in cond.temporal:
            # [B, T, C', H, W] -> [B, C', T, H, W], next to the latent channels as the I2V pipeline does.
            x = torch.cat([x, cond.temporal[CONDITION].transpose(1, 2).to(x.dtype)], dim=1)
        expected = self.transformer.config.in_channels
        if x.shape[1] != expected:
            raise ValueError(
                f"the Wan transformer takes {expected} input channels, got {channels} latent "
                f"channels + {x.shape[1] - channels} from cond.temporal[{CONDITION!r}]; an I2V "
                f"transformer needs the first-frame mask and latent as {CONDITION!r} "
                "(WanImageToVideoPipeline.prepare_latents), a T2V one none"
            )
        takes_image = self.transformer.config.image_dim is not None
        if takes_image != (image is not None):
            raise ValueError(
                f"this Wan transformer (image_dim={self.transformer.config.image_dim}) "
                f"{'needs' if takes_image else 'takes no'} {IMAGE!r} in cond.static, got "
                f"{sorted(cond.static)}; Wan 2.1 I2V takes the CLIP image encoder's penultimate "
                "hidden states [B, 257, image_dim], T2V and Wan 2.2 none"
            )
        dtype = self.transformer.dtype
        return x.to(dtype), text.to(dtype), None if image is None else image.to(dtype)

    def embed(self, x: Tensor, sigma: Tensor, cond: Cond) -> tuple[Tensor, dict[str, Any]]:
        """Patchify and embed ``x``; embed the time and the conditioning (``forward`` up to its blocks)."""
        model = self.transformer
        hidden, text, image = self.transformer_inputs(x, cond)
        _, _, frames, height, width = hidden.shape
        p_t, p_h, p_w = model.config.patch_size
        rotary = model.rope(hidden)
        h = model.patch_embedding(hidden).flatten(2).transpose(1, 2).contiguous()
        # The pipelines pass the scheduler's timesteps, float32 sigma * num_train_timesteps.
        timestep = sigma.float() * self.train_timesteps
        time, modulation, text, image = model.condition_embedder(timestep, text, image)
        if image is not None:
            text = torch.concat([image, text], dim=1)
        ctx = {
            "time": time,
            "modulation": modulation.unflatten(1, (6, -1)),
            "text": text,
            "rotary": rotary,
            "grid": (frames // p_t, height // p_h, width // p_w),
        }
        return h, ctx

    def head(self, h: Tensor, ctx: Mapping[str, Any]) -> Tensor:
        """Output norm, projection and unpatchify (``forward`` after its blocks)."""
        model = self.transformer
        shift, scale = (
            model.scale_shift_table.to(ctx["time"].device) + ctx["time"].unsqueeze(1)
        ).chunk(2, dim=1)
        shift, scale = shift.to(h.device), scale.to(h.device)
        h = (model.norm_out(h.float()) * (1 + scale) + shift).type_as(h)
        h = model.proj_out(h)
        frames, height, width = ctx["grid"]
        p_t, p_h, p_w = model.config.patch_size
        h = h.reshape(h.shape[0], frames, height, width, p_t, p_h, p_w, -1)
        return h.permute(0, 7, 1, 4, 2, 5, 3, 6).flatten(6, 7).flatten(4, 5).flatten(2, 3)

    def forward(self, x: Tensor, sigma: Tensor, cond: Cond) -> Tensor:
        return run_layers(self, x, sigma, cond)


def wan_cond(
    prompt_embeds: Tensor,
    negative_prompt_embeds: Tensor | None = None,
    image_embeds: Tensor | None = None,
    condition: Tensor | None = None,
) -> Cond:
    """The ``Cond`` of a Wan call from the pipelines' tensors; ``condition`` as the I2V pipeline builds it, ``[B, 4 + C, T, H, W]``."""
    static = {PROMPT: prompt_embeds}
    if negative_prompt_embeds is not None:
        static[NEGATIVE_PROMPT] = negative_prompt_embeds
    if image_embeds is not None:
        static[IMAGE] = image_embeds
    temporal = {} if condition is None else {CONDITION: condition.transpose(1, 2)}
    return Cond(static=static, temporal=temporal, frames_per_latent=1)
