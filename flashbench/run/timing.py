"""Wall time of sampling passes, timed in interleaved rounds so that speedups hold on a busy machine."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Timing:
    """Wall seconds of repeated calls: their median and spread."""

    median: float
    iqr: float
    min: float
    max: float
    repeats: int

    @classmethod
    def of(cls, seconds: list[float]) -> Timing:
        low, q1, median, q3, high = np.percentile(seconds, [0, 25, 50, 75, 100])
        return cls(float(median), float(q3 - q1), float(low), float(high), len(seconds))


def _clock(device: torch.device) -> float:
    # As torch.utils.benchmark's timer: queued GPU work finishes before the clock is read.
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def time_interleaved(
    runs: list[Callable[[], object]], repeats: int, device: torch.device | str = "cpu"
) -> list[Timing]:
    """Time ``repeats`` calls of each of ``runs`` (each already called once: the warm-up), in rounds.

    Every round calls each run once, in alternating order, so a change in the machine's load
    during the rounds affects every run alike and ratios between runs (speedups) hold. Garbage
    collection is off during each call (as in ``timeit``), so a collection that one setting's
    garbage triggers is not charged to another.
    """
    device = torch.device(device)
    times: list[list[float]] = [[] for _ in runs]
    for round_ in range(repeats):
        order = list(enumerate(runs))
        for index, run in order if round_ % 2 == 0 else reversed(order):
            gc.disable()
            try:
                start = _clock(device)
                run()
                times[index].append(_clock(device) - start)
            finally:
                gc.enable()
    return [Timing.of(seconds) for seconds in times]
