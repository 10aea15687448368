"""FlashPortrait's video DiT at CPU scale (Ma et al. 2025, arXiv 2512.16900), on the world's latents.

One file, split by banners: embedding layers / the Normalized Facial Expression Block / the
DiT block / the model / configs. The model speaks flashbench's layered-denoiser protocol:
``embed(x, sigma, cond) -> (h, ctx)``, ``blocks[i](h, ctx) -> h``, ``head(h, ctx) -> v``.

Conditioning (``flashbench.denoiser.Cond``):
- ``static["reference_latent"]`` ``[B, C, H, W]``: the reference frame's (normalised) latent;
- ``temporal["expression"]`` ``[B, T * frames_per_latent, expr_dim]``: per-frame expression
  features of the driving video; absent means the null expression (the unconditional branch
  of emotion guidance), exactly as ``ip_scale = 0`` in the public code;
- ``static["keep_parts"]`` (models trained with part dropout): the expression parts an
  unconditional branch keeps, the others dropped (``Guidance(keep=...)``);

Every window the model sees holds the reference in its first latent frame (mask channel 1,
reference latent concatenated there), as the public code conditions each sliding window on
the reference image; linear blending gives that frame weight 0 wherever a previous window
covers it, so the anchor never shows through an overlap.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flashbench.denoiser import Cond, check_latent, run_layers
from flashbench.models.flashportrait.nfeb import NFEB_VARIANTS, nfeb_combine

NfebVariant = Literal["paper", "code", "add", "pure_norm", "center"]


@dataclass(frozen=True)
class DiTConfig:
    """Sizes of a portrait DiT; ``variant`` picks the NFEB formula."""

    latent_channels: int = 4
    latent_size: int = 16
    patch: int = 4
    dim: int = 128
    depth: int = 4
    heads: int = 4
    mlp_ratio: float = 4.0
    expr_dim: int = 7
    part_tokens: int = 4
    ref_patch: int = 2
    frames_per_latent: int = 1
    variant: NfebVariant = "paper"
    # Latent frames per training clip; longer windows sharpen temporal attention.
    train_frames: int = 8
    # Named runs of the expression features (name, width), in order: the parts an unconditional
    # branch may keep (``static["keep_parts"]``) while the others are dropped.
    parts: tuple[tuple[str, int], ...] = (("pose", 3), ("eyes", 1), ("brows", 1), ("mouth", 2))
    # Trained with part dropout: the portrait encoder is told which parts are dropped.
    part_dropout: bool = False

    @property
    def cond_parts(self) -> tuple[str, ...]:
        """The parts an unconditional branch may keep: all of them, once trained with part dropout."""
        return tuple(name for name, _ in self.parts) if self.part_dropout else ()

    def __post_init__(self) -> None:
        if self.variant not in NFEB_VARIANTS:
            raise ValueError(
                f"variant={self.variant!r} is not an NFEB variant; use one of {NFEB_VARIANTS}"
            )
        if self.dim % self.heads:
            raise ValueError(f"dim={self.dim} must be divisible by heads={self.heads}")
        if sum(width for _, width in self.parts) != self.expr_dim:
            raise ValueError(
                f"parts={self.parts} cover {sum(w for _, w in self.parts)} features, but "
                f"expr_dim={self.expr_dim}: give parts whose widths sum to expr_dim"
            )
        for name in ("patch", "ref_patch"):
            if self.latent_size % getattr(self, name):
                raise ValueError(
                    f"{name}={getattr(self, name)} must divide latent_size={self.latent_size}"
                )


# --------------------------------------------------------------------------- embedding layers


def sigma_features(sigma: Tensor, dim: int) -> Tensor:
    """Sinusoidal features of the flow-matching time ``1000 * sigma`` (Vaswani et al. 2017, arXiv 1706.03762)."""
    half = dim // 2
    freqs = torch.exp(
        -math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=sigma.device) / half
    )
    angles = 1000.0 * sigma.float()[:, None] * freqs[None]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def patchify(x: Tensor, p: int) -> Tensor:
    """``[B, C, T, H, W]`` -> tokens ``[B, T, (H/p)(W/p), C p p]``."""
    b, c, t, h, w = x.shape
    x = x.reshape(b, c, t, h // p, p, w // p, p).permute(0, 2, 3, 5, 1, 4, 6)
    return x.reshape(b, t, (h // p) * (w // p), c * p * p)


def unpatchify(tokens: Tensor, p: int, c: int, size: int) -> Tensor:
    """Inverse of ``patchify`` for square latents of side ``size``."""
    b, t, _, _ = tokens.shape
    g = size // p
    x = tokens.reshape(b, t, g, g, c, p, p).permute(0, 4, 1, 2, 5, 3, 6)
    return x.reshape(b, c, t, size, size)


def sincos_positions(grid: int, dim: int) -> Tensor:
    """Fixed 2-D sine-cosine position embedding ``[grid * grid, dim]`` (as in DiT, Peebles & Xie 2023, arXiv 2212.09748)."""
    quarter = dim // 4
    freqs = torch.exp(-math.log(100.0) * torch.arange(quarter, dtype=torch.float32) / quarter)
    coords = torch.arange(grid, dtype=torch.float32)
    ys, xs = torch.meshgrid(coords, coords, indexing="ij")
    parts = [f(c.reshape(-1, 1) * freqs) for c in (ys, xs) for f in (torch.sin, torch.cos)]
    emb = torch.cat(parts, dim=1)
    return F.pad(emb, (0, dim - emb.shape[1]))


class PortraitEncoder(nn.Module):
    """Per-frame expression features -> ``part_tokens`` tokens per frame (FlashPortrait's portrait encoder, reduced).

    The paper's encoder makes 24 tokens per frame (4 part tokens from Linear+LayerNorm, 16 mouth
    and 4 emotion tokens from Perceiver resamplers); at this scale one MLP and a LayerNorm
    produce all part tokens. With ``parts`` (part dropout), a dropped part's features are zero
    (the training mean) and a per-part indicator, embedded beside the first layer, says so: a
    dropped part then differs from a part that happens to sit at the mean.
    """

    def __init__(self, expr_dim: int, dim: int, part_tokens: int, parts: int = 0) -> None:
        super().__init__()
        self.part_tokens = part_tokens
        self.mlp = nn.Sequential(
            nn.Linear(expr_dim, dim), nn.GELU(), nn.Linear(dim, part_tokens * dim)
        )
        self.norm = nn.LayerNorm(dim)
        if parts:
            # Zero-initialised: with every part given, the encoder is the plain one.
            self.dropped = nn.Linear(parts, dim, bias=False)
            nn.init.zeros_(self.dropped.weight)

    def forward(self, features: Tensor, dropped: Tensor | None = None) -> Tensor:
        """``features`` ``[B, F, E]``; ``dropped`` ``[B or 1, parts]`` (1 where a part is dropped)."""
        b, f, _ = features.shape
        h = self.mlp[0](features)
        if dropped is not None:
            h = h + self.dropped(dropped)[:, None]
        out = self.mlp[2](self.mlp[1](h))
        return self.norm(out.reshape(b, f, self.part_tokens, -1))


# ------------------------------------------------------ Normalized Facial Expression Block


def attention(q: Tensor, k: Tensor, v: Tensor, heads: int, logit_scale: float = 1.0) -> Tensor:
    """Multi-head scaled dot-product attention over the second-to-last axis of ``[..., N, D]``; ``logit_scale`` multiplies the usual 1/sqrt(d) logits."""
    lead = q.shape[:-2]
    n_q, n_k, d = q.shape[-2], k.shape[-2], q.shape[-1]

    def split(x: Tensor, n: int) -> Tensor:
        return x.reshape(-1, n, heads, d // heads).transpose(1, 2)

    scale = logit_scale / math.sqrt(d // heads)
    out = F.scaled_dot_product_attention(split(q, n_q), split(k, n_k), split(v, n_k), scale=scale)
    return out.transpose(1, 2).reshape(*lead, n_q, d)


class NormalizedExpressionBlock(nn.Module):
    """Image cross-attention plus normalised per-frame expression cross-attention (FlashPortrait NFEB, arXiv 2512.16900)."""

    def __init__(self, dim: int, heads: int, variant: str) -> None:
        super().__init__()
        self.heads, self.variant = heads, variant
        self.norm = nn.LayerNorm(dim)
        self.q = nn.Linear(dim, dim)
        self.kv_img = nn.Linear(dim, 2 * dim)
        self.kv_expr = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def branches(self, h: Tensor, ctx: dict) -> tuple[Tensor, Tensor | None]:
        """z_img ``[B, T, N, D]`` and z_p (None for the null expression)."""
        b, t, n, d = h.shape
        q = self.q(self.norm(h))
        k_img, v_img = self.kv_img(ctx["image_tokens"]).chunk(2, dim=-1)  # [B, M, D]
        z_img = attention(q.reshape(b, t * n, d), k_img, v_img, self.heads).reshape(b, t, n, d)
        expr = ctx.get(
            "expression_tokens"
        )  # [B, T, P, D]: each latent frame sees its own frames only
        if expr is None:
            return z_img, None
        k_p, v_p = self.kv_expr(expr).chunk(2, dim=-1)
        return z_img, attention(q, k_p, v_p, self.heads)

    def forward(self, h: Tensor, ctx: dict) -> Tensor:
        z_img, z_p = self.branches(h, ctx)
        z = z_img if z_p is None else nfeb_combine(z_img, z_p, self.variant)
        if z_p is not None and ctx.get("expression_keep") is not None:
            # A dropped sample must equal the null-expression pass, whose output is z_img alone.
            keep = ctx["expression_keep"][:, None, None, None]
            z = keep * z + (1 - keep) * z_img
        return self.out(z)


# ------------------------------------------------------------------------------ DiT block


def temporal_logit_scale(frames: int, train_frames: int) -> float:
    """log(frames) / log(train_frames) for windows longer than training's, else 1 (Chiang & Cholak 2022, arXiv 2202.12172).

    Without position codes, attention over T frames spreads thinner as T grows; scaling the
    logits by log T keeps its entropy, and so the anchor frame's share, near training's.
    """
    if frames <= train_frames or train_frames < 2:
        return 1.0
    return math.log(frames) / math.log(train_frames)


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    return x * (1 + scale[:, None, None]) + shift[:, None, None]


class PortraitBlock(nn.Module):
    """Frame-local self-attention, light temporal attention, NFEB cross-attention and an MLP, adaLN-modulated."""

    def __init__(self, config: DiTConfig) -> None:
        super().__init__()
        d, self.heads, self.train_frames = config.dim, config.heads, config.train_frames
        self.norm1 = nn.LayerNorm(d, elementwise_affine=False)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.norm_t = nn.LayerNorm(d)
        self.qkv_t = nn.Linear(d, 3 * d)
        self.proj_t = nn.Linear(d, d)
        self.nfeb = NormalizedExpressionBlock(d, config.heads, config.variant)
        self.norm2 = nn.LayerNorm(d, elementwise_affine=False)
        hidden = int(d * config.mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Linear(d, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, d)
        )
        self.modulation = nn.Linear(d, 6 * d)
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)

    def forward(self, h: Tensor, ctx: dict) -> Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(ctx["time"]).chunk(6, dim=-1)
        # Full attention inside each latent frame (conditioning is per frame).
        q, k, v = self.qkv(modulate(self.norm1(h), shift1, scale1)).chunk(3, dim=-1)
        h = h + gate1[:, None, None] * self.proj(attention(q, k, v, self.heads))
        # Light temporal mixing: each spatial token attends to itself across the window's frames.
        q, k, v = self.qkv_t(self.norm_t(h)).transpose(1, 2).chunk(3, dim=-1)
        scale = temporal_logit_scale(h.shape[1], self.train_frames)
        h = h + self.proj_t(attention(q, k, v, self.heads, scale).transpose(1, 2))
        h = h + self.nfeb(h, ctx)
        y = self.mlp(modulate(self.norm2(h), shift2, scale2))
        return h + gate2[:, None, None] * y


# ------------------------------------------------------------------------------ the model


class PortraitDiT(nn.Module):
    """Wan-I2V-style portrait DiT with NFEB (FlashPortrait, Ma et al. 2025, arXiv 2512.16900), a flashbench LayeredDenoiser.

    Input channels = noisy latent + Wan's mask channel + the reference latent at masked frames.
    """

    flops_follow_shapes = True  # its passes cost what their inputs' shapes say (flashbench.flops)

    def __init__(self, config: DiTConfig) -> None:
        super().__init__()
        self.config = config
        c, p, d = config.latent_channels, config.patch, config.dim
        self.patch_embed = nn.Linear((2 * c + 1) * p * p, d)
        self.register_buffer(
            "positions", sincos_positions(config.latent_size // p, d), persistent=False
        )
        self.ref_embed = nn.Linear(c * config.ref_patch**2, d)
        self.register_buffer(
            "ref_positions",
            sincos_positions(config.latent_size // config.ref_patch, d),
            persistent=False,
        )
        self.time_mlp = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        self.portrait = PortraitEncoder(
            config.expr_dim, d, config.part_tokens, len(config.parts) if config.part_dropout else 0
        )
        self.blocks = nn.ModuleList(PortraitBlock(config) for _ in range(config.depth))
        self.final_norm = nn.LayerNorm(d, elementwise_affine=False)
        self.final_modulation = nn.Linear(d, 2 * d)
        self.final = nn.Linear(d, c * p * p)
        for layer in (self.final_modulation, self.final):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        # Normalisation statistics of the autoencoder's latents and the extractor's features,
        # set from the training pool so that the diffusion space has unit scale.
        self.register_buffer("latent_mean", torch.zeros(c))
        self.register_buffer("latent_std", torch.ones(c))
        self.register_buffer("expr_mean", torch.zeros(config.expr_dim))
        self.register_buffer("expr_std", torch.ones(config.expr_dim))
        self.register_buffer(
            "part_widths", torch.tensor([w for _, w in config.parts]), persistent=False
        )

    @property
    def cond_parts(self) -> tuple[str, ...]:
        """The expression parts an unconditional branch may keep (``Guidance(keep=...)``)."""
        return self.config.cond_parts

    def given_parts(self, static: Mapping[str, Any]) -> Tensor | None:
        """Which expression parts are given, ``[B or 1, len(parts)]`` bool, or None when all are.

        ``static["keep_parts"]`` names the parts an unconditional branch keeps (sampling);
        ``static["part_keep"]`` ``[B, len(parts)]`` is training's per-sample part dropout.
        """
        names = [name for name, _ in self.config.parts]
        if "part_keep" in static:
            per_part = static["part_keep"].bool()
        elif "keep_parts" in static:
            keep = tuple(static["keep_parts"])
            unknown = [p for p in keep if p not in names]
            if unknown:
                raise ValueError(
                    f"keep_parts={keep}: {unknown} are not parts of this model; use some of {names}"
                )
            per_part = torch.tensor([[name in keep for name in names]])
        else:
            return None
        if not self.config.part_dropout:
            raise ValueError(
                "this model was trained without part dropout (config.part_dropout is False), so its "
                "unconditional branch can only drop the whole expression; drop keep_parts, or use "
                "weights trained with `train_model --part-drop`"
            )
        return per_part.to(self.expr_std.device)

    def normalize_latent(self, z: Tensor) -> Tensor:
        """Autoencoder latents ``[B, C, T, H, W]`` -> the unit-scale diffusion space."""
        return (z - self.latent_mean[:, None, None, None]) / self.latent_std[:, None, None, None]

    def denormalize_latent(self, x: Tensor) -> Tensor:
        """Inverse of ``normalize_latent``."""
        return x * self.latent_std[:, None, None, None] + self.latent_mean[:, None, None, None]

    def embed(self, x: Tensor, sigma: Tensor, cond: Cond) -> tuple[Tensor, dict]:
        check_latent(x)
        cfg = self.config
        b, c, t, hh, ww = x.shape
        if c != cfg.latent_channels or hh != cfg.latent_size or ww != cfg.latent_size:
            raise ValueError(
                f"x has shape {tuple(x.shape)}; this model takes [B, {cfg.latent_channels}, T, "
                f"{cfg.latent_size}, {cfg.latent_size}] latents"
            )
        if "reference_latent" not in cond.static:
            raise ValueError(
                "cond.static['reference_latent'] [B, C, H, W] is required; build it with make_cond"
            )
        ref = cond.static["reference_latent"].to(x)
        ref = ref.expand(b, -1, -1, -1) if ref.shape[0] == 1 else ref
        mask = torch.zeros(b, 1, t, 1, 1, dtype=x.dtype, device=x.device)
        mask[:, :, 0] = 1
        y = torch.cat([x, mask.expand(b, 1, t, hh, ww), ref[:, :, None] * mask], dim=1)
        h = self.patch_embed(patchify(y, cfg.patch)) + self.positions
        image_tokens = (
            self.ref_embed(patchify(ref[:, :, None], cfg.ref_patch)[:, 0]) + self.ref_positions
        )
        ctx: dict = {
            "time": self.time_mlp(sigma_features(sigma.to(x.device).expand(b), cfg.dim)),
            "image_tokens": image_tokens,
        }
        expr = cond.temporal.get("expression")
        if expr is not None:
            f = cfg.frames_per_latent
            if expr.shape[1] != t * f or expr.shape[-1] != cfg.expr_dim:
                raise ValueError(
                    f"cond.temporal['expression'] has shape {tuple(expr.shape)}; expected "
                    f"[B, {t * f}, {cfg.expr_dim}] (T * frames_per_latent frames of expression features)"
                )
            expr = (expr.to(x) - self.expr_mean) / self.expr_std
            given = self.given_parts(cond.static)
            dropped = None
            if given is not None:
                expr = expr * given.repeat_interleave(self.part_widths, dim=1)[:, None].to(expr)
                dropped = (~given).to(expr)
            tokens = self.portrait(expr.expand(b, -1, -1), dropped)  # [B, T*f, P, D]
            ctx["expression_tokens"] = tokens.reshape(b, t, f * cfg.part_tokens, cfg.dim)
            if "expression_keep" in cond.static:
                ctx["expression_keep"] = cond.static["expression_keep"].to(x)
        return h, ctx

    def head(self, h: Tensor, ctx: dict) -> Tensor:
        shift, scale = self.final_modulation(ctx["time"]).chunk(2, dim=-1)
        out = self.final(modulate(self.final_norm(h), shift, scale))
        return unpatchify(
            out, self.config.patch, self.config.latent_channels, self.config.latent_size
        )

    def forward(self, x: Tensor, sigma: Tensor, cond: Cond) -> Tensor:
        return run_layers(self, x, sigma, cond)


def is_expression_branch(key: str) -> bool:
    """Whether a state-dict key belongs to the expression branch: the portrait encoder or an NFEB's expression key/value."""
    return key.startswith("portrait.") or ".nfeb.kv_expr." in key


