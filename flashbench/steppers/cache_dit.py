"""cache-dit's DBCache (and its TaylorSeer calibrator) on the Wan transformer, as a stepper."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from torch import Tensor

from flashbench.denoiser import Cond, Denoiser
from flashbench.steppers.base import (
    CacheLayout,
    Facts,
    Features,
    Stepper,
    sigma_batch,
    tensor_bytes,
)
from flashbench.steppers.diffusers_cache import counted_call, require_diffusers_transformer

# Set by the stepper for each (window, guidance branch): each branch has its own context, so
# cache-dit's even/odd-call CFG bookkeeping must stay off.
RESERVED = ("cache_type", "enable_separate_cfg", "cfg_compute_first", "num_inference_steps")
# The one cache-dit release this stepper runs on: velocity() reads its private
# `_context_manager._cached_context_manager` and `_context_names`, which any release may change
# (pyproject's wan extra pins the same version).
CACHE_DIT_VERSION = "1.5.3"


@dataclass(frozen=True)
class CacheDiT(Stepper):
    """cache-dit's Dual Block Cache (vipshop/cache-dit; first Fn blocks always run, the middle ones are skipped while the Fn output's residual barely changes, the last Bn blocks refine), optionally with its TaylorSeer calibrator (Liu et al. 2025, arXiv 2503.06923).

    ``args`` are ``cache_dit.DBCacheConfig``'s, spelled as cache-dit spells them
    (``Fn_compute_blocks``, ``residual_diff_threshold``, ``max_warmup_steps``, ...);
    ``taylorseer_order`` adds ``TaylorSeerCalibratorConfig`` of that order (None: plain DBCache).
    Around each velocity cache-dit is enabled on the ``wan`` model's transformer, this (window,
    guidance branch)'s cache context is swapped in, the transformer's own forward runs, and
    cache-dit is disabled again: each branch keeps its own context (so cache-dit's separate-CFG
    call counting is off), a new sample starts from none, and other settings share a plain
    transformer. Accounting as ``diffusers_cache``: a call where every block ran is
    ``"compute"`` (one NFE), one that ran only the Fn/Bn blocks is ``"partial"``.
    """

    args: Mapping[str, Any] = field(default_factory=dict)
    taylorseer_order: int | None = None

    name = "cache_dit"

    @classmethod
    def facts(cls, steps: int) -> Facts:
        # cache-dit's TaylorSeer takes a derivative only from its fourth computed call on.
        dbcache = {"Fn_compute_blocks": 1, "max_warmup_steps": 4, "residual_diff_threshold": 0.5}
        never = {"Fn_compute_blocks": 1, "residual_diff_threshold": 0.0}
        return Facts(
            never_skip=({"args": never}, {"args": never, "taylorseer_order": 1}),
            examples={
                "dbcache": {"args": dbcache},
                "dbcache_taylorseer": {"args": dbcache, "taylorseer_order": 1},
            },
            diffusers=True,
        )

    def __post_init__(self) -> None:
        if not isinstance(self.args, Mapping):
            raise ValueError(f"args={self.args!r} must be a mapping of DBCacheConfig's arguments")
        reserved = sorted(set(self.args) & set(RESERVED))
        if reserved:
            raise ValueError(
                f"args sets {reserved}, which the cache_dit stepper sets itself (one context per "
                "guidance branch, the schedule's step count); leave them out"
            )
        if self.taylorseer_order is not None and (
            isinstance(self.taylorseer_order, bool)
            or not isinstance(self.taylorseer_order, int)
            or self.taylorseer_order < 1
        ):
            raise ValueError(
                f"taylorseer_order={self.taylorseer_order!r} must be an integer >= 1, or None "
                "for plain DBCache"
            )
        self.configs(steps=50)

    def configs(self, steps: int) -> dict[str, Any]:
        """cache-dit's ``enable_cache`` keyword arguments for a schedule of ``steps`` steps."""
        cache_dit = import_cache_dit()
        try:
            config = cache_dit.DBCacheConfig(
                **self.args, enable_separate_cfg=False, num_inference_steps=steps
            )
        except TypeError as err:
            raise ValueError(
                f"bad args={dict(self.args)!r} for cache-dit's DBCacheConfig: {err}; name its "
                "arguments as cache-dit does (Fn_compute_blocks, residual_diff_threshold, ...)"
            ) from err
        calibrator = (
            None
            if self.taylorseer_order is None
            else cache_dit.TaylorSeerCalibratorConfig(taylorseer_order=self.taylorseer_order)
        )
        return {"cache_config": config, "calibrator_config": calibrator}

    def velocity(
        self, model: Denoiser, x: Tensor, sigmas: Tensor, step: int, cond: Cond, cache: dict
    ) -> tuple[Tensor, str]:
        transformer = require_diffusers_transformer(model, self.name)
        cache_dit = import_cache_dit()
        configs = self.configs(len(sigmas) - 1)
        blocks = len(transformer.blocks)
        fn, bn = (
            configs["cache_config"].Fn_compute_blocks,
            configs["cache_config"].Bn_compute_blocks,
        )
        if fn + bn > blocks:
            raise ValueError(
                f"Fn_compute_blocks={fn} + Bn_compute_blocks={bn} exceeds the transformer's "
                f"{blocks} blocks; set them in the setting's args"
            )
        # As WanDenoiser.embed and the pipelines: float32 sigma * num_train_timesteps.
        timestep = sigma_batch(sigmas, step, x).float() * model.train_timesteps
        hidden, text, image = model.transformer_inputs(x, cond)
        cache_dit.enable_cache(transformer, **configs)
        try:
            # cache-dit 1.5.3 keeps a transformer-only run's contexts by name in its manager;
            # the branch's own context object goes in under that name for this call.
            contexts = transformer._context_manager._cached_context_manager
            names = transformer._context_names
            saved = cache.setdefault("contexts", {name: contexts[name] for name in names})
            contexts.update(saved)
            v, action = counted_call(
                transformer,
                lambda: transformer(hidden, timestep, text, image, return_dict=False)[0],
                "predict" if self.taylorseer_order else "reuse",
            )
        finally:
            # Out of the manager before disabling, which clears the buffers of every context
            # it holds (a refresh may have replaced an object: keep what the call ended with).
            saved.update({name: contexts.pop(name) for name in names if name in contexts})
            cache_dit.disable_cache(transformer)
        return v, action

    def cache_layout(self, features: Features) -> CacheLayout:
        """Refused: the state lives in cache-dit's contexts, whose tensors FlashBench does not declare."""
        raise ValueError(
            "flashbench memory cannot plan stepper 'cache_dit': its state lives inside "
            "cache-dit's contexts; measure it with flashbench run (the speed rows' cache_bytes)"
        )

    def cache_bytes(self, cache: dict) -> int:
        return tensor_bytes(cache.get("contexts", {}))


