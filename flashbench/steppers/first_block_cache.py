"""First-block cache: skip the remaining blocks while the first block's residual barely moves."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from flashbench.denoiser import Cond, Denoiser
from flashbench.steppers.base import CacheLayout, Facts, Features, Stepper, sigma_batch
from flashbench.steppers.layered import check_threshold, relative_l1, require_layered, run_blocks


@dataclass(frozen=True)
class FirstBlockCache(Stepper):
    """First-block cache (ParaAttention; diffusers ``FirstBlockCacheConfig``), a TeaCache variant (Liu et al. 2024, arXiv 2411.19108).

    Block 0 always runs; when mean|r1 - r1_last| / mean|r1_last| < ``threshold`` (r1 = block 0's
    residual, r1_last its value at the last full pass) blocks 1..L-1 are skipped and their
    cached residual is added to block 0's output.
    """

    threshold: float = 0.05

    name = "first_block_cache"

    @classmethod
    def facts(cls, steps: int) -> Facts:
        return Facts(never_skip=({"threshold": 0.0},), examples={"default": {"threshold": 0.5}})

    def __post_init__(self) -> None:
        check_threshold(self.threshold, "threshold", "diffusers uses 0.05; threshold=0 never skips")

    def cache_layout(self, features: Features) -> CacheLayout:
        # Block 0's residual and the residual of blocks 1..L-1.
        return CacheLayout(features.hidden, 1, 2)

    def velocity(
        self, model: Denoiser, x: Tensor, sigmas: Tensor, step: int, cond: Cond, cache: dict
    ) -> tuple[Tensor, str]:
        model = require_layered(
            model, self.name, "for a black-box denoiser use alp or taylorseer with level='output'"
        )
        h, ctx = model.embed(x, sigma_batch(sigmas, step, x), cond)
        first = model.blocks[0](h, ctx)
        residual = first - h
        if "rest" in cache and relative_l1(residual, cache["first_residual"]) < self.threshold:
            return model.head(first + cache["rest"], ctx), "reuse"
        out = run_blocks(model, first, ctx, start=1)
        cache["first_residual"] = residual
        cache["rest"] = out - first
        return model.head(out, ctx), "compute"
