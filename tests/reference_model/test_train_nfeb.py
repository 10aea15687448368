"""The NFEB ablation driver trains the five variants alike but for the formula, on one shared pool."""

from __future__ import annotations

import subprocess

import pytest

from reference_model import train_nfeb
from reference_model.dit import NFEB_VARIANTS


def flags(command: list[str]) -> dict[str, str]:
    return dict(zip(command[3::2], command[4::2], strict=False))


def test_variant_commands_differ_only_in_the_formula_and_the_run_directory(tmp_path):
    commands = {v: train_nfeb.command(tmp_path, v) for v in NFEB_VARIANTS}
    for variant, command in commands.items():
        assert command[1:3] == ["-m", "reference_model.train_model"]
        assert command[-3:] == ["--nfeb", variant, "--reset-expression-branch"]
        assert flags(command)["--out"] == str(tmp_path / variant)
    shared = [
        {k: v for k, v in flags(c).items() if k not in ("--out", "--nfeb")}
        for c in commands.values()
    ]
    assert all(s == shared[0] for s in shared)
    assert shared[0]["--max-steps"] == shared[0]["--decay-steps"] == str(train_nfeb.STEPS)
    pool = train_nfeb.command(tmp_path, None)
    assert pool[-1] == "--render-only" and "--nfeb" not in pool


def test_main_renders_once_links_the_pool_and_trains_in_batches(tmp_path, monkeypatch):
    launched: list[list[str]] = []

    class Recorder:
        def __init__(self, command, **kwargs):
            launched.append(command)
            if "--render-only" in command:
                pool = tmp_path / "pool"
                pool.mkdir(parents=True, exist_ok=True)
                for name in train_nfeb.POOL_FILES:
                    (pool / name).write_text(name)

        def wait(self) -> int:
            return 0

    monkeypatch.setattr(subprocess, "Popen", Recorder)
    (tmp_path / "code").mkdir(parents=True)
    (tmp_path / "code" / "rendered.pt").write_text("a resumed run's own pool")
    train_nfeb.main([str(tmp_path), "2"])
    assert "--render-only" in launched[0]
    assert [c[c.index("--nfeb") + 1] for c in launched[1:]] == list(NFEB_VARIANTS)
    paper = tmp_path / "paper" / "rendered.pt"
    assert paper.stat().st_ino == (tmp_path / "pool" / "rendered.pt").stat().st_ino
    assert (tmp_path / "code" / "rendered.pt").read_text() == "a resumed run's own pool"
    launched.clear()
    train_nfeb.main([str(tmp_path), "3"])  # the pool exists: no second render
    assert all("--render-only" not in c for c in launched) and len(launched) == 5


def test_a_failed_variant_stops_the_driver_naming_its_log(tmp_path, monkeypatch):
    class Failing:
        def __init__(self, command, **kwargs):
            self.command = command

        def wait(self) -> int:
            return int("pure_norm" in self.command)

    monkeypatch.setattr(subprocess, "Popen", Failing)
    for name in train_nfeb.POOL_FILES:
        (tmp_path / "pool").mkdir(exist_ok=True)
        (tmp_path / "pool" / name).write_text(name)
    with pytest.raises(SystemExit, match=r"pure_norm\.log"):
        train_nfeb.main([str(tmp_path), "2"])
    with pytest.raises(SystemExit, match="PARALLEL=0"):
        train_nfeb.main([str(tmp_path), "0"])


def test_the_accelerator_reaches_every_command_and_nothing_else_changes(tmp_path, monkeypatch):
    launched: list[list[str]] = []

    class Recorder:
        def __init__(self, command, **kwargs):
            launched.append(command)

        def wait(self) -> int:
            return 0

    monkeypatch.setattr(subprocess, "Popen", Recorder)
    (tmp_path / "pool").mkdir()
    for name in train_nfeb.POOL_FILES:
        (tmp_path / "pool" / name).write_text(name)
    train_nfeb.main([str(tmp_path), "5", "--accelerator", "gpu"])
    assert len(launched) == 5 and all(flags(c)["--accelerator"] == "gpu" for c in launched)
    on_cpu = [train_nfeb.command(tmp_path, v) for v in NFEB_VARIANTS]
    assert [{**flags(c), "--accelerator": "cpu"} for c in launched] == [flags(c) for c in on_cpu]
    with pytest.raises(SystemExit):
        train_nfeb.main([str(tmp_path), "2", "--accelerator", "tpu"])
