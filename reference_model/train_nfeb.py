"""Train the NFEB ablation's five checkpoints: ``python -m reference_model.train_nfeb [OUT] [PARALLEL] [--accelerator gpu]``.

FlashPortrait (arXiv 2512.16900) fine-tunes each NFEB variant from one pretrained
backbone. Here every variant starts from the shipped DiT with its expression branch (portrait
encoder, NFEB expression projections) re-initialised from one seed (``train_model
--reset-expression-branch``), trains on one pool with the same crops, steps and seed, and
differs only in ``--nfeb``. Checkpoints land in ``OUT/VARIANT/dit_small.pt`` (default
``runs/nfeb``, where ``suites/nfeb_ablation.toml`` reads them); ``PARALLEL`` variants train at
once, one thread each (default 2, for 2 cores). About 55 CPU-minutes per variant. Resumable:
rerun the same command; a finished variant returns at once. ``--accelerator gpu`` trains (and
resumes a CPU run) on CUDA with the same options: TF32 matmuls, so not the CPU run's bits.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from reference_model.dit import NFEB_VARIANTS

STEPS = 6000
OPTIONS = {
    "--config": "small",
    "--clips": 1000,
    "--pool-frames": 48,
    "--clip-frames": 24,
    "--batch-size": 8,
    "--lr": 3e-4,
    "--decay-steps": STEPS,
    "--max-steps": STEPS,
    "--expression-drop": 0.3,
    "--init": "reference_model/weights/dit_small.pt",
    # A wall-clock cap far above the budget (a variant trains 55 CPU-minutes alone, hours beside other
    # jobs on shared cores): the step count, not the machine's speed, ends every run.
    "--minutes": 600,
    "--checkpoint-minutes": 5,
    "--threads": 1,
    "--seed": 11,
}
# The pool every variant trains on, rendered once and hard-linked into each run directory.
POOL_FILES = ("rendered.pt", "pool_motion.json")


def command(out: Path, variant: str | None, accelerator: str = "cpu") -> list[str]:
    """``train_model``'s command for ``variant`` (None: render the shared pool only)."""
    options = {**OPTIONS, "--accelerator": accelerator, "--out": out / (variant or "pool")}
    flags = [str(item) for pair in options.items() for item in pair]
    tail = (
        ["--render-only"] if variant is None else ["--nfeb", variant, "--reset-expression-branch"]
    )
    return [sys.executable, "-m", "reference_model.train_model", *flags, *tail]


def share_pool(out: Path) -> None:
    """Hard-link the rendered pool into every variant's run directory (kept where it is already)."""
    for variant in NFEB_VARIANTS:
        (out / variant).mkdir(parents=True, exist_ok=True)
        for name in POOL_FILES:
            if not (out / variant / name).exists():
                os.link(out / "pool" / name, out / variant / name)


def run(commands: list[list[str]], logs: list[Path]) -> None:
    """Run ``commands`` at once, each appending to its log; stop naming the logs of any that fail."""
    processes = []
    for cmd, log in zip(commands, logs, strict=True):
        with log.open("a") as file:
            processes.append(subprocess.Popen(cmd, stdout=file, stderr=subprocess.STDOUT))
    failed = [str(log) for process, log in zip(processes, logs, strict=True) if process.wait()]
    if failed:
        raise SystemExit(f"training failed; see {', '.join(failed)}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m reference_model.train_nfeb", description=__doc__.splitlines()[0]
    )
    parser.add_argument("out", nargs="?", type=Path, default=Path("runs/nfeb"), help="run folder")
    parser.add_argument("parallel", nargs="?", type=int, default=2, help="variants at once")
    parser.add_argument("--accelerator", choices=["cpu", "gpu"], default="cpu")
    args = parser.parse_args(argv)
    out, parallel, accelerator = args.out, args.parallel, args.accelerator
    if parallel < 1:
        raise SystemExit(f"PARALLEL={parallel} must be at least 1 (variants trained at once)")
    out.mkdir(parents=True, exist_ok=True)
    if not all((out / "pool" / name).exists() for name in POOL_FILES):
        run([command(out, None, accelerator)], [out / "pool.log"])
    share_pool(out)
    for start in range(0, len(NFEB_VARIANTS), parallel):
        batch = NFEB_VARIANTS[start : start + parallel]
        run([command(out, v, accelerator) for v in batch], [out / f"{v}.log" for v in batch])


if __name__ == "__main__":
    main()
