"""Peak memory and time per frame of full vs sliding-window sampling as the video grows.

Each configuration runs in its own process so the peak resident set size (ru_maxrss) is its own.
Run: python benchmarks/bench_window_memory.py
"""

from __future__ import annotations

import json
import subprocess
import sys

CHILD = """
import json, resource, sys, time, torch
from flashbench import Cond, flow_match_sigmas, sample
from flashbench.models.toy import ToyDenoiser
from flashbench.windowing import Full, Sliding
torch.set_num_threads(2)
frames, kind = int(sys.argv[1]), sys.argv[2]
model = ToyDenoiser(channels=4, dim=96, depth=4).eval()
noise = torch.randn(1, 4, frames, 16, 16, generator=torch.Generator().manual_seed(0))
windowing = Full() if kind == "full" else Sliding(window=8, overlap=4)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
out = sample(model, noise, flow_match_sigmas(4), Cond(), windowing=windowing)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"frames": frames, "windowing": kind, "peak_mib": peak / 1024, "import_mib": base / 1024,
                  "ms_per_frame_step": 1000 * out.seconds / frames / 4}))
"""


def main() -> None:
    print(f"{'frames':>6} {'windowing':>9} {'peak RSS MiB':>13} {'ms/frame/step':>14}")
    for frames in (16, 64, 256):
        for kind in ("full", "sliding"):
            line = subprocess.run(
                [sys.executable, "-c", CHILD, str(frames), kind],
                capture_output=True,
                text=True,
                check=True,
            )
            row = json.loads(line.stdout)
            print(
                f"{frames:>6} {kind:>9} {row['peak_mib']:>13.0f} {row['ms_per_frame_step']:>14.2f}"
            )


if __name__ == "__main__":
    main()