def reset_expression_branch(model: PortraitDiT, seed: int) -> None:
    """Re-initialise the expression branch as a fresh model seeded with ``seed`` would hold it; the rest stays.

    The paper trains its portrait encoder and NFEB projections anew on a pretrained Wan
    backbone; the NFEB ablation does the same from the shipped backbone, so that no variant
    starts from weights trained under another variant's formula.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fresh = PortraitDiT(model.config)
    branch = {k: v for k, v in fresh.state_dict().items() if is_expression_branch(k)}
    model.load_state_dict(branch, strict=False)


def make_cond(
    reference_latent: Tensor, expression: Tensor | None, frames_per_latent: int = 1
) -> Cond:
    """The model's conditioning: the reference latent ``[B, C, H, W]`` and expression features ``[B, F, E]``."""
    temporal = {} if expression is None else {"expression": expression}
    return Cond(
        static={"reference_latent": reference_latent},
        temporal=temporal,
        frames_per_latent=frames_per_latent,
    )


# -------------------------------------------------------------------------------- configs


def tiny(**overrides) -> DiTConfig:
    """A test-sized model on 8x8 latents (seconds to train)."""
    return replace(
        DiTConfig(latent_size=8, patch=2, ref_patch=2, dim=32, depth=2, heads=2, part_tokens=2),
        **overrides,
    )


