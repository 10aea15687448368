"""The memory planner: what sampling a video under a setting holds, from the model's shapes alone.

Nothing of the video's size is allocated: the model's ``embed``, one block and its ``head`` run
under torch's ``FakeTensorMode`` on a latent window (shapes and dtypes only), and Wan is built
of fake tensors from its configuration. Per setting, in bytes (``docs/memory.md``):

- ``weights``: the denoiser's parameters resident on the device: all of them, or with
  ``offload="blocks"`` (diffusers' block-level group offloading with a prefetch stream) those
  outside the block stack plus two blocks, the one running and the next being copied in.
- ``latents``: the whole video's latent, held three times (the noise, x, and the other guidance
  branch's velocity during a pass or the blended next x after it), plus every window's output
  of a step.
- ``activations``: the most bytes alive at once in one pass (embed, a block, head) over the
  largest window, tracked tensor by tensor (``LiveBytes``) while it runs on fake tensors: every
  intermediate the model's code keeps, attention's included, as the kernels the device would
  pick allocate them. Memory a kernel takes for itself without a tensor (a CPU convolution's
  workspace) is not seen.
- ``cache``: the stepper's ``cache_layout`` per (window, guidance branch), summed over the
  (window, branch) pairs alive at once (``sample`` keeps every window's cache between steps,
  and a shifting grid's old windows until the step ends); this is what ``sample`` reports as
  ``peak_cache_bytes``. Under sliding windows each window keeps its own cache, so a caching
  stepper's cache grows with the video's length (``cache_per_window`` x the live windows,
  ``cache_grows_with_length``) while the activations stay bounded by the window.
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
import weakref
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from flashbench.denoiser import Cond, LayeredDenoiser
from flashbench.models.base import CaseSpec
from flashbench.schedule import flow_match_sigmas
from flashbench.settings import Setting
from flashbench.steppers.base import Features

# Wan 2.1 transformers (Wan Team 2025, arXiv 2503.20314, Table 1; diffusers' ``WanTransformer3DModel``
# arguments, as in the Wan-AI/Wan2.1-*-Diffusers transformer configs); the rest of the
# configuration is diffusers' default. Image to video adds the first-frame mask and latent to the
# input channels (16 + 4 + 16) and CLIP ViT-H/14 image tokens (257 of width 1280).
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
    "wan2.1-i2v-14b": {
        "num_attention_heads": 40,
        "attention_head_dim": 128,
        "ffn_dim": 13824,
        "num_layers": 40,
        "in_channels": 36,
        "image_dim": 1280,
        "added_kv_proj_dim": 5120,
    },
}
# Wan's VAE: 4x in time (frames = 4k + 1), 8x in space, 16 channels; umT5 prompts of 512 tokens.
WAN_TIME_STRIDE, WAN_SPACE_STRIDE, WAN_CHANNELS, WAN_TEXT = 4, 8, 16, (512, 4096)
WAN_IMAGE_TOKENS = 257
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
    # The largest window's cache, all branches: ``sample`` keeps one per live window, so under
    # sliding windows a caching stepper's memory grows with the video's length (``windows``
    # of them), not only the latents.
    cache_per_window: int = 0

    @property
    def cache_grows_with_length(self) -> bool:
        """Whether the cache is kept per window over a video longer than one window."""
        return self.windows > 1 and self.cache > 0

    @property
    def total(self) -> int:
        # The transient exists between blocks, when a block's intermediates are gone: the peak
        # is inside a block or at the cache update, whichever is larger.
        at_update = self.activations - self.block_intermediates + self.transient
        return self.weights + self.latents + self.cache + max(self.activations, at_update)

    def as_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "total": self.total,
            "cache_grows_with_length": self.cache_grows_with_length,
        }


def block_module(block: Any) -> nn.Module:
    """The module behind a denoiser's block (Wan's adapter wraps each diffusers block)."""
    return block if isinstance(block, nn.Module) else block.block


class LiveBytes(TorchDispatchMode):
    """The bytes of the tensors created inside it that are still referenced, and their peak.

    Counted per storage (views share their base's) and released when the last tensor on a storage
    is collected, which CPython does at its last reference, as in an eager run. Under
    ``FakeTensorMode`` it measures an activation peak without allocating: on the reference DiT
    it equals the peak that torch's profiler records for the same pass run for real.
    """

    def __init__(self) -> None:
        super().__init__()
        self.live = self.peak = 0
        self._views: dict[int, int] = {}

    def _release(self, key: int, nbytes: int) -> None:
        self._views[key] -= 1
        if not self._views[key]:
            del self._views[key]
            self.live -= nbytes

    def restart_peak(self) -> None:
        self.peak = self.live

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        inputs = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, Tensor)]
        for tensor in tree_flatten(out)[0]:
            if not isinstance(tensor, Tensor):
                continue
            storage = tensor.untyped_storage()
            key, nbytes = storage._cdata, storage.nbytes()
            if func.is_view and inputs:
                # A view allocates nothing: it keeps its base's storage alive, if counted here
                # (a fake view of a real weight gets a storage of its own, so key the base's).
                key = inputs[0].untyped_storage()._cdata
            if key not in self._views and (
                func.is_view or key in {t.untyped_storage()._cdata for t in inputs}
            ):
                continue  # memory allocated before: weights, the input latent
            if key not in self._views:
                self._views[key] = 0
                self.live += nbytes
                self.peak = max(self.peak, self.live)
            self._views[key] += 1
            weakref.finalize(tensor, self._release, key, nbytes)
        return out


@dataclass(frozen=True)
class _Probe:
    """One pass (embed, a block, head) over a window, run on fake tensors."""

    features: Features
    peak: int  # the most bytes of the pass's tensors alive at once
    between_blocks: int  # those alive when a block has returned: its output and the context


def _probe(model: PlannedModel, frames: int) -> _Probe:
    """The stepper-facing sizes of a window of ``frames`` latent frames and the live bytes of one pass over it."""
    denoiser = model.denoiser
    parameter = next(denoiser.parameters())
    device = parameter.device
    # A model built of fake tensors (``wan_model``) runs in the mode that made them.
    fake = getattr(parameter, "fake_mode", None) or FakeTensorMode(allow_non_fake_inputs=True)
    shape = (*model.latent_shape[:2], frames, *model.latent_shape[3:])
    live = LiveBytes()
    # Real weights and conditioning enter as they are; every tensor made from them is a fake
    # one that has a shape and a dtype but no storage.
    # Sampling runs without autograd, which would keep every intermediate for a backward pass.
    with torch.no_grad(), fake:
        x = torch.empty(shape, dtype=model.latent_dtype, device=device)
        sigma = torch.ones(shape[0], device=device)
        cond = model.cond.window(0, frames)
        with live:
            h, ctx = denoiser.embed(x, sigma, cond)
            hidden, hidden_itemsize = h.numel() * h.element_size(), h.element_size()
            tokens = h.numel() // h.shape[-1]
            # As ``run_blocks``: the block's input is dropped once its output is bound.
            h = denoiser.blocks[0](h, ctx)
            between_blocks = live.live
            v = denoiser.head(h, ctx)
            del h
        time = ctx.get("time") if isinstance(ctx, dict) else None
    features = Features(
        blocks=len(denoiser.blocks),
        hidden=hidden,
        tokens=tokens,
        latent=x.numel() * x.element_size(),
        velocity=v.numel() * v.element_size(),
        time=None if time is None else time.numel() * time.element_size(),
        hidden_itemsize=hidden_itemsize,
        velocity_itemsize=v.element_size(),
    )
    return _Probe(features, live.peak, between_blocks)


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
    probes: dict[int, _Probe] | None = None,
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

    def probe(length: int) -> _Probe:
        if length not in probes:
            probes[length] = _probe(model, length)
        return probes[length]

    cache, windows, outputs, previous = 0, 0, 0, set()
    for step in range(planned_steps):
        current = set(windowing.windows(frames, step))
        # ``sample`` frees the caches of windows left behind only after the step that left them.
        alive = current | previous
        entry = sum(
            stepper.cache_layout(probe(stop - start).features).total for start, stop in alive
        )
        cache = max(cache, entry * branches)
        windows = max(windows, len(current))
        outputs = max(outputs, sum(probe(stop - start).features.latent for start, stop in current))
        previous = current
    largest = max(stop - start for start, stop in windowing.windows(frames, 0))
    largest_probe = probe(largest)
    features = largest_probe.features
    layout = stepper.cache_layout(features)
    activations = largest_probe.peak
    video = math.prod(model.latent_shape) * model.latent_dtype.itemsize
    return MemoryPlan(
        setting=setting.name,
        weights=weights,
        latents=3 * video + outputs,
        activations=activations,
        cache_per_block=layout.per_block,
        cache_blocks=layout.blocks,
        cache_factors=layout.factors,
        cache_other=layout.other,
        cache=cache,
        transient=layout.transient_bytes,
        branches=branches,
        windows=windows,
        offload=offload,
        cache_per_window=layout.total * branches,
        # Only an in-place update (a declared transient) is known to run between blocks.
        block_intermediates=(
            activations - largest_probe.between_blocks if layout.transient is not None else 0
        ),
    )


# ---- models ---------------------------------------------------------------------------------


def wan_model(
    name: str, frames: int, height: int, width: int, dtype: str = "bfloat16"
) -> PlannedModel:
    """A Wan 2.1 transformer of ``WAN_CONFIGS`` made of fake tensors (shapes, no storage), with a video of ``frames`` x ``height`` x ``width`` pixels."""
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
    shape = (
        1,
        WAN_CHANNELS,
        (frames - 1) // WAN_TIME_STRIDE + 1,
        height // WAN_SPACE_STRIDE,
        width // WAN_SPACE_STRIDE,
    )
    # Fake CPU tensors, not the meta device: on meta, attention can only take the math path,
    # which holds the tokens x tokens matrix; a CPU (as a GPU) takes a fused kernel that does not.
    with FakeTensorMode(allow_non_fake_inputs=True):
        transformer = WanTransformer3DModel(**WAN_CONFIGS[name])
        cast_as_from_pretrained(transformer, DTYPES[dtype])
        text = torch.empty(1, *WAN_TEXT)
        config = transformer.config
        image = condition = None
        if config.image_dim is not None:
            image = torch.empty(1, WAN_IMAGE_TOKENS, config.image_dim)
            condition = torch.empty(1, config.in_channels - WAN_CHANNELS, *shape[2:])
    cond = wan_cond(text, text, image_embeds=image, condition=condition)
    # The pipelines keep the latents in float32 and cast the input to the transformer's dtype.
    return PlannedModel(name, WanDenoiser(transformer), shape, torch.float32, cond)


def cast_as_from_pretrained(transformer: nn.Module, dtype: torch.dtype) -> None:
    """Cast a diffusers model's parameters to ``dtype`` in place, one at a time, as ``from_pretrained(torch_dtype=...)`` does: the modules it keeps in float32 stay so."""
    keep = set(type(transformer)._keep_in_fp32_modules or ())
    for name, parameter in transformer.named_parameters():
        if not keep & set(name.split(".")):
            parameter.data = parameter.data.to(dtype)


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
