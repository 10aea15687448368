"""Benchmark every stepper on the toy denoiser: NFE, wall time, error to Euler, prediction overhead.

Run: ``python benchmarks/bench_steppers.py [--steps 30] [--frames 16] [--size 16] [--repeats 3]``.
Speedup is wall time against an Euler run made just before (same load). ``pred/pass``: the median time of a predicted or
reused step over the median time of one full Euler pass (the goal: at most 0.10);
``full/pass``: the same for the stepper's own full steps (a pass plus its cache update).
The error is the relative RMSE of the final latent to Euler's at the full step count.
A benchmark, not a test: figures depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import torch

from flashbench.denoiser import Cond
from flashbench.models.toy import ToyDenoiser
from flashbench.planning.calibration import calibrate_magcache, calibrate_teacache
from flashbench.sampling import Sample, sample
from flashbench.schedule import flow_match_sigmas
from flashbench.settings import steppers
from flashbench.steppers.calibration import save_calibration

CONFIGS: list[tuple[str, str, dict]] = [
    ("euler", "euler", {}),
    ("alp K5 n3 (default)", "alp", {}),
    ("alp K5 n3 sigma", "alp", {"spacing": "sigma"}),
    ("alp K5 n3 newton", "alp", {"form": "newton"}),
    ("alp K5 n3 newton sigma", "alp", {"form": "newton", "spacing": "sigma"}),
    ("alp K5 n3 std", "alp", {"reading": "std"}),
    ("alp K5 n3 no dynamic", "alp", {"dynamic": False}),
    ("alp K5 n1", "alp", {"order": 1}),
    ("alp adaptive 0.1", "alp", {"threshold": 0.1, "interval": 6}),
    ("alp output-level", "alp", {"level": "output"}),
    ("taylorseer N5 O1", "taylorseer", {"interval": 5, "order": 1}),
    ("taylorseer N5 O1 newton", "taylorseer", {"interval": 5, "order": 1, "form": "newton"}),
    ("teacache 0.2 (identity poly)", "teacache", {"threshold": 0.2}),
    ("teacache 0.2 (calibrated)", "teacache", {"threshold": 0.2, "calibration": "TEA"}),
    ("fora N3", "fora", {"interval": 3}),
    ("first_block_cache 0.05", "first_block_cache", {"threshold": 0.05}),
    ("magcache (online)", "magcache", {}),
    ("magcache (calibrated)", "magcache", {"calibration": "MAG"}),
    ("fewer_steps 6", "fewer_steps", {"steps": 6}),
    ("fewer_steps 9", "fewer_steps", {"steps": 9}),
    ("dpmpp_2m 6", "dpmpp_2m", {"steps": 6}),
    ("dpmpp_2m 9", "dpmpp_2m", {"steps": 9}),
]


def step_seconds(result: Sample, actions: tuple[str, ...]) -> float | None:
    times = [r.seconds for r in result.trace if r.action in actions]
    return statistics.median(times) if times else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--shift", type=float, default=5.0)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=16)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--depth", type=int, default=6)
    parser.add_argument(
        "--repeats", type=int, default=3, help="runs per setting (the fastest counts)"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--model",
        default=None,
        help="a name from flashbench.models.registry (e.g. reference) instead of the bare toy",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    generator = torch.Generator().manual_seed(0)
    if args.model is None:
        model = ToyDenoiser(channels=4, dim=args.dim, depth=args.depth, temporal=True).eval()
        shape, cond = (1, 4, args.frames, args.size, args.size), Cond()
        description = f"toy denoiser dim={args.dim} depth={args.depth}"
    else:
        from flashbench.models.base import CaseSpec
        from flashbench.models.registry import models

        portrait = models.build(args.model)
        identity = portrait.splits["test"][0]
        case = CaseSpec("bench", "self", identity, identity, 0, args.frames, args.size)
        inputs = portrait.prepare(case)
        model, shape, cond = portrait.denoiser, inputs.latent_shape, inputs.cond
        description = f"model {args.model}"
    noise = torch.randn(shape, generator=generator)
    calibration_noises = [torch.randn(shape, generator=generator) for _ in range(2)]
    sigmas = flow_match_sigmas(args.steps, args.shift)
    folder = Path(tempfile.mkdtemp(prefix="bench_steppers_"))
    files = {
        "TEA": str(
            save_calibration(
                calibrate_teacache(model, calibration_noises, sigmas, cond), folder / "tea.json"
            )
        ),
        "MAG": str(
            save_calibration(
                calibrate_magcache(model, calibration_noises, sigmas, cond), folder / "mag.json"
            )
        ),
    }

    euler = min(
        (sample(model, noise, sigmas, cond) for _ in range(args.repeats)), key=lambda r: r.seconds
    )
    full_pass = step_seconds(euler, ("compute",))
    reference = euler.latents
    scale = reference.pow(2).mean().sqrt()
    print(
        f"{description}, latent {list(shape)}, {args.steps} steps, "
        f"shift {args.shift}; one full pass {1000 * full_pass:.2f} ms, {args.threads} thread(s)"
    )
    header = f"{'setting':<30} {'NFE':>4} {'wall s':>7} {'speedup':>7} {'rel RMSE':>9} {'pred/pass':>9} {'full/pass':>9} {'cache MB':>8}"
    print(header)
    print("-" * len(header))
    for label, name, kwargs in CONFIGS:
        kwargs = {k: files.get(v, v) if isinstance(v, str) else v for k, v in kwargs.items()}
        stepper = steppers.build(name, **kwargs)
        # Euler runs right before each run of the stepper, so that both see the same machine load.
        pairs = [
            (
                sample(model, noise, sigmas, cond),
                sample(model, noise, sigmas, cond, stepper=stepper),
            )
            for _ in range(args.repeats)
        ]
        plain, result = min(pairs, key=lambda pair: pair[1].seconds)
        full_pass = step_seconds(plain, ("compute",))
        error = float((result.latents - reference).pow(2).mean().sqrt() / scale)
        predicted = step_seconds(result, ("predict", "reuse"))
        overhead = f"{predicted / full_pass:9.3f}" if predicted is not None else f"{'-':>9}"
        own_pass = f"{step_seconds(result, ('compute',)) / full_pass:9.3f}"
        print(
            f"{label:<30} {result.nfe:>4} {result.seconds:>7.3f} {plain.seconds / result.seconds:>7.2f} "
            f"{error:>9.4f} {overhead} {own_pass} {result.peak_cache_bytes / 2**20:>8.2f}"
        )


if __name__ == "__main__":
    main()
