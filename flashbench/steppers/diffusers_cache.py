"""diffusers' own caches (first-block cache, PAB, TaylorSeer, MagCache, SeaCache) on the Wan transformer, as a stepper."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from flashbench.denoiser import Cond, Denoiser
from flashbench.steppers.base import (
    CacheLayout,
    Facts,
    Features,
    Stepper,
    sigma_batch,
    tensor_bytes,
)

# FlashBench name -> diffusers config class. FasterCache is left out: in diffusers 0.42.1 its
# denoiser hook expects the pipeline to batch the two guidance branches, which Wan's pipelines do
# not (an IndexError on WanTransformer3DModel).
CONFIGS = {
    "first_block_cache": "FirstBlockCacheConfig",
    "pyramid_attention_broadcast": "PyramidAttentionBroadcastConfig",
    "taylorseer": "TaylorSeerCacheConfig",
    "mag_cache": "MagCacheConfig",
    "sea_cache": "SeaCacheConfig",
}
# Each block's last projections: they run only when the block's attention / FFN really runs, so
# their calls count what a cache computed (a hook on a cached module fires even when it skips).
PROBES = ("attn1.to_out.0", "attn2.to_out.0", "ffn.net.2")


@dataclass(frozen=True)
class DiffusersCache(Stepper):
    """diffusers' cache hooks as a peer: FirstBlockCache (ParaAttention), PAB (Zhao et al. 2024, arXiv 2408.12588), TaylorSeer (Liu et al. 2025, arXiv 2503.06923), MagCache (Ma et al. 2025, arXiv 2506.09045), SeaCache (arXiv 2602.18993).

    ``config`` names the diffusers config (``CONFIGS``), ``args`` its arguments as diffusers
    spells them (``taylor_factors_dtype`` as a name, e.g. ``"float32"``). Around each velocity
    the config is enabled on the ``wan`` model's ``WanTransformer3DModel`` and the
    transformer's own forward runs inside a cache context; the hooks' state is swapped in from
    this (window, guidance branch)'s cache, so each branch keeps its own state, a new sample
    starts from none, and the transformer is plain again between calls (other settings share
    it). PAB's timestep callback gets the call's ``t = 1000 sigma``; MagCache's
    ``num_inference_steps`` defaults to the schedule's.

    Accounting: every block's self-attention, cross-attention and FFN output projection counts
    its real executions. A call where all ran is ``"compute"`` (one NFE); none ran, ``"reuse"``
    (``"predict"`` for TaylorSeer); some ran, ``"partial"``, which is not an NFE (a first-block
    cache skip still runs block 0, PAB reuses only attention), so its cost shows in measured
    time, not in NFE. Cache bytes: the tensors the hooks' state holds for the branch.
    """

    config: str = "first_block_cache"
    args: Mapping[str, Any] = field(default_factory=dict)

    name = "diffusers_cache"

    @classmethod
    def facts(cls, steps: int) -> Facts:
        ratios = [1.0] * 4  # MagCache's gamma = 1: every step after the retention may skip.
        return Facts(
            never_skip=(
                {"config": "first_block_cache", "args": {"threshold": 0.0}},
                {
                    "config": "pyramid_attention_broadcast",
                    "args": {"spatial_attention_block_skip_range": 1},
                },
                {"config": "taylorseer", "args": {"use_lite_mode": True, "cache_interval": 1}},
                {"config": "mag_cache", "args": {"mag_ratios": ratios, "retention_ratio": 1.0}},
                {"config": "sea_cache", "args": {"threshold": 0.0}},
            ),
            examples={
                "first_block_cache": {"config": "first_block_cache", "args": {"threshold": 0.5}},
                "pyramid_attention_broadcast": {
                    "config": "pyramid_attention_broadcast",
                    "args": {
                        "spatial_attention_block_skip_range": 2,
                        "spatial_attention_timestep_skip_range": (0, 1000),
                    },
                },
                "taylorseer": {
                    "config": "taylorseer",
                    "args": {
                        "use_lite_mode": True,
                        "cache_interval": 2,
                        "disable_cache_before_step": 1,
                    },
                },
                "mag_cache": {"config": "mag_cache", "args": {"mag_ratios": ratios}},
                "sea_cache": {"config": "sea_cache", "args": {"threshold": 0.5}},
            },
            diffusers=True,
        )

    def __post_init__(self) -> None:
        if self.config not in CONFIGS:
            close = difflib.get_close_matches(str(self.config), CONFIGS, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ValueError(
                f"config={self.config!r} is not a diffusers cache FlashBench runs; {hint}"
                f"use one of {', '.join(CONFIGS)}"
            )
        if not isinstance(self.args, Mapping) or "current_timestep_callback" in self.args:
            raise ValueError(
                f"args={self.args!r} must be a mapping of the diffusers config's arguments, "
                "without current_timestep_callback (the stepper gives PAB the call's timestep)"
            )
        self.diffusers_config(steps=50, timestep=lambda: 0)

    def diffusers_config(self, steps: int, timestep: Callable[[], Any]) -> Any:
        """The diffusers config object for a schedule of ``steps`` steps."""
        hooks = import_hooks()
        args = dict(self.args)
        if isinstance(args.get("taylor_factors_dtype"), str):
            args["taylor_factors_dtype"] = getattr(torch, args["taylor_factors_dtype"])
        if self.config == "pyramid_attention_broadcast":
            args["current_timestep_callback"] = timestep
        if self.config == "mag_cache":
            args.setdefault("num_inference_steps", steps)
        try:
            return getattr(hooks, CONFIGS[self.config])(**args)
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"bad args={dict(self.args)!r} for diffusers' {CONFIGS[self.config]}: {err}; "
                "name its arguments as diffusers does"
            ) from err

    def velocity(
        self, model: Denoiser, x: Tensor, sigmas: Tensor, step: int, cond: Cond, cache: dict
    ) -> tuple[Tensor, str]:
        transformer = require_diffusers_transformer(model, self.name)
        steps = len(sigmas) - 1
        # As WanDenoiser.embed and the pipelines: float32 sigma * num_train_timesteps.
        timestep = sigma_batch(sigmas, step, x).float() * model.train_timesteps
        hidden, text, image = model.transformer_inputs(x, cond)
        transformer.enable_cache(self.diffusers_config(steps, lambda: timestep[0]))
        holders = state_holders(transformer)
        states = cache.setdefault("states", [type(getattr(o, a))() for o, a in holders])
        try:
            for (owner, attribute), state in zip(holders, states, strict=True):
                setattr(owner, attribute, state)
            with transformer.cache_context(
                "flashbench",
                step_index=step,
                num_inference_steps=steps,
                timestep=timestep[0],
                sigma=float(sigmas[step]),
            ):
                v, action = counted_call(
                    transformer,
                    lambda: transformer(hidden, timestep, text, image, return_dict=False)[0],
                    "predict" if self.config == "taylorseer" else "reuse",
                )
        finally:
            # Fresh state objects before the hooks go, so the branch's state lives in its cache only.
            for owner, attribute in holders:
                setattr(owner, attribute, type(getattr(owner, attribute))())
            transformer.disable_cache()
        return v, action

    def cache_layout(self, features: Features) -> CacheLayout:
        """Refused: the state lives in diffusers' hooks, whose tensors FlashBench does not declare."""
        raise ValueError(
            f"flashbench memory cannot plan stepper 'diffusers_cache' (config {self.config!r}): "
            "its state lives inside diffusers' hooks; measure it with flashbench run "
            "(the speed rows' cache_bytes)"
        )

    def cache_bytes(self, cache: dict) -> int:
        return tensor_bytes(cache.get("states", []))


