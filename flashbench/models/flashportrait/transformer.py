"""FlashPortrait (Ma et al. 2025, arXiv 2512.16900) at full scale on diffusers' Wan2.1-I2V transformer.

One file, split by banners: the Normalized Facial Expression Block (NFEB) as a diffusers
attention processor / the portrait encoder / configurations / the layered denoiser.
The released checkpoint's key layout and its loader live in ``flashbench.models.flashportrait.weights``.

How the pieces meet (read from the public code, Francis-Rings/FlashPortrait at c72d9de):

- Every block's image cross-attention (diffusers' ``attn2``, the one with ``add_k_proj`` /
  ``add_v_proj`` for the CLIP tokens) gets an ``NFEBProcessor``: it owns the released
  ``emo_k_proj`` / ``emo_v_proj`` (portrait-token width -> model width, no bias), so their
  keys read ``blocks.{i}.attn2.processor.emo_k_proj.weight``, diffusers' IP-adapter convention.
- Portrait tokens: 24 per video frame (4 part tokens, 16 mouth, 4 emotion), grouped per latent
  frame by ``latent_frame_tokens``; the queries of a latent frame attend only to its own group.
- Emotion CFG drops the portrait tokens; the block then returns plain Wan cross-attention,
  which is the public code's ``ip_scale = 0`` pass.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flashbench.denoiser import Cond
from flashbench.models.flashportrait.nfeb import NFEB_VARIANTS, nfeb_combine
from flashbench.models.wan.denoiser import CONDITION, WanBlock, WanDenoiser

PORTRAIT = "portrait_tokens"
# PD-FGC's per-frame features, in the order the released encoder splits them.
FEATURE_SIZES = {"headpose": 6, "eye": 6, "emotion": 30, "mouth": 512}
FEATURE_DIM = sum(FEATURE_SIZES.values())
# Wan's VAE packs 4 video frames into each latent frame after the first.
FRAMES_PER_LATENT = 4


# ---------------------------------------------------- Normalized Facial Expression Block


def _attend(query: Tensor, key: Tensor, value: Tensor) -> Tensor:
    """Attention over ``[B, L, heads, d]`` tensors -> ``[B, L, heads * d]`` in the query's dtype."""
    out = F.scaled_dot_product_attention(
        query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2)
    )
    return out.transpose(1, 2).flatten(2, 3).type_as(query)


