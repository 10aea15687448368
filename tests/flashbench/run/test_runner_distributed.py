"""Scale-out: `flashbench run --devices 2` under Lightning's ddp launcher (CPU, gloo), as on GPUs.

The launcher re-runs the command line per rank, so these tests run the real command in new
processes; its ranks share the run directory's lock that the launching process holds.
"""

import json
import os
import signal
import subprocess
import textwrap
import time

import psutil
import pytest
import torch

from flashbench.cli.main import main
from flashbench.run.directory import LOCK_NAME, RunLock, check_locked_by
from flashbench.run.distributed import SuiteShards
from flashbench.run.rows import read_rows
from flashbench.run.runner import run_suite
from flashbench.suite.document import parse_suite

# The run directory and its sharding are under test, not the metrics.
QUICK = {
    'names = ["psnr", "ssim", "id_sim", "aed", "seam", "speed"]': 'names = ["mae", "speed"]',
    'per_frame = ["id_sim"]': "per_frame = []",
}


@pytest.fixture
def quick_path(tiny_text, write_suite):
    for old, new in QUICK.items():
        assert old in tiny_text
        tiny_text = tiny_text.replace(old, new)
    return write_suite(tiny_text)


def waits_after_a_unit(tmp_path, ranks: tuple[str, ...]):
    """A `flashbench` entry point whose ranks RANKS wait to be interrupted or killed once they have
    finished a unit, so that the signal lands mid-run however fast the machine is."""
    script = tmp_path / "wait_after_a_unit.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import os, time
            from flashbench.cli.main import main
            from flashbench.run.runner import CaseRunner

            finish = CaseRunner.finish_unit

            def finish_then_wait(self, sampled, timing):
                finish(self, sampled, timing)
                # Rank 0 is the launching process, which has no LOCAL_RANK until it launches.
                if os.environ.get("LOCAL_RANK", "0") in {ranks!r}:
                    time.sleep(3600)

            CaseRunner.finish_unit = finish_then_wait
            raise SystemExit(main())
            """
        )
    )
    return script


@pytest.fixture
def one_process_rows(quick_path, tmp_path, stable_rows):
    suite = parse_suite(quick_path.read_text(), str(quick_path))
    summary = run_suite(suite, tmp_path / "one", threads=1, progress=False)
    assert (summary.done, summary.failed) == (6, 0)
    return stable_rows(read_rows(tmp_path / "one"))


@pytest.mark.slow
def test_two_process_run_gives_the_rows_of_a_one_process_run(
    quick_path, tmp_path, stable_rows, one_process_rows, cli
):
    out = tmp_path / "two"
    done = cli("run", quick_path, "--out", out, "--devices", 2, "--no-progress")
    assert done.returncode == 0, done.stderr[-3000:]
    # Only the launching process reports.
    assert done.stdout.count("6 units done, 0 already finished, 0 failed") == 1, done.stdout
    assert stable_rows(read_rows(out)) == one_process_rows != []
    # Both processes did work: the two cases' videos were written by different ranks.
    assert len({p.parent.name for p in (out / "videos").glob("*/reference.png")}) == 2
    assert json.loads((out / "manifest.json").read_text())["devices"] == 2
    assert not list(out.rglob(".tmp-*"))


@pytest.mark.slow
def test_ctrl_c_in_a_multi_process_run_exits_130_once_and_resume_finishes(
    quick_path, tmp_path, stable_rows, one_process_rows, cli
):
    out = tmp_path / "two"
    argv = ["run", quick_path, "--out", out, "--devices", 2, "--no-progress"]
    # A session of its own, so Ctrl-C can reach every process of the run, as a terminal's does.
    # Every rank waits after its first unit: on a loaded machine the run would otherwise finish
    # before the signal arrives.
    launcher = cli(
        *argv,
        script=waits_after_a_unit(tmp_path, ("0", "1")),
        wait=False,
        start_new_session=True,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 600
        while not list((out / "rows").glob("*.json")):
            assert launcher.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        os.killpg(launcher.pid, signal.SIGINT)
        _, err = launcher.communicate(timeout=300)
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
    assert launcher.returncode == 130, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    assert err.count("interrupted; rerun with --resume to finish") == 1, err[-3000:]
    resumed = cli(*argv, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert stable_rows(read_rows(out)) == one_process_rows


@pytest.mark.slow
def test_a_killed_rank_leaves_a_run_that_resume_finishes_with_the_same_rows(
    quick_path, tmp_path, stable_rows, one_process_rows, cli
):
    # Rank 1 finishes one unit of its case, then waits to be killed: the kill lands mid-run.
    script = waits_after_a_unit(tmp_path, ("1",))
    out = tmp_path / "two"
    argv = ["run", quick_path, "--out", out, "--devices", 2, "--no-progress"]
    launcher = cli(*argv, script=script, wait=False)
    try:
        # Rank 0's case (3 units) and one unit of rank 1's.
        deadline = time.monotonic() + 600
        while len(list((out / "rows").glob("*.json"))) < 4:
            assert launcher.poll() is None and time.monotonic() < deadline
            time.sleep(0.5)
        (rank_1,) = [p for p in psutil.Process(launcher.pid).children() if "python" in p.name()]
        os.kill(rank_1.pid, signal.SIGKILL)
        # Lightning's process observer ends the launcher when a rank dies.
        assert launcher.wait(timeout=120) != 0
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
    assert len(list((out / "rows").glob("*.json"))) == 4
    resumed = cli(*argv, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "2 units done, 4 already finished, 0 failed" in resumed.stdout
    assert stable_rows(read_rows(out)) == one_process_rows


def test_a_multi_process_run_started_from_python_is_refused_before_any_file(
    quick_path, tmp_path, capsys
):
    # Here the launcher would re-run pytest once per rank.
    out = tmp_path / "run"
    assert main(["run", str(quick_path), "--out", str(out), "--devices", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert "re-runs this process's command line once per rank" in err and "\n" not in err
    assert not out.exists()


def test_a_rank_proceeds_only_while_its_parent_holds_the_run_directory(tmp_path):
    parent = os.getppid()
    with pytest.raises(ValueError, match="does not hold the run directory"):
        check_locked_by(tmp_path, parent, "LOCAL_RANK=1")  # no lock file
    (tmp_path / LOCK_NAME).write_text(f"{parent}\n")
    with pytest.raises(ValueError, match="unset LOCAL_RANK"):
        check_locked_by(tmp_path, parent, "LOCAL_RANK=1")  # the pid, but nobody holds the lock
    with RunLock(tmp_path):
        check_locked_by(tmp_path, os.getpid(), "LOCAL_RANK=1")
        with pytest.raises(ValueError, match=f"parent process {parent} does not hold"):
            check_locked_by(tmp_path, parent, "LOCAL_RANK=1")


def test_a_rank_whose_launcher_has_exited_stops_before_its_next_case():
    orphan = SuiteShards("suite.toml", "out", None, 1, launcher=0)
    with pytest.raises(RuntimeError, match="launching process 0 of this rank has exited"):
        orphan.predict_step(torch.tensor(0), 0)