def import_hooks() -> Any:
    """``diffusers.hooks``, or a ValueError naming the extra that installs it."""
    try:
        import diffusers.hooks
    except ImportError as err:
        raise ValueError(
            f"stepper 'diffusers_cache' needs diffusers ({err}); install the wan extra: "
            "pip install 'flashbench[wan]'"
        ) from err
    return diffusers.hooks


def require_diffusers_transformer(model: Denoiser, stepper: str) -> nn.Module:
    """The diffusers transformer under a Wan adapter, or a ValueError saying what to use instead."""
    transformer = getattr(model, "transformer", None)
    if not callable(getattr(transformer, "enable_cache", None)) or not callable(
        getattr(model, "transformer_inputs", None)
    ):
        raise ValueError(
            f"stepper {stepper!r} runs a diffusers cache and needs a diffusers transformer "
            f"(the 'wan' model, flashbench.models.wan.denoiser.WanDenoiser), got {type(model).__name__}; for this "
            "model use FlashBench's own first_block_cache, taylorseer or magcache"
        )
    return transformer


def counted_call(
    transformer: nn.Module, call: Callable[[], Tensor], skipped: str
) -> tuple[Tensor, str]:
    """``call()`` and its action, from which block layers really ran (``PROBES``).

    ``"compute"`` when every block's attention and FFN ran (one NFE), ``skipped`` when none did,
    ``"partial"`` when some did (not an NFE: its cost shows in measured time).
    """
    executed: list[int] = []
    layers = [block.get_submodule(p) for block in transformer.blocks for p in PROBES]
    handles = [layer.register_forward_hook(lambda *_: executed.append(1)) for layer in layers]
    try:
        v = call()
    finally:
        for handle in handles:
            handle.remove()
    if len(executed) == len(layers):
        return v, "compute"
    return v, skipped if not executed else "partial"


def state_holders(transformer: nn.Module) -> list[tuple[Any, str]]:
    """(object, attribute) of each piece of per-call state the enabled cache hooks keep, in module order."""
    from diffusers.hooks.hooks import StateManager
    from diffusers.hooks.pyramid_attention_broadcast import PyramidAttentionBroadcastHook

    holders: list[tuple[Any, str]] = []
    for module in transformer.modules():
        registry = getattr(module, "_diffusers_hook", None)
        for hook in [] if registry is None else registry.hooks.values():
            # PAB keeps one state per hook, shared by every context; the others key theirs by
            # context name in a StateManager.
            if isinstance(hook, PyramidAttentionBroadcastHook):
                holders.append((hook, "state"))
            holders.extend(
                (value, "_state_cache")
                for value in vars(hook).values()
                if isinstance(value, StateManager)
                and all(value is not owner for owner, _ in holders)
            )
    return holders
