"""The run directory never loses a user's or a run's file: foreign directories, temp files, locks, I/O errors."""

import errno
import json
import os
import subprocess
import sys

import pytest
import torch

from flashbench.cli.main import main
from flashbench.run import directory
from flashbench.run.directory import LOCK_NAME
from flashbench.run.rows import read_rows
from flashbench.run.runner import run_suite
from flashbench.suite.document import parse_suite

# A quick variant of tiny.toml: the run directory is under test, not the metrics.
QUICK = {'names = ["psnr", "ssim", "id_sim", "aed", "seam", "speed"]': 'names = ["mae", "speed"]'}
QUICK_PER_FRAME = {'per_frame = ["id_sim"]': "per_frame = []"}


@pytest.fixture
def quick_text(tiny_text):
    for old, new in {**QUICK, **QUICK_PER_FRAME}.items():
        assert old in tiny_text
        tiny_text = tiny_text.replace(old, new)
    return tiny_text


@pytest.fixture
def suite_path(quick_text, write_suite):
    return write_suite(quick_text)


def files(root):
    """Every file under ``root`` with its bytes."""
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("flashbench run: error: ") and "\n" not in err, err
    return err


# ---- a directory that is not a run directory ------------------------------------------------


@pytest.mark.parametrize("resume", [False, True])
def test_out_holding_a_users_files_is_refused_and_left_untouched(
    suite_path, tmp_path, capsys, resume
):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "suite.toml").write_text("# my notes, not a resolved suite\n" + suite_path.read_text())
    before = files(mine)
    argv = ["run", str(suite_path), "--out", str(mine), "--no-progress"]
    assert main([*argv, "--resume"] if resume else argv) == 2
    err = one_line_error(capsys)
    assert "is not a run directory (no manifest.json) and holds suite.toml" in err
    assert files(mine) == before and sorted(p.name for p in mine.iterdir()) == ["suite.toml"]


def test_a_users_hidden_file_that_only_looks_like_a_temp_file_is_not_taken_for_one(
    suite_path, tmp_path, capsys
):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / ".tmp-notes").write_text("mine")
    assert main(["run", str(suite_path), "--out", str(mine), "--no-progress"]) == 2
    assert "holds .tmp-notes" in one_line_error(capsys)
    assert (mine / ".tmp-notes").read_text() == "mine"