def import_cache_dit() -> Any:
    """``cache_dit``, or a ValueError naming the extra; its per-call messages are kept out of the log."""
    # Info messages on every enable, unless the user chose a level.
    os.environ.setdefault("CACHE_DIT_LOG_LEVEL", "warning")
    try:
        import cache_dit
    except ImportError as err:
        raise ValueError(
            f"stepper 'cache_dit' needs cache-dit ({err}); install the wan extra: "
            "pip install 'flashbench[wan]'"
        ) from err
    check_cache_dit_version(metadata.version("cache-dit"))
    interface = logging.getLogger("cache_dit.caching.cache_interface")
    if DROP_DISABLE_WARNING not in interface.filters:
        interface.addFilter(DROP_DISABLE_WARNING)
    return cache_dit


def check_cache_dit_version(installed: str) -> None:
    """Refuse a cache-dit other than CACHE_DIT_VERSION: the stepper reads its private context manager."""
    if installed != CACHE_DIT_VERSION:
        raise ValueError(
            f"stepper 'cache_dit' needs cache-dit=={CACHE_DIT_VERSION}, but cache-dit {installed} "
            "is installed: it reads cache-dit's private "
            "`_context_manager._cached_context_manager`, which other releases may change; "
            f"fix: pip install 'cache-dit=={CACHE_DIT_VERSION}'"
        )


class _DropDisableWarning(logging.Filter):
    """disable_cache warns on every call; the stepper disables after every velocity by design."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Acceleration hooks is disabled")


DROP_DISABLE_WARNING = _DropDisableWarning()
