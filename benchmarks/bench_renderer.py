"""Renderer throughput: frames per second at 64x64 and 32x32, by thread count.

    python benchmarks/bench_renderer.py [--frames 2048] [--repeats 3] [--threads 1 2]

Prints one line per (size, threads) with frames/s and the ratio to the 2,000 frames/s
target of issue 3. Identities and expressions are random; timings are the best of
``repeats`` runs after one warm-up, so a busy machine shows its least-disturbed run. With
another process on one of the cores, two intra-op threads wait on each other at every
operation and can be ten times slower than one; ``--threads 1`` skips them there.
"""

from __future__ import annotations

import argparse
import time

import torch

from reference_model.world import identity_params, random_expression, render

TARGET_FPS = 2000.0


def frames_per_second(size: int, frames: int, repeats: int, threads: int) -> float:
    """Best-of-``repeats`` rendering rate of ``frames`` random frames at ``size``."""
    torch.set_num_threads(threads)
    generator = torch.Generator().manual_seed(0)
    identity = identity_params(torch.arange(frames))
    expression = random_expression(frames, generator)
    render(identity[:128], expression[:128], size)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        render(identity, expression, size)
        best = min(best, time.perf_counter() - start)
    return frames / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    for size in (64, 32):
        for threads in args.threads:
            fps = frames_per_second(size, args.frames, args.repeats, threads)
            print(
                f"size={size} threads={threads}: {fps:8.0f} frames/s "
                f"({fps / TARGET_FPS:.2f}x the {TARGET_FPS:.0f} frames/s target)"
            )


if __name__ == "__main__":
    main()
