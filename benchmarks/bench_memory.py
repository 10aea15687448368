"""The memory planner against measured peaks: the toy and the reference model on the CPU.

For each (model, setting), one ``sample`` with emotion CFG (two branches) is measured twice:
``Sample.peak_cache_bytes`` (the exact peak of the stepper's caches) against the planner's
``cache``, and the peak of live tensor bytes allocated while sampling (torch's profiler,
``profile_memory=True``: every CPU allocation and free in order; the weights were allocated
before and are not counted) against the planner's ``total - weights``. Ratios are measured /
planned; the cache must lie within 10%.
Run: python benchmarks/bench_memory.py [--steps 10] [--frames 16]
"""

from __future__ import annotations

import argparse

import torch
from torch.profiler import ProfilerActivity, profile

from flashbench.planning.memory import PlannedModel, plan, planned_model
from flashbench.sampling import Guidance, sample
from flashbench.schedule import flow_match_sigmas
from flashbench.settings import settings

SETTINGS = ("baseline", "alp_k5", "taylorseer_n5_o1", "fora_n3", "sliding")
MODELS = {"toy": 32, "reference": 64}  # square frame size in pixels (the reference runs at 64)


def peak_allocated(events: list) -> int:
    """Largest running sum of the profiler's CPU allocations (+) and frees (-), in time order."""
    memory = sorted((e.start_ns(), e.nbytes()) for e in events if e.name() == "[memory]")
    live = peak = 0
    for _, change in memory:
        live += change
        peak = max(peak, live)
    return peak


def measure(model: PlannedModel, name: str, steps: int) -> tuple[int, int]:
    """(peak_cache_bytes, peak allocated bytes) of one guided sample under setting ``name``."""
    stepper, windowing, _ = settings.get(name).build()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as profiler:
        # The noise is part of what sampling holds (the planner counts it), so it is measured too.
        noise = torch.randn(model.latent_shape, generator=torch.Generator().manual_seed(0))
        result = sample(
            model.denoiser,
            noise,
            flow_match_sigmas(steps),
            model.cond,
            stepper=stepper,
            windowing=windowing,
            guidance=Guidance(4.0),
        )
    return result.peak_cache_bytes, peak_allocated(profiler.profiler.kineto_results.events())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--frames", type=int, default=16)
    args = parser.parse_args()
    torch.set_num_threads(1)
    kib = 2**10
    print(
        f"{'model':<10} {'setting':<17} {'cache KiB':>10} {'planned':>10} {'ratio':>6} "
        f"{'alloc KiB':>10} {'planned':>10} {'ratio':>6}"
    )
    for model_name, size in MODELS.items():
        model = planned_model(model_name, args.frames, size, size)
        for name in SETTINGS:
            planned = plan(model, settings.get(name), args.steps, guided=True)
            cache, allocated = measure(model, name, args.steps)
            working = planned.total - planned.weights
            cache_ratio = cache / planned.cache if planned.cache else float(cache == 0)
            print(
                f"{model_name:<10} {name:<17} {cache / kib:>10.1f} {planned.cache / kib:>10.1f} "
                f"{cache_ratio:>6.3f} {allocated / kib:>10.1f} {working / kib:>10.1f} "
                f"{allocated / working:>6.3f}"
            )


if __name__ == "__main__":
    main()
