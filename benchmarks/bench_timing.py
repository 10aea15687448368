"""Do the runner's speedups hold on a busy machine? Each setting's wall speedup, measured twice in one process while another process keeps one core busy.

Run: ``python benchmarks/bench_timing.py [--busy 1] [--repeats 3] [--threads 1] [--tolerance 0.10]``.
A toy suite (``SUITE``) is run twice into temporary run directories by ``run_suite``, the way
``flashbench run`` does; the speedup of each setting is the report's (baseline wall seconds /
setting wall seconds, summed over units, from the rows). ``--busy N`` starts N processes that
spin (default 1: one core of a 2-core machine). The script prints both speedups, their ratio
and the timings' spread (IQR / median), and exits 1 when a ratio is off by more than
``--tolerance``. A benchmark, not a test: the figures depend on the machine and its other load.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import tempfile
from collections import defaultdict
from pathlib import Path

from flashbench.run.runner import run_suite
from flashbench.suite.document import parse_suite

# Settings whose speedups span 1x (windows of the same work) to 5x (fewer passes).
SUITE = """
[suite]
name = "timing"
version = "1"
model = "toy"
model_args = {{ dim = 64, depth = 4 }}
steps = 20

[cases]
identities = 2
driving_seeds = [0, 1]
lengths = [16]
resolution = 32

[metrics]
names = ["speed"]
timing_repeats = {repeats}

[[settings]]
use = "baseline"

[[settings]]
use = "sliding"

[[settings]]
use = "alp_k5"

[[settings]]
use = "fora_n3"

[[settings]]
use = "fewer_steps_6"
"""


def spin() -> None:
    while True:
        pass


def speedups(run: Path) -> tuple[dict[str, float], dict[str, float]]:
    """Per setting: baseline / setting wall seconds summed over units, and summed IQR / summed median."""
    wall: dict[str, float] = defaultdict(float)
    iqr: dict[str, float] = defaultdict(float)
    for path in sorted((run / "rows").glob("*.json")):
        for row in json.loads(path.read_text())["rows"]:
            if row["metric"] == "wall_seconds":
                wall[row["setting"]] += row["value"]
            elif row["metric"] == "wall_seconds_iqr":
                iqr[row["setting"]] += row["value"]
    return {s: wall["baseline"] / w for s, w in wall.items()}, {s: iqr[s] / wall[s] for s in wall}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--busy", type=int, default=1, help="spinning processes (default 1)")
    parser.add_argument("--repeats", type=int, default=3, help="metrics.timing_repeats")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--tolerance", type=float, default=0.10)
    args = parser.parse_args()
    suite = parse_suite(SUITE.format(repeats=args.repeats), "timing.toml")
    spinners = [multiprocessing.Process(target=spin, daemon=True) for _ in range(args.busy)]
    for process in spinners:
        process.start()
    try:
        with tempfile.TemporaryDirectory() as folder:
            measured = []
            for attempt in ("first", "second"):
                out = Path(folder) / attempt
                run_suite(suite, out, threads=args.threads, progress=False)
                measured.append(speedups(out))
    finally:
        for process in spinners:
            process.kill()
    (first, spread_a), (second, spread_b) = measured
    print(
        f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores, {args.busy} spinning, "
        f"{args.threads} thread(s), {args.repeats} timed repeats per unit"
    )
    print(
        f"{'setting':<16} {'speedup 1':>9} {'speedup 2':>9} {'ratio':>7} {'spread 1':>9} {'spread 2':>9}"
    )
    worst = 0.0
    for setting in first:
        ratio = second[setting] / first[setting]
        worst = max(worst, abs(ratio - 1))
        print(
            f"{setting:<16} {first[setting]:>9.3f} {second[setting]:>9.3f} {ratio:>7.3f} "
            f"{spread_a.get(setting, 0):>9.1%} {spread_b.get(setting, 0):>9.1%}"
        )
    verdict = "agree" if worst <= args.tolerance else "DISAGREE"
    print(
        f"speedups {verdict}: largest relative difference {worst:.1%} (tolerance {args.tolerance:.0%})"
    )
    return 0 if worst <= args.tolerance else 1


if __name__ == "__main__":
    raise SystemExit(main())
