"""Train DiT variants side by side on one GPU from one world pool rendered by many processes (stage 5).

``PYTHONPATH=. python reference_model/train_variants.py CLIPS WORKERS DEADLINE_S [PHASE1_STEPS]``

The pool (``CLIPS`` clips of 48 frames, worker ``i`` rendering with seed ``1000 + i``) is
rendered once and hard-linked into each variant's run directory; every variant then runs
``reference_model.train_model`` from the shipped weights: ``PHASE1_STEPS`` steps, the same again
to measure the rate, then to the step the rate reaches by ``DEADLINE_S`` with a cosine decay
ending there. Exports and CSV logs land in ``$OUT``. This is how stage 5 of
``MODEL_CARD_DIT.md`` was trained (``3000 16 520 300`` on an H200, then a resume of each run
directory for 2,600 more steps with the decay restarted to end there).
"""

import os
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

CLIPS, WORKERS, DEADLINE_S = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
PHASE1 = int(sys.argv[4]) if len(sys.argv) > 4 else 200
START = time.time()
OUT = Path(os.environ.get("OUT", "/tmp/out"))
ROOT = Path("/tmp/train")
VARIANTS = {  # name: (clip frames, expression drop)
    "a_f16_d10": (16, 0.10),
    "b_f16_d30": (16, 0.30),
    "c_f24_d30": (24, 0.30),
}
ACCEL = os.environ.get("ACCEL", "gpu")


def render(part: tuple[int, int]) -> str:
    index, n = part
    torch.set_num_threads(1)
    from reference_model.lightning import render_world_clips

    path = ROOT / f"part{index}.pt"
    torch.save(render_world_clips(n, 48, seed=1000 + index), path)
    return str(path)


def log(msg: str) -> None:
    print(f"[{time.time() - START:7.1f}s] {msg}", flush=True)


def train(name: str, max_steps: int, decay: int) -> subprocess.Popen:
    frames, drop = VARIANTS[name]
    cmd = [
        sys.executable,
        "-m",
        "reference_model.train_model",
        "--config",
        "small",
        "--out",
        str(ROOT / name),
        "--clips",
        str(CLIPS),
        "--pool-frames",
        "48",
        "--clip-frames",
        str(frames),
        "--batch-size",
        "32",
        "--lr",
        "3e-4",
        "--decay-steps",
        str(decay),
        "--expression-drop",
        str(drop),
        "--init",
        "reference_model/weights/dit_small.pt",
        "--max-steps",
        str(max_steps),
        "--minutes",
        "60",
        "--threads",
        "2",
        "--accelerator",
        ACCEL,
        "--checkpoint-minutes",
        "1",
    ]
    return subprocess.Popen(cmd, stdout=open(ROOT / f"{name}.log", "a"), stderr=subprocess.STDOUT)


def run_all(max_steps: int, decay: int) -> float:
    tic = time.time()
    procs = [train(name, max_steps, decay) for name in VARIANTS]
    codes = []
    for p in procs:
        try:
            codes.append(p.wait(timeout=max(1.0, DEADLINE_S - 30 - (time.time() - START))))
        except subprocess.TimeoutExpired:
            log("deadline: stopping a run; its last 100-step export stands")
            p.kill()
            codes.append(0)
    if any(codes):
        for name in VARIANTS:
            print((ROOT / f"{name}.log").read_text()[-3000:])
        raise SystemExit(f"training failed: {codes}")
    return time.time() - tic


ROOT.mkdir(parents=True, exist_ok=True)
per = -(-CLIPS // WORKERS)
parts = [(i, min(per, CLIPS - i * per)) for i in range(WORKERS) if CLIPS - i * per > 0]
with ProcessPoolExecutor(len(parts)) as pool:
    files = list(pool.map(render, parts))
chunks = [torch.load(f, weights_only=True) for f in files]
rendered = {k: torch.cat([c[k] for c in chunks]) for k in chunks[0]}
log(f"rendered {rendered['videos'].shape}")
torch.save(rendered, ROOT / "rendered.pt")
for f in files:
    os.remove(f)
for name in VARIANTS:
    (ROOT / name).mkdir(exist_ok=True)
    os.link(ROOT / "rendered.pt", ROOT / name / "rendered.pt")
log("saved pool")
run_all(PHASE1, 0)
log(f"phase 1 ({PHASE1} steps) done")
t = run_all(2 * PHASE1, 0)


def tqdm_rate(name: str) -> float:
    import re

    text = (ROOT / f"{name}.log").read_text()
    fast = re.findall(r"([\d.]+)it/s", text)
    slow = re.findall(r"([\d.]+)s/it", text)
    if fast:
        return float(fast[-1])
    return 1 / float(slow[-1]) if slow else PHASE1 / t


def copy_out() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name in VARIANTS:
        (OUT / f"{name}.pt").write_bytes((ROOT / name / "dit_small.pt").read_bytes())
        logs = sorted((ROOT / name / "logs").glob("version_*/metrics.csv"))
        (OUT / f"{name}.csv").write_text("".join(p.read_text() for p in logs))
    log("copied")


rate = min(tqdm_rate(name) for name in VARIANTS)
left = DEADLINE_S - (time.time() - START) - 45
total = 2 * PHASE1 + int(rate * left * 0.95)
log(f"phase 1b: {rate:.1f} steps/s per variant; training to step {total}")
copy_out()
run_all(total, total - 200)
log("phase 2 done")
copy_out()
