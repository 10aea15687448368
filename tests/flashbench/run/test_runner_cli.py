"""`flashbench validate | weights | run` through the flashbench command."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from flashbench.cli import run as run_commands
from flashbench.cli.main import main


def test_validate_reports_ok_for_a_valid_suite_and_the_key_for_a_broken_one(
    tiny_text, write_suite, capsys
):
    good = write_suite(tiny_text)
    assert main(["validate", str(good)]) == 0
    assert "ok  tiny" in capsys.readouterr().out
    bad = write_suite(
        tiny_text.replace('windowing = "sliding"', 'windowing = "slidng"'), name="bad"
    )
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert (
        "bad.toml: settings[1].windowing: unknown windowing 'slidng'; did you mean 'sliding'" in err
    )


def test_weights_lists_every_backend_file_with_its_state(capsys):
    status = main(["weights", "--no-verify"])
    out = capsys.readouterr().out
    assert "arcface-w600k_mbf" in out and "path:" in out and "sha256:" in out
    assert "present" in out or "MISSING" in out
    assert status == (1 if "MISSING" in out else 0)


def _status(name, present, verified):
    from metrics.weights import WeightStatus

    return WeightStatus(
        name, "a metric", f"/w/{name}", present, "ab" * 32, None, verified, "pip install x", "MIT"
    )


@pytest.mark.parametrize(
    ("present", "verified", "code", "summary"),
    [
        (True, True, 0, "0 missing, 0 corrupt"),
        (False, None, 1, "1 missing, 0 corrupt"),
        (True, False, 1, "0 missing, 1 corrupt"),
    ],
)
def test_weights_exits_1_while_a_file_is_missing_or_corrupt(
    monkeypatch, capsys, present, verified, code, summary
):
    import metrics.weights

    statuses = [_status("good", True, True), _status("other", present, verified)]
    monkeypatch.setattr(metrics.weights, "weight_status", lambda verify: statuses)
    assert main(["weights"]) == code
    assert summary in capsys.readouterr().out


def test_weights_lists_the_reference_models_shipped_files(capsys):
    main(["weights", "--no-verify"])
    out = capsys.readouterr().out
    assert "model 'reference' (shipped):" in out
    for name in ("dit_small", "autoencoder", "expression", "identity"):
        assert f"reference-{name}  [present]" in out
        assert f"reference_model/weights/{name}.pt" in out
    for name in ("autoencoder", "expression", "identity"):  # world v2's networks
        assert f"reference-v2-{name}  [present]" in out
        assert f"reference_model/weights_v2/{name}.pt" in out


def test_weights_names_a_corrupt_or_missing_shipped_reference_file_and_its_fix(
    monkeypatch, capsys, tmp_path
):
    import metrics.weights
    import reference_model.shipped_weights as shipped

    for manifest in ("dit.json", "weights.json"):
        (tmp_path / manifest).write_bytes((shipped.WEIGHTS_DIR / manifest).read_bytes())
    (tmp_path / "identity.pt").write_bytes(b"not the shipped identity encoder")
    monkeypatch.setattr(shipped, "WEIGHTS_DIR", tmp_path)
    monkeypatch.setitem(shipped.WORLD_WEIGHTS, "v1", tmp_path)
    monkeypatch.setattr(metrics.weights, "weight_status", lambda verify: [])
    assert main(["weights"]) == 1
    out = capsys.readouterr().out
    assert "reference-identity  [CORRUPT (sha256 mismatch)]" in out
    assert "reference-dit_small  [MISSING]" in out
    assert "obtain: restore it with `git checkout -- reference_model/weights/identity.pt`" in out
    assert "retrain: python -m reference_model.train_world identity" in out
    assert "3 missing, 1 corrupt" in out


def test_run_into_a_foreign_directory_is_refused_with_one_line(
    tiny_text, write_suite, tmp_path, capsys
):
    path = write_suite(tiny_text)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "manifest.json").write_text('{"suite": "x", "suite_sha256": "0"}')
    assert (
        main(["run", str(path), "--out", str(tmp_path / "other"), "--resume", "--no-progress"]) == 2
    )
    err = capsys.readouterr().err.strip()
    assert (
        err.startswith("flashbench run: error: run directory")
        and "never mixed" in err
        and "\n" not in err
    )


def test_model_args_run_the_suite_on_another_configuration_recorded_in_the_run(
    tiny_text, write_suite, tmp_path, capsys
):
    import json

    from flashbench.suite.document import load_suite

    path = write_suite(
        tiny_text.replace('model = "toy"', 'model = "toy"\nmodel_args = { dim = 16 }')
    )
    own = load_suite(path)
    # Updating the suite's model_args with what it already holds is the same suite.
    assert load_suite(path, {"dim": 16}).sha256 == own.sha256
    deeper = load_suite(path, {"depth": 2})
    assert dict(deeper.model_args) == {"dim": 16, "depth": 2} and deeper.sha256 != own.sha256
    assert main(["validate", str(path), "--model-args", '{"depth": 2}']) == 0
    assert 'model=toy {"dim": 16, "depth": 2}' in capsys.readouterr().out
    out = tmp_path / "deeper"
    argv = ["run", str(path), "--out", str(out), "--no-progress", "--limit", "1"]
    assert main([*argv, "--model-args", '{"depth": 2}']) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model"]["args"] == {"dim": 16, "depth": 2}
    assert manifest["suite_sha256"] == deeper.sha256
    assert 'model_args = { "dim" = 16, "depth" = 2 }' in (out / "suite.toml").read_text()
    capsys.readouterr()
    # Resuming it without the same --model-args would mix two models' rows: refused.
    assert main([*argv, "--resume"]) == 2
    assert "never mixed" in capsys.readouterr().err
    assert main([*argv, "--resume", "--model-args", '{"depth": 2}']) == 0
    for bad, said in (("[1]", "must be a JSON object"), ('{"dept": 2}', "did you mean 'depth'")):
        assert main([*argv[:3], str(tmp_path / "x"), "--model-args", bad]) == 2
        err = capsys.readouterr().err.strip()
        assert said in err and "\n" not in err
        assert not (tmp_path / "x").exists()


# ---- Ctrl-C: exit 130, one line, never swallowed ---------------------------------------------

INTERRUPTED = "interrupted; rerun with --resume to finish"


def _interrupt_self():
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(5)  # the handler raises KeyboardInterrupt long before this ends


@pytest.mark.parametrize("swallowed", [False, True])
def test_ctrl_c_exits_130_with_one_line_even_when_a_library_swallows_it(
    monkeypatch, capsys, tiny_text, write_suite, swallowed
):
    def run(args):
        try:
            _interrupt_self()
        except KeyboardInterrupt:
            if not swallowed:
                raise
        return 0  # what a run that swallowed the interrupt would report

    monkeypatch.setattr(run_commands, "cmd_run", run)
    # Whatever handler the process had is back once the command ends (a background job
    # starts with SIGINT ignored, an interactive one with Python's default handler).
    before = signal.getsignal(signal.SIGINT)
    assert main(["run", str(write_suite(tiny_text))]) == 130
    captured = capsys.readouterr()
    assert captured.err == INTERRUPTED + "\n"
    assert signal.getsignal(signal.SIGINT) is before


def test_ctrl_c_inside_a_finaliser_ends_the_command_without_a_traceback(
    monkeypatch, capsys, tiny_text, write_suite
):
    class InterruptedWhileFreed:
        def __del__(self):
            raise KeyboardInterrupt  # what Ctrl-C during a library's finaliser looks like

    carried_on = []

    def run(args):
        InterruptedWhileFreed()  # freed at once: the interrupt lands in __del__
        for _ in range(200):  # the interrupt is raised again in the command's own code
            time.sleep(0.01)
        carried_on.append(True)
        return 0

    monkeypatch.setattr(run_commands, "cmd_run", run)
    hook = sys.unraisablehook
    assert main(["run", str(write_suite(tiny_text))]) == 130
    assert capsys.readouterr().err == INTERRUPTED + "\n" and not carried_on
    assert sys.unraisablehook is hook


@pytest.mark.parametrize("interrupted", [True, False])
def test_a_ctrl_c_while_the_process_shuts_down_prints_no_traceback(
    tiny_text, write_suite, tmp_path, cli, interrupted
):
    # The command is interrupted, or finishes; then, in interpreter shutdown's finalisers, Ctrl-C
    # comes (pressed twice, reaching one rank of a multi-process run late, or just after a run
    # finished: the work is done and on disk, so the command ends as it would have).
    script = tmp_path / "ctrl_c_twice.py"
    script.write_text(
        textwrap.dedent(
            """
            import os, signal, time, weakref
            from flashbench.cli import run as run_commands
            from flashbench.cli.main import main

            class Shutdown:
                pass

            def ctrl_c_again():
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(1)  # a handler that raises does so here

            weakref.finalize(Shutdown, ctrl_c_again)  # runs at interpreter exit

            def run(args):
                if INTERRUPTED:
                    raise KeyboardInterrupt
                return 0

            run_commands.cmd_run = run
            raise SystemExit(main())
            """
        ).replace("INTERRUPTED", repr(interrupted))
    )
    done = cli("run", write_suite(tiny_text), script=script)
    assert done.returncode == (130 if interrupted else 0), done.stderr
    assert done.stderr == (INTERRUPTED + "\n" if interrupted else "")


REPO = Path(__file__).resolve().parents[3]


@pytest.mark.slow
def test_ctrl_c_during_a_real_run_exits_130_without_a_traceback_and_resume_finishes(
    tiny_text, write_suite, tmp_path
):
    from flashbench.run.runner import run_suite
    from flashbench.suite.document import parse_suite

    path, out = (
        write_suite(tiny_text.replace("lengths = [6]", "lengths = [6, 8]")),
        tmp_path / "run",
    )
    command = [sys.executable, "-m", "flashbench.cli.main", "run", str(path), "--out", str(out)]
    process = subprocess.Popen(
        [*command, "--no-progress"],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # Generous waits: on a machine loaded by other jobs the first unit can take minutes.
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and not [
        p for p in (out / "rows").glob("*.json") if not p.name.startswith(".")
    ]:
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=600)
    assert process.returncode == 130, err
    assert "Traceback" not in err and err.strip().splitlines()[-1] == INTERRUPTED
    summary = run_suite(parse_suite(path.read_text(), str(path)), out, resume=True, progress=False)
    assert summary.ok and summary.done + summary.skipped == 12