def small(**overrides) -> DiTConfig:
    """The shipped CPU model: 16x16x4 latents, 4x4 patches (16 tokens per frame)."""
    return replace(DiTConfig(), **overrides)


def full(**overrides) -> DiTConfig:
    """The paper's Wan2.1-I2V-14B sizes (dim 5120, 40 layers, 40 heads, patch 2, 24 portrait tokens, 4 frames per latent)."""
    return replace(
        DiTConfig(
            latent_channels=16,
            latent_size=60,
            patch=2,
            ref_patch=2,
            dim=5120,
            depth=40,
            heads=40,
            mlp_ratio=13824 / 5120,
            expr_dim=554,
            parts=(("pose", 6), ("eyes", 6), ("emotion", 30), ("mouth", 512)),
            part_tokens=24,
            frames_per_latent=4,
        ),
        **overrides,
    )


CONFIGS: dict[str, Callable[..., DiTConfig]] = {"tiny": tiny, "small": small, "full": full}


def build_model(name: str, device: str | torch.device | None = None, **overrides) -> PortraitDiT:
    """A fresh model of configuration ``name``; ``device="meta"`` builds without allocating (for ``full``)."""
    if name not in CONFIGS:
        raise ValueError(f"config={name!r} is unknown; use one of {sorted(CONFIGS)}")
    config = CONFIGS[name](**overrides)
    with torch.device(device if device is not None else "cpu"):
        return PortraitDiT(config)
