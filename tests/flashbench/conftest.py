import os
import subprocess
import sys
from pathlib import Path

import pytest

from flashbench.run.rows import TIMING_METRICS

TINY = Path(__file__).with_name("tiny.toml")
REPOSITORY = Path(__file__).parents[2]


@pytest.fixture
def tiny_text() -> str:
    return TINY.read_text()


@pytest.fixture
def write_suite(tmp_path):
    """Write suite text to a file named after the suite and return its path."""

    def write(text: str, name: str = "tiny") -> Path:
        path = tmp_path / f"{name}.toml"
        path.write_text(text)
        return path

    return write


@pytest.fixture
def stable_rows():
    """The rows but timing, in ``read_rows``' order: what two runs of one suite must agree on."""

    def stable(rows: list[dict]) -> list[dict]:
        return [r for r in rows if r["metric"] not in TIMING_METRICS]

    return stable


@pytest.fixture
def cli():
    """Run ``python [SCRIPT] -m flashbench.cli.main ARGS`` in a new process, as a shell runs ``flashbench``.

    ``run --devices N`` needs it: Lightning's ddp launcher re-runs the process's command line per
    rank. ``script`` runs that file instead of the module (it must call ``main()``); with
    ``wait=False`` it returns the ``Popen``, made with the extra ``popen`` options.
    """

    def run(*args, script: Path | None = None, timeout: float = 900, wait: bool = True, **popen):
        command = [sys.executable, *([str(script)] if script else ["-m", "flashbench.cli.main"])]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPOSITORY)}
        env.pop("LOCAL_RANK", None)
        argv = [*command, *map(str, args)]
        if not wait:
            return subprocess.Popen(argv, cwd=REPOSITORY, env=env, text=True, **popen)
        return subprocess.run(
            argv, cwd=REPOSITORY, env=env, capture_output=True, text=True, timeout=timeout
        )

    return run
