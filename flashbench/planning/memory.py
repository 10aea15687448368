"""The memory planner: what sampling a video under a setting holds, from the model's shapes alone.

Nothing of the video's size is allocated: the model's ``embed``, one block and its ``head`` run
under torch's ``FakeTensorMode`` on a latent window (shapes and dtypes only), and Wan is built
on the meta device from its configuration. Per setting, in bytes (``docs/memory.md``):

- ``weights``: the denoiser's parameters resident on the device: all of them, or with
  ``offload="blocks"`` (diffusers' block-level group offloading with a prefetch stream) those
  outside the block stack plus two blocks, the one running and the next being copied in.
- ``latents``: the whole video's latent, held three times (noise, x, the blended next x), plus
  every window's output of a step.
- ``activations``: one pass over the largest window: its latent and velocity, the block's
  input and output (2 h) and the widest linear layer's output twice (an FFN's hidden before
  and after its nonlinearity). Attention is taken to be a fused kernel (flash /
  memory-efficient SDPA) that never holds the tokens x tokens matrix.
- ``cache``: the stepper's ``cache_layout`` per (window, guidance branch), summed over the
  (window, branch) pairs alive at once (``sample`` keeps every window's cache between steps,
  and a shifting grid's old windows until the step ends); this is what ``sample`` reports as
  ``peak_cache_bytes``.
- ``total``: weights + latents + cache + activations + transient, except for a stepper that
  updates its cache in place between blocks (the forecasters): there the larger of the
  activations (the peak inside a block) and the activations without the block's
  intermediates plus the transient (the peak at the update).
- ``transient``: what a full pass holds beside the cache while it refreshes it: by default a
  stepper builds its per-block copies anew while the old ones are still referenced (one
  (window, branch)'s block copies exist twice for a moment); the forecasters update theirs in
  place, one group at a time (``CacheLayout.transient``).
"""

from __future__ import annotations

import difflib
import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch._subclasses.fake_tensor import FakeTensorMode

from flashbench.denoiser import Cond, LayeredDenoiser
from flashbench.models.base import CaseSpec
from flashbench.schedule import flow_match_sigmas
from flashbench.settings import Setting
from flashbench.steppers.base import Features

# Wan 2.1 text-to-video transformers (Wan Team 2025, arXiv 2503.20314, Table 1; diffusers'
# ``WanTransformer3DModel`` arguments); the rest of the configuration is diffusers' default.
WAN_CONFIGS: dict[str, dict[str, Any]] = {
    "wan2.1-1.3b": {
        "num_attention_heads": 12,
        "attention_head_dim": 128,
        "ffn_dim": 8960,
        "num_layers": 30,
    },
    "wan2.1-14b": {
        "num_attention_heads": 40,
        "attention_head_dim": 128,
        "ffn_dim": 13824,
        "num_layers": 40,
    },
}
# Wan's VAE: 4x in time (frames = 4k + 1), 8x in space, 16 channels; umT5 prompts of 512 tokens.
WAN_TIME_STRIDE, WAN_SPACE_STRIDE, WAN_CHANNELS, WAN_TEXT = 4, 8, 16, (512, 4096)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
OFFLOADS = ("none", "blocks")


@dataclass(frozen=True)
class PlannedModel:
    """A layered denoiser (real or on the meta device) with the latent and conditioning of one video."""

    name: str
    denoiser: LayeredDenoiser
    latent_shape: tuple[int, ...]
    latent_dtype: torch.dtype
    cond: Cond


@dataclass(frozen=True)
class MemoryPlan:
    """What sampling one video under one setting holds, in bytes, with the counts behind it."""

    setting: str
    weights: int  # resident on the device (see ``offload``)
    latents: int
    activations: int
    cache_per_block: int  # one block's copy (one factor) in one (window, branch)
    cache_blocks: int
    cache_factors: int
    cache_other: int  # per (window, branch), besides the per-block copies
    cache: int  # every (window, branch) alive at the peak
    transient: int
    branches: int
    windows: int
    offload: str = "none"

    # The part of ``activations`` freed before the stepper's cache update (0: not known to be).
    block_intermediates: int = 0

    @property
    def total(self) -> int:
        # The transient exists between blocks, when a block's intermediates are gone: the peak
        # is inside a block or at the cache update, whichever is larger.
        at_update = self.activations - self.block_intermediates + self.transient
        return self.weights + self.latents + self.cache + max(self.activations, at_update)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "total": self.total}


