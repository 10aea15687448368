"""Speed: wall time and peak memory of a block, and the Speed metric's sums and max."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from metrics.speed import Speed

PEAK_PROBE = """
import json, time
import numpy as np
from metrics.speed import measure
with measure("cpu") as baseline:
    pass
with measure("cpu") as run:
    block = np.ones(64 * 2**20 // 8)  # 64 MiB, touched
    time.sleep(0.05)
    del block
print(json.dumps([baseline.peak_bytes, run.peak_bytes, run.wall_seconds]))
"""


def test_measure_records_wall_time_and_the_peak_of_a_temporary_allocation() -> None:
    # A fresh process: in a long-lived test worker, freed heap pages already count in the RSS.
    out = subprocess.run(
        [sys.executable, "-c", PEAK_PROBE], capture_output=True, text=True, check=True
    )
    baseline_peak, run_peak, wall_seconds = json.loads(out.stdout)
    assert wall_seconds >= 0.05
    assert run_peak - baseline_peak >= 60 * 2**20


def test_speed_sums_runs_takes_the_largest_peak_and_derives_fps() -> None:
    speed = Speed()
    speed.update(wall_seconds=2.0, nfe=30, frames=16, peak_bytes=100)
    speed.update(wall_seconds=6.0, nfe=10, frames=48, peak_bytes=50)
    result = speed.compute()
    assert result["wall_seconds"].item() == 8.0 and result["nfe"].item() == 40
    assert result["peak_bytes"].item() == 100 and result["runs"].item() == 2
    assert result["fps"].item() == pytest.approx(64 / 8)


def test_negative_inputs_are_rejected() -> None:
    with pytest.raises(ValueError, match="must be >= 0"):
        Speed().update(wall_seconds=-1.0, nfe=1, frames=1)
