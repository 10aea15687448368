"""Speed: wall time, NFE (full model passes), peak memory and frames per second.

`measure(device)` times a block and records its peak memory: on CUDA the allocator's
`max_memory_allocated` after a reset; on the CPU the process's peak resident set size,
reset at the start of the block through /proc/self/clear_refs (Linux) and read from VmHWM,
or, where that is unavailable, sampled with psutil every few milliseconds. `Speed`
accumulates measurements as a torchmetrics Metric (sums; peak memory reduces by max).

    with measure(device) as run:
        result = sample(...)
    speed.update(run.wall_seconds, nfe=result.nfe, frames=frames, peak_bytes=run.peak_bytes)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil
import torch
from torch import Tensor
from torchmetrics import Metric

__all__ = ["Measurement", "Speed", "measure"]

CLEAR_REFS = Path("/proc/self/clear_refs")
STATUS = Path("/proc/self/status")


@dataclass
class Measurement:
    """Filled in when the `measure` block exits."""

    device: str
    wall_seconds: float = float("nan")
    peak_bytes: int = 0


def _read_status_bytes(field: str) -> int | None:
    try:
        for line in STATUS.read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _read_peak_rss() -> int | None:
    return _read_status_bytes("VmHWM:")


def _reset_peak_rss() -> bool:
    """Reset the peak RSS (VmHWM) to the current RSS; True only if the kernel really did."""
    try:
        CLEAR_REFS.write_text("5")  # "5" resets VmHWM to the current RSS (Linux >= 4.0)
    except OSError:
        return False
    peak, current = _read_peak_rss(), _read_status_bytes("VmRSS:")
    # Some sandboxes accept the write and keep the old peak: then poll instead.
    return peak is not None and current is not None and peak <= current + 2**20


class _RssSampler:
    """Fallback peak-RSS probe: a daemon thread polling psutil."""

    def __init__(self, interval: float = 0.002) -> None:
        self.process = psutil.Process()
        self.interval = interval
        self.peak = self.process.memory_info().rss
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stopped.wait(self.interval):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __enter__(self) -> _RssSampler:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)


@contextmanager
def measure(device: str | torch.device = "cpu") -> Iterator[Measurement]:
    """Time the block (CUDA synchronised) and record its peak memory in bytes."""
    device = torch.device(device)
    record = Measurement(device=str(device))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        start = time.perf_counter()
        yield record
        torch.cuda.synchronize(device)
        record.wall_seconds = time.perf_counter() - start
        record.peak_bytes = int(torch.cuda.max_memory_allocated(device))
        return
    if _reset_peak_rss():
        start = time.perf_counter()
        yield record
        record.wall_seconds = time.perf_counter() - start
        record.peak_bytes = int(_read_peak_rss() or 0)
        return
    with _RssSampler() as sampler:
        start = time.perf_counter()
        yield record
        record.wall_seconds = time.perf_counter() - start
    record.peak_bytes = int(sampler.peak)


class Speed(Metric):
    """Totals of wall time, NFE and frames over runs, the largest peak memory, and frames per second.

    `compute()` returns {"wall_seconds", "nfe", "frames", "runs", "peak_bytes", "fps"}.
    """

    higher_is_better = None
    is_differentiable = False
    full_state_update = False
    backend_name = "timer"

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        for name in ("wall_seconds", "nfe", "frames", "runs"):
            self.add_state(name, torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("peak_bytes", torch.zeros((), dtype=torch.float64), dist_reduce_fx="max")

    def backend_info(self) -> dict:
        return {"backend": self.backend_name, "weights": {}}

    def update(self, wall_seconds: float, nfe: int, frames: int, peak_bytes: int = 0) -> None:
        if wall_seconds < 0 or nfe < 0 or frames < 0:
            raise ValueError(
                f"wall_seconds={wall_seconds}, nfe={nfe}, frames={frames} must be >= 0"
            )
        self.wall_seconds = self.wall_seconds + float(wall_seconds)
        self.nfe = self.nfe + int(nfe)
        self.frames = self.frames + int(frames)
        self.runs = self.runs + 1
        self.peak_bytes = torch.maximum(
            self.peak_bytes,
            torch.tensor(float(peak_bytes), dtype=torch.float64, device=self.device),
        )

    def compute(self) -> dict[str, Tensor]:
        return {
            "wall_seconds": self.wall_seconds,
            "nfe": self.nfe,
            "frames": self.frames,
            "runs": self.runs,
            "peak_bytes": self.peak_bytes,
            "fps": self.frames / self.wall_seconds,
        }