def block_module(block: Any) -> nn.Module:
    """The module behind a denoiser's block (Wan's adapter wraps each diffusers block)."""
    return block if isinstance(block, nn.Module) else block.block


def _probe(model: PlannedModel, frames: int) -> tuple[Features, int]:
    """The stepper-facing sizes of a window of ``frames`` latent frames, and the widest linear output's bytes."""
    denoiser = model.denoiser
    device = next(denoiser.parameters()).device
    widest = 0

    def record(module: nn.Module, inputs: Any, output: Tensor) -> None:
        nonlocal widest
        widest = max(widest, output.numel() * output.element_size())

    shape = (*model.latent_shape[:2], frames, *model.latent_shape[3:])
    # Real weights and conditioning enter as they are; every tensor made from them is a fake
    # one that has a shape and a dtype but no storage.
    with FakeTensorMode(allow_non_fake_inputs=True):
        x = torch.empty(shape, dtype=model.latent_dtype, device=device)
        sigma = torch.ones(shape[0], device=device)
        cond = model.cond.window(0, frames)
        h, ctx = denoiser.embed(x, sigma, cond)
        block = denoiser.blocks[0]
        modules = block_module(block).modules()
        hooks = [m.register_forward_hook(record) for m in modules if isinstance(m, nn.Linear)]
        try:
            out = block(h, ctx)
        finally:
            for hook in hooks:
                hook.remove()
        v = denoiser.head(out, ctx)
        time = ctx.get("time") if isinstance(ctx, dict) else None
    features = Features(
        blocks=len(denoiser.blocks),
        hidden=h.numel() * h.element_size(),
        tokens=h.numel() // h.shape[-1],
        latent=x.numel() * x.element_size(),
        velocity=v.numel() * v.element_size(),
        time=None if time is None else time.numel() * time.element_size(),
        hidden_itemsize=h.element_size(),
        velocity_itemsize=v.element_size(),
    )
    return features, widest


def resident_weights(denoiser: LayeredDenoiser, offload: str) -> int:
    """Parameter bytes on the device: all, or with block offloading the rest plus two blocks."""
    if offload not in OFFLOADS:
        raise ValueError(f"offload={offload!r} must be one of {', '.join(OFFLOADS)}")

    def size(params: Any) -> int:
        return sum(p.numel() * p.element_size() for p in params)

    total = size(denoiser.parameters())
    if offload == "none":
        return total
    blocks = [size(block_module(block).parameters()) for block in denoiser.blocks]
    return total - sum(blocks) + 2 * max(blocks)


def plan(
    model: PlannedModel,
    setting: Setting,
    steps: int = 30,
    guided: bool = False,
    offload: str = "none",
    probes: dict[int, tuple[Features, int]] | None = None,
) -> MemoryPlan:
    """The memory of sampling ``model``'s video under ``setting`` over ``steps`` steps.

    ``guided`` plans two guidance branches even where the setting has no guidance (as
    FlashPortrait's emotion CFG samples every setting); ``offload="blocks"`` counts only the
    weights block-level offloading keeps on the device. ``probes``: the window probes of
    ``model`` by length, shared by the plans of one model (a probe is the planner's cost).
    """
    weights = resident_weights(model.denoiser, offload)
    stepper, windowing, guidance = setting.build()
    branches = 2 if guided or guidance is not None else 1
    frames = model.latent_shape[2]
    planned_steps = len(stepper.plan(flow_match_sigmas(steps))) - 1
    probes = {} if probes is None else probes

    def probe(length: int) -> tuple[Features, int]:
        if length not in probes:
            probes[length] = _probe(model, length)
        return probes[length]

    cache, windows, outputs, previous = 0, 0, 0, set()
    for step in range(planned_steps):
        current = set(windowing.windows(frames, step))
        # ``sample`` frees the caches of windows left behind only after the step that left them.
        alive = current | previous
        entry = sum(stepper.cache_layout(probe(stop - start)[0]).total for start, stop in alive)
        cache = max(cache, entry * branches)
        windows = max(windows, len(current))
        outputs = max(outputs, sum(probe(stop - start)[0].latent for start, stop in current))
        previous = current
    largest = max(stop - start for start, stop in windowing.windows(frames, 0))
    features, widest = probe(largest)
    layout = stepper.cache_layout(features)
    video = math.prod(model.latent_shape) * model.latent_dtype.itemsize
    return MemoryPlan(
        setting=setting.name,
        weights=weights,
        latents=3 * video + outputs,
        activations=features.latent + features.velocity + 2 * features.hidden + 2 * widest,
        cache_per_block=layout.per_block,
        cache_blocks=layout.blocks,
        cache_factors=layout.factors,
        cache_other=layout.other,
        cache=cache,
        transient=layout.transient_bytes,
        branches=branches,
        windows=windows,
        offload=offload,
        # Only an in-place update (a declared transient) is known to run between blocks.
        block_intermediates=2 * widest if layout.transient is not None else 0,
    )