def test_an_empty_directory_becomes_a_run_directory(suite_path, tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    summary = run_suite(parse_suite(suite_path.read_text(), str(suite_path)), out, progress=False)
    assert summary.ok and summary.done == 6


# ---- temp files: resume deletes them and nothing else ----------------------------------------


def test_setting_names_that_could_be_temp_or_path_names_are_refused(quick_text):
    for name in (".tmpx", ".tmp-1-x", "../x", "a/b", "_x", "x" * 65, "é"):
        text = quick_text + f'\n[[settings]]\nname = "{name}"\nuse = "baseline"\n'
        with pytest.raises(ValueError, match="must start with a letter or digit"):
            parse_suite(text, "t.toml")


def test_resume_deletes_a_killed_runs_temp_files_and_no_finished_file(suite_path, tmp_path):
    suite = parse_suite(suite_path.read_text(), str(suite_path))
    out = tmp_path / "run"
    assert run_suite(suite, out, limit=1, progress=False).done == 3
    finished = files(out)
    case_dir = next((out / "videos").iterdir())
    stale = [case_dir / ".tmp-99999-baseline__seed0.mp4", out / "rows" / ".tmp-99999-x.json"]
    for path in stale:
        path.write_bytes(b"half")
    resumed = run_suite(suite, out, resume=True, progress=False)
    assert (resumed.skipped, resumed.done) == (3, 3)
    assert not any(p.exists() for p in stale)
    after = files(out)
    kept = {k: v for k, v in after.items() if k in finished}
    timing_free = {"manifest.json", "plan.json", LOCK_NAME}
    assert set(kept) == set(finished)
    assert all(after[k] == v for k, v in finished.items() if k.parts[0] not in timing_free)


def test_a_kill_between_manifest_and_suite_toml_is_finished_by_resume(
    suite_path, tmp_path, monkeypatch
):
    suite = parse_suite(suite_path.read_text(), str(suite_path))
    out = tmp_path / "run"
    write = directory.atomic_write

    def killed_at_suite_toml(path, data):
        if path.name == "suite.toml":
            (path.parent / f".tmp-{os.getpid()}-suite.toml").write_bytes(data[:10])
            raise KeyboardInterrupt
        write(path, data)

    monkeypatch.setattr(directory, "atomic_write", killed_at_suite_toml)
    with pytest.raises(KeyboardInterrupt):
        run_suite(suite, out, progress=False)
    monkeypatch.setattr(directory, "atomic_write", write)
    assert (out / "manifest.json").is_file() and not (out / "suite.toml").exists()
    assert run_suite(suite, out, resume=True, progress=False).done == 6
    assert parse_suite((out / "suite.toml").read_text(), "suite.toml").settings == suite.settings
    assert not list(out.rglob(".tmp-*"))


def test_a_kill_while_writing_the_manifest_leaves_a_directory_a_new_run_takes(suite_path, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / ".tmp-99999-manifest.json").write_text('{"format_')
    (out / LOCK_NAME).write_text("99999\n")
    summary = run_suite(parse_suite(suite_path.read_text(), str(suite_path)), out, progress=False)
    assert summary.ok and not list(out.rglob(".tmp-*"))


# ---- the lock: one writer per run directory ----------------------------------------------------

HOLD_LOCK = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
os.ftruncate(fd, 0)
os.write(fd, f"{os.getpid()}\\n".encode())
print("locked", flush=True)
time.sleep(120)
"""


def test_resume_while_another_process_writes_the_run_is_refused_and_touches_nothing(
    suite_path, tmp_path, capsys
):
    suite = parse_suite(suite_path.read_text(), str(suite_path))
    out = tmp_path / "run"
    run_suite(suite, out, limit=1, progress=False)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(out / LOCK_NAME)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        # The other run's half-written video: a resume must not take it for a dead run's.
        theirs = next((out / "videos").iterdir()) / ".tmp-1-sliding_w3__seed0.mp4"
        theirs.write_bytes(b"being written")
        before = files(out)
        argv = ["run", str(suite_path), "--out", str(out), "--resume", "--no-progress"]
        assert main(argv) == 2
        err = one_line_error(capsys)
        assert f"is being written by process {holder.pid}" in err and "--resume" in err
        assert files(out) == before and not (out / "errors").exists()
    finally:
        holder.kill()
        holder.wait()
    # Its holder gone, the lock is taken over.
    resumed = run_suite(suite, out, resume=True, progress=False)
    assert (resumed.skipped, resumed.done, resumed.failed) == (3, 3, 0)
    assert not theirs.exists()


def test_a_lock_file_left_by_a_dead_process_is_taken_over(suite_path, tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    out = tmp_path / "run"
    out.mkdir()
    (out / LOCK_NAME).write_text(f"{dead.pid}\n")
    summary = run_suite(parse_suite(suite_path.read_text(), str(suite_path)), out, progress=False)
    assert summary.ok
    assert (out / LOCK_NAME).read_text().strip() == str(os.getpid())


# ---- bad --out, --threads, --device, --devices: one line, nothing written --------------------


def test_out_under_a_file_is_one_line_and_writes_nothing(suite_path, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    argv = ["run", str(suite_path), "--out", str(blocker / "run"), "--no-progress"]
    assert main(argv) == 2
    assert "cannot write the run directory" in one_line_error(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "tiny.toml"]


def test_a_full_disk_is_one_line_and_leaves_no_file(suite_path, tmp_path, monkeypatch, capsys):
    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    out = tmp_path / "new" / "run"
    assert main(["run", str(suite_path), "--out", str(out), "--no-progress"]) == 2
    assert "No space left on device" in one_line_error(capsys)
    assert not (tmp_path / "new").exists()
    # An existing empty directory is left empty.
    (tmp_path / "empty").mkdir()
    assert main(["run", str(suite_path), "--out", str(tmp_path / "empty"), "--no-progress"]) == 2
    assert list((tmp_path / "empty").iterdir()) == []


def test_a_read_only_directory_is_one_line(suite_path, tmp_path, monkeypatch, capsys):
    # Tests may run as root, whom chmod does not stop: the kernel's answer is simulated.
    real_open = os.open

    def read_only(path, flags, *args, **kwargs):
        if str(path).endswith(LOCK_NAME):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only)
    out = tmp_path / "run"
    assert main(["run", str(suite_path), "--out", str(out), "--no-progress"]) == 2
    assert "Permission denied" in one_line_error(capsys)
    assert not out.exists()


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--threads", "-2"], "--threads -2 must be an integer >= 1"),
        (["--threads", "0"], "--threads 0 must be an integer >= 1"),
        (["--device", "banana"], "--device 'banana' is not a torch device"),
        (["--devices", "0"], "--devices 0 must be an integer >= 1"),
        (["--devices", "-1"], "--devices -1 must be an integer >= 1"),
        (["--devices", "3"], "--devices 3 is more than the 2 case(s) of this run"),
        (["--limit", "0"], "--limit=0 must be >= 1 case"),
    ],
)
def test_bad_run_options_are_one_line_before_any_file(
    suite_path, tmp_path, capsys, option, message
):
    out = tmp_path / "run"
    assert main(["run", str(suite_path), "--out", str(out), "--no-progress", *option]) == 2
    assert message in one_line_error(capsys)
    assert not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_a_cuda_device_without_a_gpu_is_one_line_before_any_file(suite_path, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["run", str(suite_path), "--out", str(out), "--device", "cuda:0", "--no-progress"]
    assert main(argv) == 2
    assert "no CUDA GPU is available here" in one_line_error(capsys)
    assert not out.exists()


def test_rows_of_a_resumed_run_equal_an_uninterrupted_one_after_a_refused_resume(
    suite_path, tmp_path, stable_rows
):
    """A refused concurrent resume changes nothing the eventual rows depend on."""
    suite = parse_suite(suite_path.read_text(), str(suite_path))
    out, reference = tmp_path / "run", tmp_path / "reference"
    run_suite(suite, out, limit=1, progress=False)
    with directory.RunLock(out), pytest.raises(ValueError, match="is being written by process"):
        run_suite(suite, out, resume=True, progress=False)
    run_suite(suite, out, resume=True, progress=False)
    run_suite(suite, reference, progress=False)
    assert stable_rows(read_rows(out)) == stable_rows(read_rows(reference))
    assert (
        json.loads((out / "plan.json").read_text())["units"]
        == json.loads((reference / "plan.json").read_text())["units"]
    )


def test_baseline_units_write_their_velocity_profile_and_others_do_not(tiny_text, tmp_path):
    suite = parse_suite(tiny_text, "tiny.toml")
    out = tmp_path / "run"
    run_suite(suite, out, progress=False)
    profiles = {p.stem: json.loads(p.read_text()) for p in (out / "regime").glob("*.json")}
    baseline_units = {p.stem for p in (out / "rows").glob("*.json") if "__baseline__" in p.stem}
    assert set(profiles) == baseline_units and baseline_units
    for records in profiles.values():
        assert [r["step"] for r in records] == list(range(1, suite.steps))
        assert all(r["relative_change"] >= 0 and r["magnitude_ratio"] > 0 for r in records)


# ---- --limit and progress bars ----------------------------------------------------------------


def test_limit_is_recorded_in_the_manifest_and_a_resume_without_it_clears_it(suite_path, tmp_path):
    suite = parse_suite(suite_path.read_text(), str(suite_path))
    out = tmp_path / "run"
    run_suite(suite, out, limit=1, progress=False)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["limit"] == {"limit": 1, "cases": 1, "of": 2}
    assert run_suite(suite, out, resume=True, progress=False).ok
    assert json.loads((out / "manifest.json").read_text())["limit"] is None


def test_progress_bars_are_shown_only_on_a_terminal(suite_path, tmp_path, capsys):
    # capsys's stderr is not a terminal, as in CI.
    assert main(["run", str(suite_path), "--out", str(tmp_path / "run"), "--limit", "1"]) == 0
    err = capsys.readouterr().err
    assert "%|" not in err and "it/s" not in err