class NFEBProcessor(nn.Module):
    """The image cross-attention of a Wan I2V block with FlashPortrait's NFEB (a diffusers attention processor).

    Text and CLIP-image attention are computed as diffusers' ``WanAttnProcessor`` computes them;
    the portrait branch attends each latent frame's queries to that frame's portrait tokens.
    ``code``: the branch is normalised to the sum text + image (the public code);
    the paper's variants (``paper``, ``add``, ``pure_norm``, ``center``) normalise it to the
    image branch alone, whose place it takes beside the text branch (z_bar = z_p_bar + z_img).
    Outside ``with processor.expression(tokens)`` the block is plain Wan cross-attention.
    """

    def __init__(self, dim: int, variant: str, portrait_width: int, text_tokens: int = 512) -> None:
        super().__init__()
        if variant not in NFEB_VARIANTS:
            raise ValueError(
                f"variant={variant!r} is not an NFEB variant; use one of {NFEB_VARIANTS}"
            )
        self.variant, self.text_tokens = variant, text_tokens
        self.emo_k_proj = nn.Linear(portrait_width, dim, bias=False)
        self.emo_v_proj = nn.Linear(portrait_width, dim, bias=False)
        self._portrait: tuple[Tensor, float] | None = None

    @contextmanager
    def expression(self, tokens: Tensor | None, scale: float = 1.0) -> Iterator[None]:
        """Attend to portrait ``tokens`` ``[B, latent_frames, P, width]`` inside the block; None: the null expression."""
        self._portrait = None if tokens is None else (tokens, scale)
        try:
            yield
        finally:
            self._portrait = None

    def forward(
        self,
        attn: nn.Module,
        hidden_states: Tensor,
        encoder_hidden_states: Tensor,
        attention_mask: Tensor | None = None,
        rotary_emb: Any = None,
    ) -> Tensor:
        if attn.add_k_proj is None or getattr(attn, "fused_projections", False):
            raise ValueError(
                "the NFEB processor replaces an unfused Wan I2V image cross-attention (attn2 with "
                "add_k_proj); install it on an image-to-video transformer before fuse_projections()"
            )
        split = encoder_hidden_states.shape[1] - self.text_tokens
        image, text = encoder_hidden_states[:, :split], encoder_hidden_states[:, split:]
        heads = attn.heads
        query = attn.norm_q(attn.to_q(hidden_states)).unflatten(2, (heads, -1))
        key = attn.norm_k(attn.to_k(text)).unflatten(2, (heads, -1))
        value = attn.to_v(text).unflatten(2, (heads, -1))
        key_img = attn.norm_added_k(attn.add_k_proj(image)).unflatten(2, (heads, -1))
        value_img = attn.add_v_proj(image).unflatten(2, (heads, -1))
        z_img = _attend(query, key_img, value_img)
        z_text = _attend(query, key, value)
        if self._portrait is None:
            out = z_text + z_img
        else:
            tokens, scale = self._portrait
            z_p = self._portrait_branch(query, tokens.to(query.dtype))
            if self.variant == "code":
                out = nfeb_combine(z_text + z_img, z_p, "code", scale)
            else:
                out = z_text + nfeb_combine(z_img, z_p, self.variant, scale)
        return attn.to_out[1](attn.to_out[0](out))

    def _portrait_branch(self, query: Tensor, tokens: Tensor) -> Tensor:
        """Each latent frame's queries against its own portrait tokens -> ``[B, L, D]``."""
        batch, length, heads, head_dim = query.shape
        frames = tokens.shape[1]
        if tokens.ndim != 4 or length % frames:
            raise ValueError(
                f"portrait tokens {tuple(tokens.shape)} must be [B, latent_frames, P, width] with "
                f"latent_frames dividing the {length} video tokens; group them with "
                "latent_frame_tokens(tokens, video_frames)"
            )
        per_frame = query.reshape(batch * frames, length // frames, heads, head_dim)
        key = self.emo_k_proj(tokens).reshape(batch * frames, -1, heads, head_dim)
        value = self.emo_v_proj(tokens).reshape(batch * frames, -1, heads, head_dim)
        return _attend(per_frame, key, value).reshape(batch, length, heads * head_dim)


def install_nfeb(
    transformer: nn.Module, variant: str, portrait_width: int, text_tokens: int = 512
) -> list[NFEBProcessor]:
    """Give every block's image cross-attention (``attn2``) a new ``NFEBProcessor``; returns them in block order."""
    processors = []
    for index, block in enumerate(transformer.blocks):
        if getattr(block.attn2, "add_k_proj", None) is None:
            raise ValueError(
                f"block {index}'s attn2 has no add_k_proj: the transformer takes no image tokens "
                f"(image_dim={transformer.config.image_dim}); FlashPortrait needs Wan2.1 I2V"
            )
        processor = NFEBProcessor(
            transformer.config.num_attention_heads * transformer.config.attention_head_dim,
            variant,
            portrait_width,
            text_tokens,
        )
        block.attn2.set_processor(processor)
        processors.append(processor)
    return processors


def latent_frame_tokens(tokens: Tensor, video_frames: int) -> Tensor:
    """Per-frame portrait tokens ``[B, video_frames * n, W]`` -> ``[B, latent_frames, 4n + 1, W]``.

    Latent frame i >= 1 covers video frames 4i-3 .. 4i; as in the public pipeline, its group
    starts one token before those frames' tokens, and the first latent frame (video frame 0
    only) gets frame 0's tokens with zeros in front. The zeros are kept, not masked: the
    released model was trained with them in its softmax.
    """
    if (video_frames - 1) % FRAMES_PER_LATENT or tokens.shape[1] % video_frames:
        raise ValueError(
            f"video_frames={video_frames} must be 4k + 1 (Wan's VAE) and divide the "
            f"{tokens.shape[1]} portrait tokens; trim the driving video to 4k + 1 frames"
        )
    per_frame = tokens.shape[1] // video_frames
    group = FRAMES_PER_LATENT * per_frame + 1
    padded = F.pad(tokens, (0, 0, group - per_frame, 0))
    # After padding, latent frame i's group ends with the last token of video frame 4i.
    ends = [group + FRAMES_PER_LATENT * per_frame * i for i in range((video_frames - 1) // 4 + 1)]
    return torch.stack([padded[:, end - group : end] for end in ends], dim=1)


# ---------------------------------------------------------------------- portrait encoder


class PerceiverAttention(nn.Module):
    """Latent queries attend to the inputs and themselves (Flamingo's Perceiver resampler, Alayrac et al. 2022)."""

    def __init__(self, dim: int, heads: int, head_dim: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, heads * head_dim, bias=False)
        self.to_kv = nn.Linear(dim, 2 * heads * head_dim, bias=False)
        self.to_out = nn.Linear(heads * head_dim, dim, bias=False)

    def forward(self, x: Tensor, latents: Tensor) -> Tensor:
        x, latents = self.norm1(x), self.norm2(latents)
        query = self.to_q(latents).unflatten(2, (self.heads, -1))
        key, value = self.to_kv(torch.cat([x, latents], dim=1)).chunk(2, dim=-1)
        out = _attend(
            query, key.unflatten(2, (self.heads, -1)), value.unflatten(2, (self.heads, -1))
        )
        return self.to_out(out)


class Resampler(nn.Module):
    """``queries`` learned tokens refined by Perceiver layers over the input tokens."""

    def __init__(
        self,
        in_dim: int,
        dim: int,
        out_dim: int,
        queries: int,
        depth: int,
        heads: int,
        head_dim: int,
    ) -> None:
        super().__init__()
        self.latents = nn.Parameter(torch.randn(1, queries, dim) / math.sqrt(dim))
        self.proj_in = nn.Linear(in_dim, dim)
        self.proj_out = nn.Linear(dim, out_dim)
        self.norm_out = nn.LayerNorm(out_dim)
        feed_forward = lambda: nn.Sequential(  # noqa: E731
            nn.LayerNorm(dim),
            nn.Linear(dim, 4 * dim, bias=False),
            nn.GELU(),
            nn.Linear(4 * dim, dim, bias=False),
        )
        self.layers = nn.ModuleList(
            nn.ModuleList([PerceiverAttention(dim, heads, head_dim), feed_forward()])
            for _ in range(depth)
        )

    def forward(self, x: Tensor) -> Tensor:
        x = self.proj_in(x)
        latents = self.latents.expand(x.shape[0], -1, -1)
        for attention, feed_forward in self.layers:
            latents = latents + attention(x, latents)
            latents = latents + feed_forward(latents)
        return self.norm_out(self.proj_out(latents))


class PartProjection(nn.Module):
    """One token per feature group (head pose, eye, emotion, mouth): a Linear and a shared LayerNorm."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.headpose_proj = nn.Linear(FEATURE_SIZES["headpose"], width, bias=False)
        self.eye_proj = nn.Linear(FEATURE_SIZES["eye"], width, bias=False)
        self.emo_proj = nn.Linear(FEATURE_SIZES["emotion"], width, bias=False)
        self.mouth_proj = nn.Linear(FEATURE_SIZES["mouth"], width, bias=False)
        self.norm = nn.LayerNorm(width)

    def forward(self, features: Tensor) -> Tensor:
        headpose, eye, emotion, mouth = features.split(list(FEATURE_SIZES.values()), dim=-1)
        parts = (
            self.headpose_proj(headpose),
            self.eye_proj(eye),
            self.emo_proj(emotion),
            self.mouth_proj(mouth),
        )
        return torch.stack([self.norm(part) for part in parts], dim=-2)


@dataclass(frozen=True)
class EncoderConfig:
    """Sizes of the portrait encoder; the defaults are the released ones."""

    width: int = 2048
    resampler_dim: int = 1280
    resampler_depth: int = 4
    resampler_heads: int = 20
    resampler_head_dim: int = 64
    mouth_tokens: int = 16
    emotion_tokens: int = 4


class PortraitEncoder(nn.Module):
    """PD-FGC features ``[B, frames, 554]`` -> portrait tokens ``[B, frames * 24, width]`` (4 part, 16 mouth, 4 emotion per frame).

    Parameter names are the released ``portrait_encoder.pt``'s.
    """

    def __init__(self, config: EncoderConfig = EncoderConfig()) -> None:
        super().__init__()
        resampler = {
            "dim": config.resampler_dim,
            "out_dim": config.width,
            "depth": config.resampler_depth,
            "heads": config.resampler_heads,
            "head_dim": config.resampler_head_dim,
        }
        self.proj_model = PartProjection(config.width)
        self.mouth_proj_model = Resampler(
            FEATURE_SIZES["mouth"], queries=config.mouth_tokens, **resampler
        )
        self.emo_proj_model = Resampler(
            FEATURE_SIZES["emotion"], queries=config.emotion_tokens, **resampler
        )

    def forward(self, features: Tensor) -> Tensor:
        if features.ndim != 3 or features.shape[-1] != FEATURE_DIM:
            raise ValueError(
                f"portrait features must be [B, frames, {FEATURE_DIM}] (head pose 6, eye 6, "
                f"emotion 30, mouth 512 from PD-FGC), got shape {tuple(features.shape)}"
            )
        batch, frames, _ = features.shape
        _, _, emotion, mouth = features.flatten(0, 1)[:, None].split(
            list(FEATURE_SIZES.values()), dim=-1
        )
        tokens = torch.cat(
            [
                self.proj_model(features.flatten(0, 1)),
                self.mouth_proj_model(mouth),
                self.emo_proj_model(emotion),
            ],
            dim=1,
        )
        return tokens.reshape(batch, frames * tokens.shape[1], -1)


# ------------------------------------------------------------------------ configurations


@dataclass(frozen=True)
class FlashPortraitConfig:
    """Sizes of the Wan2.1-I2V transformer and the portrait encoder; ``transformer_kwargs`` builds diffusers' model."""

    dim: int = 5120
    layers: int = 40
    heads: int = 40
    ffn_dim: int = 13824
    in_channels: int = 36  # 16 latent + 4 mask + 16 first-frame latent channels
    out_channels: int = 16
    text_dim: int = 4096
    image_dim: int = 1280
    freq_dim: int = 256
    text_tokens: int = 512
    rope_max_seq_len: int = 1024
    encoder: EncoderConfig = EncoderConfig()

    def transformer_kwargs(self) -> dict[str, Any]:
        return {
            "patch_size": (1, 2, 2),
            "num_attention_heads": self.heads,
            "attention_head_dim": self.dim // self.heads,
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "text_dim": self.text_dim,
            "freq_dim": self.freq_dim,
            "ffn_dim": self.ffn_dim,
            "num_layers": self.layers,
            "cross_attn_norm": True,
            "qk_norm": "rms_norm_across_heads",
            "eps": 1e-6,
            "image_dim": self.image_dim,
            "added_kv_proj_dim": self.dim,
            "rope_max_seq_len": self.rope_max_seq_len,
        }


def wan_i2v_14b_720p(**overrides: Any) -> FlashPortraitConfig:
    """The released model: Wan2.1-I2V-14B-720P (dim 5120, 40 layers, 40 heads, FFN 13824)."""
    return replace(FlashPortraitConfig(), **overrides)


def tiny(**overrides: Any) -> FlashPortraitConfig:
    """A test-sized model: 2 layers of width 16 on 4 latent channels, portrait tokens of width 12."""
    encoder = EncoderConfig(
        width=12, resampler_dim=8, resampler_depth=2, resampler_heads=2, resampler_head_dim=4
    )
    sizes = {"dim": 16, "layers": 2, "heads": 2, "ffn_dim": 32, "in_channels": 12}
    sizes |= {"out_channels": 4, "text_dim": 12, "image_dim": 8, "freq_dim": 16}
    sizes |= {"text_tokens": 5, "rope_max_seq_len": 32, "encoder": encoder}
    return replace(FlashPortraitConfig(**sizes), **overrides)


CONFIGS = {"wan2.1-i2v-14b-720p": wan_i2v_14b_720p, "tiny": tiny}


def build_flashportrait(
    config: FlashPortraitConfig, variant: str = "code", device: str | torch.device = "cpu"
) -> tuple[nn.Module, PortraitEncoder]:
    """A Wan I2V transformer with NFEB in every block, and the portrait encoder; ``device="meta"`` allocates nothing."""
    from diffusers import WanTransformer3DModel

    with torch.device(device):
        transformer = WanTransformer3DModel(**config.transformer_kwargs())
        install_nfeb(transformer, variant, config.encoder.width, config.text_tokens)
        encoder = PortraitEncoder(config.encoder)
    return transformer.eval(), encoder.eval()


# ---------------------------------------------------------------------- layered denoiser


class NFEBBlock(WanBlock):
    """A Wan block whose image cross-attention sees the window's portrait tokens."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__(block)
        self.processor: NFEBProcessor = block.attn2.processor

    def __call__(self, h: Tensor, ctx: Mapping[str, Any]) -> Tensor:
        with self.processor.expression(ctx["portrait"]):
            return super().__call__(h, ctx)


def window_portrait_tokens(frames: Tensor) -> Tensor:
    """A window's per-video-frame tokens ``[B, 4L, P, W]`` (three pad frames, then its frames) -> ``[B, L, 4P + 1, W]``.

    The released long-video pipeline encodes each window as a video of its own: the window's
    first latent frame sees only the video frame at its start. Cond keeps the case's tokens
    per video frame behind three pad frames (``frames_per_latent = 4``), so that a window of
    latent frames [s, s + L) cuts video frames 4s - 3 .. 4(s + L - 1); the three before 4s are
    dropped here.
    """
    pad = FRAMES_PER_LATENT - 1
    return latent_frame_tokens(frames[:, pad:].flatten(1, 2), frames.shape[1] - pad)


def portrait_cond(
    static: Mapping[str, Tensor], tokens: Tensor | None, condition: Tensor | None = None
) -> Cond:
    """A FlashPortrait case's ``Cond`` from per-video-frame portrait ``tokens`` ``[B, 4k + 1, P, W]`` (``PortraitEncoder`` output, unflattened).

    ``condition`` ``[B, 4 + C, T, H, W]`` (the I2V pipeline's mask and encoded reference for the
    whole video) becomes static: each window takes its first latent frames, so every window
    starts from the reference, as the released pipeline conditions each window.
    """
    static = dict(static)
    if condition is not None:
        static[CONDITION] = condition.transpose(1, 2)
    temporal = {}
    if tokens is not None:
        if (tokens.shape[1] - 1) % FRAMES_PER_LATENT:
            raise ValueError(
                f"portrait tokens cover {tokens.shape[1]} video frames; Wan's VAE needs 4k + 1: "
                "trim the driving video to 4k + 1 frames"
            )
        temporal[PORTRAIT] = F.pad(tokens, (0, 0, 0, 0, FRAMES_PER_LATENT - 1, 0))
    return Cond(static=static, temporal=temporal, frames_per_latent=FRAMES_PER_LATENT)


class FlashPortraitDenoiser(WanDenoiser):
    """``WanDenoiser`` over a transformer with NFEB installed; conditioning as ``portrait_cond`` builds it.

    ``cond.temporal["portrait_tokens"]`` holds the portrait encoder's tokens per video frame,
    made once per video; each window groups its own per latent frame (``window_portrait_tokens``).
    Dropping them (``Guidance(drop=("portrait_tokens",))``) is the released emotion CFG's
    unconditional pass. A ``condition`` in ``cond.static`` is cut to the window's length.
    """

    def __init__(self, transformer: nn.Module, train_timesteps: int = 1000) -> None:
        super().__init__(transformer, train_timesteps)
        if not all(isinstance(b.attn2.processor, NFEBProcessor) for b in transformer.blocks):
            raise ValueError(
                "every block's attn2 needs an NFEBProcessor; build the transformer with "
                "build_flashportrait or call install_nfeb on it first"
            )
        self.blocks = [NFEBBlock(block) for block in transformer.blocks]

    def transformer_inputs(self, x: Tensor, cond: Cond) -> tuple[Tensor, Tensor, Tensor | None]:
        if CONDITION in cond.static:
            window = cond.static[CONDITION][:, : x.shape[2]]
            cond = replace(cond, temporal={**cond.temporal, CONDITION: window})
        return super().transformer_inputs(x, cond)

    def embed(self, x: Tensor, sigma: Tensor, cond: Cond) -> tuple[Tensor, dict[str, Any]]:
        h, ctx = super().embed(x, sigma, cond)
        frames = cond.temporal.get(PORTRAIT)
        ctx["portrait"] = None if frames is None else window_portrait_tokens(frames)
        return h, ctx
