"""Train DiT variants side by side on one GPU from one world pool rendered by many processes (stage 5).

``python -m reference_model.train_variants CLIPS WORKERS DEADLINE_S [PHASE1_STEPS]``

The pool (``CLIPS`` clips of 48 frames, worker ``i`` rendering with seed ``1000 + i``) is
rendered once and hard-linked into each variant's run directory; every variant then runs
``reference_model.train_model`` from the shipped weights: ``PHASE1_STEPS`` steps, the same again
to measure the rate, then to the step the rate reaches by ``DEADLINE_S`` with a cosine decay
ending there. Exports and CSV logs land in ``$OUT``. This is how stage 5 of
``MODEL_CARD_DIT.md`` was trained (``3000 16 520 300`` on an H200, then a resume of each run
directory for 2,600 more steps with the decay restarted to end there). ``VARIANTS=references``
trains the next set instead: stage 5's recipe with shares 0, 0.5 and 0.8 of references showing
other expressions (``train_model --reference-expression``).
"""

import os
import re
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

ROOT = Path("/tmp/train")
POOL_FRAMES = 48
VARIANT_SETS = {  # set: {variant: its train_model options beyond the shared ones}
    "stage5": {
        "a_f16_d10": {"--clip-frames": 16, "--expression-drop": 0.10},
        "b_f16_d30": {"--clip-frames": 16, "--expression-drop": 0.30},
        "c_f24_d30": {"--clip-frames": 24, "--expression-drop": 0.30},
    },
    # Stage 5's recipe against references showing other expressions (MODEL_CARD_DIT, session 8),
    # with a control that trains as long on the same pool without them.
    "references": {
        f"re{round(share * 100):02d}": {
            "--clip-frames": 24,
            "--expression-drop": 0.30,
            "--reference-expression": share,
        }
        for share in (0.0, 0.5, 0.8)
    },
}
_SET = os.environ.get("VARIANTS", "stage5")
if _SET not in VARIANT_SETS:
    raise SystemExit(f"VARIANTS={_SET!r} is not a variant set; use one of {sorted(VARIANT_SETS)}")
VARIANTS = VARIANT_SETS[_SET]


@dataclass(frozen=True)
class Plan:
    """One driver run: pool size, rendering processes, wall-clock deadline, rate-probe steps."""

    clips: int
    workers: int
    deadline_s: float
    probe_steps: int
    start: float
    accelerator: str = "gpu"

    def left(self) -> float:
        return self.deadline_s - (time.time() - self.start)

    def log(self, msg: str) -> None:
        print(f"[{time.time() - self.start:7.1f}s] {msg}", flush=True)


def render(part: tuple[int, int]) -> str:
    """Render worker ``index``'s share of the pool (seed 1000 + index) into a part file."""
    index, n = part
    torch.set_num_threads(1)
    from reference_model.lightning import render_world_clips

    path = ROOT / f"part{index}.pt"
    torch.save(render_world_clips(n, POOL_FRAMES, seed=1000 + index), path)
    return str(path)


def render_pool(plan: Plan) -> None:
    """Render the pool in ``plan.workers`` processes and hard-link it into every variant's directory."""
    per = -(-plan.clips // plan.workers)
    parts = [
        (i, min(per, plan.clips - i * per)) for i in range(plan.workers) if plan.clips > i * per
    ]
    with ProcessPoolExecutor(len(parts)) as pool:
        files = list(pool.map(render, parts))
    chunks = [torch.load(f, weights_only=True) for f in files]
    rendered = {k: torch.cat([c[k] for c in chunks]) for k in chunks[0]}
    torch.save(rendered, ROOT / "rendered.pt")
    for f in files:
        os.remove(f)
    for name in VARIANTS:
        (ROOT / name).mkdir(exist_ok=True)
        os.link(ROOT / "rendered.pt", ROOT / name / "rendered.pt")
    plan.log(f"rendered and saved the pool {tuple(rendered['videos'].shape)}")


def train(plan: Plan, name: str, max_steps: int, decay: int) -> subprocess.Popen:
    options = {
        "--config": "small",
        "--out": ROOT / name,
        "--clips": plan.clips,
        "--pool-frames": POOL_FRAMES,
        **VARIANTS[name],
        "--batch-size": 32,
        "--lr": 3e-4,
        "--decay-steps": decay,
        "--init": "reference_model/weights/dit_small.pt",
        "--max-steps": max_steps,
        "--minutes": 60,
        "--threads": 2,
        "--accelerator": plan.accelerator,
        "--checkpoint-minutes": 1,
    }
    command = [sys.executable, "-m", "reference_model.train_model"]
    command += [str(item) for pair in options.items() for item in pair]
    with open(ROOT / f"{name}.log", "a") as log_file:
        return subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT)


def run_all(plan: Plan, max_steps: int, decay: int) -> float:
    """Train every variant to ``max_steps`` side by side; at the deadline, stop them (their last export stands)."""
    tic = time.time()
    processes = [train(plan, name, max_steps, decay) for name in VARIANTS]
    codes = []
    for process in processes:
        try:
            codes.append(process.wait(timeout=max(1.0, plan.left() - 30)))
        except subprocess.TimeoutExpired:
            plan.log("deadline: stopping a run; its last 100-step export stands")
            process.kill()
            codes.append(0)
    if any(codes):
        for name in VARIANTS:
            print((ROOT / f"{name}.log").read_text()[-3000:])
        raise SystemExit(f"training failed: {codes}")
    return time.time() - tic


def steps_per_second(name: str, fallback: float) -> float:
    """The last rate the run's progress bar printed."""
    text = (ROOT / f"{name}.log").read_text()
    fast, slow = re.findall(r"([\d.]+)it/s", text), re.findall(r"([\d.]+)s/it", text)
    if fast:
        return float(fast[-1])
    return 1 / float(slow[-1]) if slow else fallback


def copy_out(plan: Plan, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name in VARIANTS:
        (out / f"{name}.pt").write_bytes((ROOT / name / "dit_small.pt").read_bytes())
        logs = sorted((ROOT / name / "logs").glob("version_*/metrics.csv"))
        (out / f"{name}.csv").write_text("".join(p.read_text() for p in logs))
    plan.log(f"copied to {out}")


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    plan = Plan(
        clips=int(args[0]),
        workers=int(args[1]),
        deadline_s=float(args[2]),
        probe_steps=int(args[3]) if len(args) > 3 else 200,
        start=time.time(),
        accelerator=os.environ.get("ACCEL", "gpu"),
    )
    out = Path(os.environ.get("OUT", "/tmp/out"))
    ROOT.mkdir(parents=True, exist_ok=True)
    render_pool(plan)
    run_all(plan, plan.probe_steps, 0)
    # The second leg's rate, measured once every run is loaded, plans the last leg.
    seconds = run_all(plan, 2 * plan.probe_steps, 0)
    rate = min(steps_per_second(name, plan.probe_steps / seconds) for name in VARIANTS)
    total = 2 * plan.probe_steps + int(rate * (plan.left() - 45) * 0.95)
    plan.log(f"{rate:.1f} steps/s per variant; training to step {total}")
    copy_out(plan, out)
    run_all(plan, total, total - 200)
    copy_out(plan, out)


if __name__ == "__main__":
    main()
