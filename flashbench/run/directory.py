"""A run directory (docs/run-directory.md): created or resumed under one writer's lock, its plan and its errors."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path

import psutil

from flashbench.errors import one_line
from flashbench.models.base import PortraitModel
from flashbench.run.files import TEMP_NAME, atomic_json, atomic_write
from flashbench.run.folders import check_own_folder
from flashbench.run.manifest import build_manifest, model_manifest
from flashbench.run.measure import Measurer
from flashbench.run.plan import Plan, pooled_name
from flashbench.suite.document import Suite
from flashbench.suite.schema import dumps_toml

log = logging.getLogger(__name__)

LOCK_NAME = ".lock"


class RunLock:
    """An exclusive lock on a run directory, held while one process writes it.

    ``fcntl.flock`` on ``RUN/.lock`` (which records the holder's pid): the kernel drops the
    lock when its holder exits, even under kill -9, so a lock left by a dead run is taken
    over and a pid reused by another program never blocks a resume.
    """

    def __init__(self, out: Path) -> None:
        self.out = out
        path = out / LOCK_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise ValueError(
                f"run directory {str(out)!r} is being written by process {holder} (it holds {path}); "
                "wait for that run to finish or stop it, then rerun with --resume"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd: int | None = fd

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        # A killed run's video writer (an ffmpeg child) can outlive it and finish its temp file
        # after the resume's start-up cleanup: clean once more before letting go.
        try:
            remove_stale_temp_files(self.out, dead_writers_only=True)
        finally:
            self.release()


def check_locked_by(out: Path, pid: int, why: str) -> None:
    """Check that process ``pid`` holds ``out``'s lock, for a process that shares it (a rank it launched)."""
    path = out / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        holder = None
    else:
        try:
            holder = os.read(fd, 32).decode(errors="replace").strip()
            # The lock is held iff it cannot be taken: the pid in the file may be a dead run's.
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            holder = None
        except BlockingIOError:
            pass
        finally:
            os.close(fd)
    if holder != str(pid):
        raise ValueError(
            f"{why} marks this process as a rank of a multi-process run, but its parent process {pid} "
            f"does not hold the run directory {str(out)!r}; `flashbench run --devices N` launches its "
            "own ranks: unset LOCAL_RANK"
        )


def _check_resumable(
    out: Path, suite: Suite, setting_models: dict[str, PortraitModel], resume: bool
) -> None:
    """Refuse to continue a run directory unless asked to, and unless it holds this very suite and model."""
    manifest_path = out / "manifest.json"
    if not resume:
        raise ValueError(
            f"run directory {str(out)!r} already holds a run; pass --resume to continue it, or choose another --out"
        )
    try:
        manifest = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(
            f"{manifest_path} is not valid JSON ({err}); this is not a run directory of flashbench"
        ) from err
    if not isinstance(manifest, dict) or manifest.get("suite_sha256") != suite.sha256:
        manifest = manifest if isinstance(manifest, dict) else {}
        raise ValueError(
            f"run directory {str(out)!r} was written by suite {manifest.get('suite')!r} version "
            f"{manifest.get('suite_version')!r} (sha256 {str(manifest.get('suite_sha256'))[:12]}), but "
            f"{suite.path} (version {suite.version!r}) has sha256 {suite.sha256[:12]}; rows of different suites are never "
            "mixed: choose another --out"
        )
    recorded = manifest.get("model") or {}
    current = model_manifest(suite, setting_models)
    if "weights" in recorded and (recorded["weights"], recorded.get("settings")) != (
        current["weights"],
        current.get("settings"),
    ):
        raise ValueError(
            f"run directory {str(out)!r} was sampled with other {suite.model!r} model weights "
            f"({recorded}); rows of different models are never mixed: choose another --out"
        )


def open_run_dir(
    out: Path,
    suite: Suite,
    setting_models: dict[str, PortraitModel],
    measurer: Measurer,
    *,
    resume: bool,
    threads: int,
    devices: int = 1,
    limit: Mapping[str, int] | None = None,
) -> RunLock:
    """Create the run directory, or check that an existing one belongs to this very suite; returns its lock.

    Nothing is written into a directory that is not a run directory (no manifest.json) unless
    it is empty or holds only a killed run's temp files. The manifest is written first, so a
    directory with a manifest is a run directory, whatever else a kill left in it. ``limit``
    (``Plan.limit``) is recorded in it, and updated when a resume runs under another --limit.
    """
    manifest_path = out / "manifest.json"
    if not manifest_path.is_file():
        # A killed run's temp files and lock are its own: a resume cleans them up.
        check_own_folder(
            out,
            lambda p: bool(TEMP_NAME.match(p.name)) or p.name == LOCK_NAME,
            "a run directory",
            "no manifest.json",
        )
    # The outermost directory this call creates: removed again if the run cannot start.
    missing = [p for p in (out, *out.parents) if not p.exists()]
    top = missing[-1] if missing else None
    try:
        out.mkdir(parents=True, exist_ok=True)
        lock = RunLock(out)
    except OSError as err:
        if top is not None:
            shutil.rmtree(top, ignore_errors=True)
        raise _unwritable(out, err) from err
    fresh = not manifest_path.is_file()
    try:
        if not fresh:
            _check_resumable(out, suite, setting_models, resume)
            _record_limit(manifest_path, limit)
        else:
            atomic_json(
                manifest_path,
                build_manifest(suite, setting_models, measurer, threads, devices, limit),
            )
        # Written after the manifest: a run killed in between gets it back on resume.
        if not (out / "suite.toml").is_file():
            atomic_write(out / "suite.toml", dumps_toml(suite.resolved()).encode())
        remove_stale_temp_files(out)
    except OSError as err:
        lock.release()
        if fresh and top is not None:
            shutil.rmtree(top, ignore_errors=True)
        elif fresh:
            for name in (LOCK_NAME, "manifest.json", "suite.toml"):
                (out / name).unlink(missing_ok=True)
        raise _unwritable(out, err) from err
    except BaseException:
        lock.release()
        raise
    return lock


def _record_limit(manifest_path: Path, limit: Mapping[str, int] | None) -> None:
    """A resume under another --limit (or none) changes how many cases the run covers: say so."""
    manifest = json.loads(manifest_path.read_text())
    recorded = None if limit is None else dict(limit)
    if manifest.get("limit") != recorded:
        atomic_json(manifest_path, {**manifest, "limit": recorded})


def _unwritable(out: Path, err: OSError) -> ValueError:
    return ValueError(
        f"cannot write the run directory {str(out)!r}: {err.strerror or err} ({err.filename or out}); "
        "choose an --out in a writable directory with free space"
    )


def remove_stale_temp_files(out: Path, dead_writers_only: bool = False) -> list[Path]:
    """Delete the temp files a killed run left behind (only ever called under the run's lock).

    ``dead_writers_only``: keep the temps of processes still alive (other shards of this run).
    """
    named = ((p, TEMP_NAME.match(p.name)) for p in out.rglob(".tmp-*") if p.is_file())
    stale = [
        p
        for p, match in named
        if match and not (dead_writers_only and psutil.pid_exists(int(match["pid"])))
    ]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def write_plan(out: Path, plan: Plan, measurer: Measurer) -> None:
    """plan.json: the units this run is to finish, so readers (gate, compare) can tell a partial run."""
    pooled = [pooled_name(s) for s in plan.settings] if measurer.pooled else []
    atomic_json(out / "plan.json", {"units": [u.name for u in plan.units], "pooled": pooled})


def record_error(
    out: Path, name: str, case: str, setting: str, seed: int, err: BaseException
) -> None:
    """errors/<name>.json with a one-line message (the first line of the exception)."""
    message = one_line(err)
    log.error("%s failed: %s", name, message)
    atomic_json(
        out / "errors" / f"{name}.json",
        {"unit": name, "case": case, "setting": setting, "seed": seed, "error": message},
    )
