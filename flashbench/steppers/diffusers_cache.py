"""diffusers' own caches (first-block cache, PAB, TaylorSeer, MagCache, SeaCache) on the Wan transformer, as a stepper."""

from __future__ import annotations

import difflib
import weakref
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
    spells them (``taylor_factors_dtype`` as a name, e.g. ``"float32"``). The config is enabled
    on the ``wan`` model's ``WanTransformer3DModel`` once per sample (``enable_cache`` at the
    sample's first call, ``disable_cache`` when its last cache is dropped, so other settings
    share a plain transformer), and each (window, guidance branch) runs the transformer's own
    forward inside its own ``cache_context``, so each branch keeps its own state and a new
    sample starts from none. PAB's timestep callback gets the call's ``t = 1000 sigma``;
    MagCache's ``num_inference_steps`` defaults to the schedule's.

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
        session = Session.join(transformer, self, steps)
        if "branch" not in cache:
            cache["branch"] = session.open_branch()
        branch = cache["branch"]
        try:
            session.timestep = timestep[0]
            session.swap_in(branch)
            with transformer.cache_context(
                branch.name,
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
                branch.states = [manager.get_state() for manager in session.managers]
        except BaseException:
            session.close()  # a failed sample leaves the transformer plain
            raise
        return v, action

    def cache_layout(self, features: Features) -> CacheLayout:
        """Refused: the state lives in diffusers' hooks, whose tensors FlashBench does not declare."""
        raise ValueError(
            f"flashbench memory cannot plan stepper 'diffusers_cache' (config {self.config!r}): "
            "its state lives inside diffusers' hooks; measure it with flashbench run "
            "(the speed rows' cache_bytes)"
        )

    def cache_bytes(self, cache: dict) -> int:
        return tensor_bytes(cache.get("branch"))


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


class Branch:
    """One (window, guidance branch)'s cache context: its name, its own PAB states, and the diffusers states its last call left."""

    def __init__(self, name: str, broadcast: list[Any]) -> None:
        self.name = name
        self.broadcast = broadcast
        self.states: list[Any] = []


class Session:
    """A diffusers cache enabled on a transformer for one sample, and the branches that sample opened.

    It lives on the transformer (``ATTRIBUTE``) while the sample's caches do: each branch is
    kept in its (window, guidance branch) cache, which ``sample`` drops when the window leaves
    the grid or sampling ends, and the last branch dropped disables the cache.
    """

    ATTRIBUTE = "flashbench_diffusers_cache"

    def __init__(self, transformer: nn.Module, key: tuple[DiffusersCache, int]) -> None:
        from diffusers.hooks import HookRegistry
        from diffusers.hooks.hooks import StateManager
        from diffusers.hooks.pyramid_attention_broadcast import PyramidAttentionBroadcastHook

        stepper, steps = key
        if transformer.is_cache_enabled:
            raise ValueError(
                f"stepper 'diffusers_cache' enables {CONFIGS[stepper.config]} on the transformer, "
                "which already has a diffusers cache enabled; call transformer.disable_cache() "
                "before sampling"
            )
        self.transformer = transformer
        self.key = key
        self.timestep: Tensor | None = None
        self.opened = 0
        self.live = 0
        transformer.enable_cache(stepper.diffusers_config(steps, self.current_timestep))
        # diffusers 0.42 lists no model's hooks publicly; HookRegistry's accessor gives each
        # module its registry (an empty one where the config hooked nothing).
        hooks = [
            hook
            for module in transformer.modules()
            for hook in HookRegistry.check_if_exists_or_initialize(module).hooks.values()
        ]
        # PAB keeps one state per hook for every context (under Wan's separate guidance calls
        # the unconditional call would reuse the conditional call's attention), so each branch
        # brings its own; the others key their state by the context's name in StateManagers.
        self.broadcast = [h for h in hooks if isinstance(h, PyramidAttentionBroadcastHook)]
        self.managers = list(
            {
                id(value): value
                for hook in hooks
                for value in vars(hook).values()
                if isinstance(value, StateManager)
            }.values()
        )
        setattr(transformer, self.ATTRIBUTE, self)

    @classmethod
    def join(cls, transformer: nn.Module, stepper: DiffusersCache, steps: int) -> Session:
        """The sample's session on ``transformer``: the one its caches keep open, else a new one."""
        session = getattr(transformer, cls.ATTRIBUTE, None)
        if session is not None and session.key == (stepper, steps):
            return session
        if session is not None:
            # Left by a sample of another setting whose caches are still referenced (an
            # exception outside the stepper's calls): it must not run this setting's calls.
            session.close()
        return cls(transformer, (stepper, steps))

    def current_timestep(self) -> Tensor | None:
        """The timestep of the call under way (PAB's ``current_timestep_callback``)."""
        return self.timestep

    def open_branch(self) -> Branch:
        """A new (window, guidance branch) context, closed when its cache is dropped."""
        self.opened += 1
        self.live += 1
        branch = Branch(
            f"flashbench-{self.opened}", [type(hook.state)() for hook in self.broadcast]
        )
        # Not at interpreter exit: only a sample dropping its caches ends a branch.
        weakref.finalize(branch, self.release, branch.name).atexit = False
        return branch

    def swap_in(self, branch: Branch) -> None:
        """Give each PAB hook the branch's own state for the call."""
        # diffusers' PAB hook has no per-context state; its `state` attribute is the only way in.
        for hook, state in zip(self.broadcast, branch.broadcast, strict=True):
            hook.state = state

    def release(self, name: str) -> None:
        """Drop a branch whose cache is gone; with the sample's last one, disable the cache."""
        if getattr(self.transformer, self.ATTRIBUTE, None) is not self:
            return
        for manager in self.managers:
            # diffusers 0.42 drops contexts only all at once (StateManager.reset); a window
            # that left the grid frees its state here, as it did when its cache held it.
            manager._state_cache.pop(name, None)
        for hook in self.broadcast:
            hook.state = type(hook.state)()
        self.live -= 1
        if self.live == 0:
            self.close()

    def close(self) -> None:
        """Disable the cache: the transformer is plain again."""
        if getattr(self.transformer, self.ATTRIBUTE, None) is self:
            delattr(self.transformer, self.ATTRIBUTE)
            self.transformer.disable_cache()