# ---- models ---------------------------------------------------------------------------------


def wan_model(
    name: str, frames: int, height: int, width: int, dtype: str = "bfloat16"
) -> PlannedModel:
    """A Wan 2.1 transformer of ``WAN_CONFIGS`` on the meta device, with a video of ``frames`` x ``height`` x ``width`` pixels."""
    from diffusers import WanTransformer3DModel

    from flashbench.models.wan.denoiser import WanDenoiser, wan_cond

    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r} must be one of {', '.join(DTYPES)} (GPUs: bfloat16)")
    step = WAN_SPACE_STRIDE * 2
    if height % step or width % step:
        raise ValueError(
            f"size={height}x{width} must be multiples of {step} for Wan (8x VAE, 2x2 patches); "
            f"e.g. 480x832 or 720x1280"
        )
    if frames < 1 or (frames - 1) % WAN_TIME_STRIDE:
        below = max(1, frames - (frames - 1) % WAN_TIME_STRIDE)
        raise ValueError(
            f"frames={frames} must be 4k + 1 for Wan's 4x temporal VAE; use {below} or {below + 4}"
        )
    with torch.device("meta"):
        transformer = WanTransformer3DModel(**WAN_CONFIGS[name])
    # As ``from_pretrained(torch_dtype=...)`` does: the modules it keeps in float32 stay so.
    keep = set(WanTransformer3DModel._keep_in_fp32_modules or ())
    for parameter_name, parameter in transformer.named_parameters():
        if not keep & set(parameter_name.split(".")):
            parameter.data = parameter.data.to(DTYPES[dtype])
    shape = (
        1,
        WAN_CHANNELS,
        (frames - 1) // WAN_TIME_STRIDE + 1,
        height // WAN_SPACE_STRIDE,
        width // WAN_SPACE_STRIDE,
    )
    text = torch.empty(1, *WAN_TEXT, device="meta")
    # The pipelines keep the latents in float32 and cast the input to the transformer's dtype.
    return PlannedModel(name, WanDenoiser(transformer), shape, torch.float32, wan_cond(text, text))


def registry_model(name: str, frames: int, height: int, width: int) -> PlannedModel:
    """A model of ``flashbench.models.registry`` (built with its defaults) and one case's conditioning."""
    from flashbench.models.registry import models

    if height != width:
        raise ValueError(
            f"size={height}x{width}: model {name!r} renders square frames; use e.g. {height}x{height}"
        )
    portrait = models.build(name)
    case = CaseSpec("plan", "self", 0, 0, 0, frames, height)
    inputs = portrait.prepare(case)
    return PlannedModel(name, portrait.denoiser, inputs.latent_shape, torch.float32, inputs.cond)


def planned_model(
    name: str, frames: int, height: int, width: int, dtype: str = "bfloat16"
) -> PlannedModel:
    """The model ``name`` to plan for: a Wan configuration (``WAN_CONFIGS``) or a registered model."""
    from flashbench.models.registry import models

    if name in WAN_CONFIGS:
        return wan_model(name, frames, height, width, dtype)
    known = [*WAN_CONFIGS, *(n for n in models if n != "wan")]
    if name not in known:
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        why = " (plan Wan from its configuration)" if name == "wan" else ""
        raise ValueError(
            f"model {name!r} cannot be planned{why}; {hint}use one of {', '.join(known)}"
        )
    return registry_model(name, frames, height, width)
