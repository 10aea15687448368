"""The runner: rows are deterministic, resume never loses or duplicates a row, failures stay one unit's."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from flashbench.run.directory import LOCK_NAME
from flashbench.run.rows import read_rows
from flashbench.run.runner import run_suite
from flashbench.settings import steppers
from flashbench.steppers import Stepper
from flashbench.suite.document import parse_suite

REPO = Path(__file__).resolve().parents[3]


def test_rows_are_deterministic_across_reruns(tiny_text, tmp_path, stable_rows):
    suite = parse_suite(tiny_text, "tiny.toml")
    first = run_suite(suite, tmp_path / "a", threads=1, progress=False)
    second = run_suite(suite, tmp_path / "b", threads=1, progress=False)
    assert (first.done, first.failed) == (6, 0) == (second.done, second.failed)
    rows_a, rows_b = read_rows(tmp_path / "a"), read_rows(tmp_path / "b")
    assert len(rows_a) == len(rows_b) > 0
    assert stable_rows(rows_a) == stable_rows(rows_b)
    # One baseline sample cached per (case, seed), shared by the other settings.
    assert len(list((tmp_path / "a" / "cache" / "baseline").glob("*.pt"))) == 2
    case = rows_a[0]["case"]
    videos = sorted(p.name for p in (tmp_path / "a" / "videos" / case).iterdir())
    assert videos == [
        "baseline__seed0.mp4",
        "ground_truth.mp4",
        "reference.png",
        "sliding_w3__seed0.mp4",
        "sliding_w4__seed0.mp4",
    ]
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["suite_sha256"] == suite.sha256 and manifest["format_version"] == 1
    assert manifest["metric_backends"]["id_sim"]["backend"] == "world-identity-encoder"


def test_rows_follow_the_run_directory_format(tiny_text, tmp_path):
    from reports.load import load_run

    run_suite(parse_suite(tiny_text, "tiny.toml"), tmp_path / "run", threads=1, progress=False)
    run = load_run(tmp_path / "run")
    assert set(run.rows["setting"]) == {"baseline", "sliding_w3", "sliding_w4"}
    baseline_refs = set(run.rows[run.rows["setting"] == "baseline"]["reference"])
    assert "baseline" not in baseline_refs  # the baseline is never compared with itself
    assert set(run.rows[run.rows["setting"] == "sliding_w3"]["reference"]) == {
        "",
        "ground_truth",
        "baseline",
        "reference_image",
        "driving",
    }
    per_frame = run.rows[run.rows["frame"].notna()]
    assert set(per_frame["metric"]) == {"id_sim"} and per_frame["frame"].max() == 5
    assert len(run.traces) > 0 and run.errors.empty
    assert len(list((tmp_path / "run" / "latents").glob("*.pt"))) == 6  # save_latents = true
    # suite.toml is the resolved suite: it parses back to the same settings.
    resolved = parse_suite((tmp_path / "run" / "suite.toml").read_text(), "suite.toml")
    assert resolved.settings == parse_suite(tiny_text, "tiny.toml").settings


def test_resume_skips_finished_units_and_refuses_another_suite(tiny_text, tmp_path):
    suite = parse_suite(tiny_text, "tiny.toml")
    out = tmp_path / "run"
    assert run_suite(suite, out, limit=1, threads=1, progress=False).done == 3
    with pytest.raises(ValueError, match="pass --resume"):
        run_suite(suite, out, threads=1, progress=False)
    resumed = run_suite(suite, out, resume=True, threads=1, progress=False)
    assert (resumed.done, resumed.skipped) == (3, 3)
    other = parse_suite(tiny_text.replace('version = "1"', 'version = "2"'), "tiny.toml")
    with pytest.raises(ValueError, match=r"version '1'.*never mixed: choose another --out"):
        run_suite(other, out, resume=True, threads=1, progress=False)


def test_a_suite_with_characters_outside_the_bmp_runs_resumes_and_reads_back(tiny_text, tmp_path):
    description = "tiny 🎬 suite: 𝒳 ∑ é"
    text = tiny_text.replace('version = "1"', f'version = "1"\ndescription = "{description}"')
    suite = parse_suite(text, "tiny.toml")
    out = tmp_path / "run"
    assert run_suite(suite, out, limit=1, threads=1, progress=False).done == 3
    written = (out / "suite.toml").read_text(encoding="utf-8")
    assert f'description = "{description}"' in written  # as itself, not as surrogate pairs
    assert parse_suite(written, "suite.toml").resolved() == suite.resolved()
    resumed = run_suite(suite, out, resume=True, threads=1, progress=False)
    assert (resumed.done, resumed.skipped) == (3, 3)
    assert (out / "suite.toml").read_text(encoding="utf-8") == written


class Explode(Stepper):
    """A stepper whose velocity is NaN: the runner must record one line and go on."""

    name = "explode"

    def velocity(self, model, x, sigmas, step, cond, cache):
        return torch.full_like(x, float("nan")), "compute"


def test_nan_latents_are_one_line_errors_and_the_run_goes_on(tiny_text, tmp_path):
    if "explode" not in steppers:
        steppers.register("explode", Explode)
    text = tiny_text + '\n[[settings]]\nname = "boom"\nstepper = "explode"\n'
    summary = run_suite(parse_suite(text, "tiny.toml"), tmp_path / "run", threads=1, progress=False)
    assert (summary.done, summary.failed) == (6, 2)
    errors = sorted((tmp_path / "run" / "errors").glob("*.json"))
    assert [p.stem.split("__")[1] for p in errors] == ["boom", "boom"]
    error = json.loads(errors[0].read_text())
    assert set(error) == {"unit", "case", "setting", "seed", "error"}
    assert (
        error["error"].startswith("NonFiniteLatents: non-finite latents from setting 'boom'")
        and "\n" not in error["error"]
    )
    assert not (tmp_path / "run" / "rows" / f"{error['unit']}.json").exists()


def test_gate_fails_a_run_whose_setting_failed_on_every_unit_and_a_partial_run(
    tiny_text, tmp_path, capsys
):
    from reports.cli import gate

    if "explode" not in steppers:
        steppers.register("explode", Explode)
    text = tiny_text + '\n[[settings]]\nname = "boom"\nstepper = "explode"\n'
    suite = parse_suite(text, "tiny.toml")
    out = tmp_path / "run"
    summary = run_suite(suite, out, threads=1, progress=False)
    assert (summary.done, summary.failed) == (6, 2)
    # Every setting with rows meets the floor; "boom" has none, so only the plan can fail it.
    assert gate(out, floors=["psnr@baseline>=0"]) == 1
    printed = capsys.readouterr().out
    assert "gate FAILED: 2 planned unit(s) failed or have no rows (settings boom)" in printed
    assert "failed: NonFiniteLatents: non-finite latents from setting 'boom'" in printed
    # A run killed before its last unit finished (no failure recorded) fails the gate too.
    clean = tmp_path / "partial"
    run_suite(parse_suite(tiny_text, "tiny.toml"), clean, threads=1, progress=False)
    assert gate(clean, floors=["psnr@baseline>=0"]) == 0
    next((clean / "rows").glob("cross_*sliding_w3*")).unlink()
    assert gate(clean, floors=["psnr@baseline>=0"]) == 1
    assert "sliding_w3__seed0 (sliding_w3): no rows: never run or interrupted" in (
        capsys.readouterr().out
    )


# Metrics computed in flashbench itself keep the killed subprocess's start-up short (no torchmetrics import).
KILL_SUITE_EXTRA = {
    "lengths = [6]": "lengths = [6, 8]",
    'names = ["psnr", "ssim", "id_sim", "aed", "seam", "speed"]': 'names = ["mae", "speed"]',
    'per_frame = ["id_sim"]': 'per_frame = ["mae"]',
}


def finished_rows(out):
    """The unit rows files of a run, without a write still in flight (``.tmp-<pid>-<unit>.json``)."""
    return [p for p in (out / "rows").glob("*.json") if not p.name.startswith(".")]


@pytest.mark.slow
def test_resume_after_sigkill_gives_exactly_the_rows_of_an_uninterrupted_run(
    tiny_text, write_suite, tmp_path, stable_rows
):
    for old, new in KILL_SUITE_EXTRA.items():
        assert old in tiny_text
        tiny_text = tiny_text.replace(old, new)
    path = write_suite(tiny_text)
    suite = parse_suite(tiny_text, str(path))
    total = 4 * 3  # cases x settings
    out = tmp_path / "killed"
    command = [
        sys.executable,
        "-m",
        "flashbench.cli.main",
        "run",
        str(path),
        "--out",
        str(out),
        "--threads",
        "1",
        "--no-progress",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(finished_rows(out)) < 2 and process.poll() is None:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished = len(finished_rows(out))
    assert 0 < finished < total, (
        f"the kill should land mid-run, {finished} of {total} units were finished"
    )
    resumed = run_suite(suite, out, resume=True, threads=1, progress=False)
    assert resumed.skipped == finished and resumed.done == total - finished
    reference = tmp_path / "uninterrupted"
    run_suite(suite, reference, threads=1, progress=False)
    assert stable_rows(read_rows(out)) == stable_rows(read_rows(reference))
    assert not [p for p in out.rglob(".*") if p.is_file() and p.name != LOCK_NAME], (
        "no temp file of the killed run may remain"
    )


def test_a_case_that_cannot_be_prepared_fails_its_units_not_the_run(
    tiny_text, tmp_path, monkeypatch
):
    from flashbench.models.toy import ToyModel

    def unrenderable(self, case):
        raise ValueError(f"case {case.id!r} cannot be rendered")

    monkeypatch.setattr(ToyModel, "prepare", unrenderable)
    summary = run_suite(parse_suite(tiny_text, "tiny.toml"), tmp_path / "run", progress=False)
    assert (summary.done, summary.failed) == (0, 6)
    errors = [
        json.loads(p.read_text())["error"] for p in (tmp_path / "run" / "errors").glob("*.json")
    ]
    assert len(errors) == 6
    assert all(e.startswith("ValueError: case '") and "cannot be rendered" in e for e in errors)


def test_a_temp_file_a_dead_writer_finishes_late_is_removed_when_the_run_lets_go(tmp_path):
    # A killed run's ffmpeg child can outlive it and complete its temp video after the resume's
    # start-up cleanup; the run cleans again on exit, sparing temps of writers still alive.
    from flashbench.run.directory import RunLock

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / "videos").mkdir()
    with RunLock(tmp_path):
        late = tmp_path / "videos" / f".tmp-{dead.pid}-ground_truth.mp4"
        late.write_bytes(b"late")
        live = tmp_path / "videos" / f".tmp-{os.getppid()}-baseline.mp4"
        live.write_bytes(b"a shard still writing")
    assert not late.exists() and live.exists()
