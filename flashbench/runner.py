"""Run a suite into a run directory (docs/run-directory.md): atomic rows, resume, cached baselines.

Work is split into units (case x setting x seed). A unit's rows file is written last, with
``os.replace``, so a unit is either finished (its rows file exists) or redone on resume:
a run killed at any point and resumed ends with exactly the rows of an uninterrupted run.
Pooled metrics (FVD, FID) compare sets of videos: once a setting's units have finished, its
saved videos are read back and pooled into one row per metric and reference.
"""

from __future__ import annotations

import datetime
import fcntl
import gc
import hashlib
import json
import logging
import math
import os
import platform
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from flashbench.denoiser import Cond
from flashbench.measure import METRICS, MIN_POOLED_VIDEOS, SPEED, Measurer
from flashbench.models import CaseInputs, PortraitModel, build_models
from flashbench.sampling import Guidance, Sample, StepEnd, sample
from flashbench.schedule import flow_match_sigmas
from flashbench.settings import Setting
from flashbench.suite import CaseSpec, Suite, dumps_toml, setting_dict
from metrics.speed import measure

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
# Measurements of the machine, not of the result: they differ between reruns.
TIMING_METRICS = ("wall_seconds", "wall_seconds_iqr", "fps", "peak_bytes")
# Pooled rows (FVD, FID) stand for every case and sampling seed of their setting.
POOLED_CASE = "*"
POOLED_SEED = -1
# Torch threads per process unless --threads says otherwise. One: intra-op threads spin-wait
# for each other, so on a machine whose cores are busy with other jobs 2 threads can take 20x
# the time of 1 and wall times stop meaning anything; scale out with --devices instead.
DEFAULT_THREADS = 1


@dataclass(frozen=True)
class Unit:
    """One case x setting x seed: the grain of resume and of row files."""

    case: CaseSpec
    setting: Setting
    seed: int

    @property
    def name(self) -> str:
        return f"{self.case.id}__{self.setting.name}__seed{self.seed}"


@dataclass(frozen=True)
class RunSummary:
    out: Path
    done: int
    skipped: int
    failed: int
    # Pooled computations (pooled__<setting>) that failed: a run with any is not a success.
    pooled_failed: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.failed and not self.pooled_failed


# ---- files ---------------------------------------------------------------------------------

# Every temp file is named .tmp-<pid>-<name>. No finished file of a run starts with "." (case
# ids and setting names start with a letter or digit), so resume deletes temps and nothing else.
TEMP_NAME = re.compile(r"\.tmp-\d+-.")
LOCK_NAME = ".lock"


def temp_path(path: Path) -> Path:
    """The temp file beside ``path`` (it keeps ``path``'s suffix: writers pick the format by it)."""
    return path.with_name(f".tmp-{os.getpid()}-{path.name}")


def _atomic_with(path: Path, write: Callable[[Path], None]) -> None:
    """Write through ``write(temp)``, then ``os.replace`` (readers never see half a file; a failed write leaves nothing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, fsynced before the rename."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())

    _atomic_with(path, write)


def atomic_json(path: Path, payload: Any) -> None:
    atomic_write(path, (json.dumps(payload, indent=1, allow_nan=False) + "\n").encode())


def write_video(path: Path, video: Tensor, fps: int) -> None:
    """Frames ``[T, 3, H, W]`` in [0, 1] as an H.264 mp4 (imageio-ffmpeg)."""
    import imageio.v2 as imageio

    frames = (video.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()

    def write(tmp: Path) -> None:
        # macro_block_size=1 keeps small frames their size; even sides suffice for yuv420p.
        with imageio.get_writer(
            tmp,
            format="FFMPEG",
            fps=fps,
            codec="libx264",
            macro_block_size=2,
            ffmpeg_log_level="error",
        ) as writer:
            for frame in frames:
                writer.append_data(frame)

    _atomic_with(path, write)


def write_image(path: Path, image: Tensor) -> None:
    import imageio.v3 as iio

    pixels = (image.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    _atomic_with(path, lambda tmp: iio.imwrite(tmp, pixels))


def read_video(path: Path) -> Tensor:
    """Frames ``[T, 3, H, W]`` in [0, 1] of an mp4 written by ``write_video``."""
    import imageio.v2 as imageio

    with imageio.get_reader(path, format="FFMPEG") as reader:
        frames = torch.stack([torch.from_numpy(frame.copy()) for frame in reader])
    return frames.permute(0, 3, 1, 2).float() / 255


# ---- manifest ------------------------------------------------------------------------------


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for package in (
        "flashbench",
        "torch",
        "torchvision",
        "lightning",
        "torchmetrics",
        "numpy",
        "imageio",
        "imageio-ffmpeg",
        "tqdm",
    ):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = None
    return out


def _git_hash() -> str | None:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


def _device_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda_available": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name(0)
        info["cuda_version"] = torch.version.cuda
    return info


def thread_settings(threads: int) -> dict[str, Any]:
    """What decides how many cores a run's sampling uses (wall times depend on it)."""
    return {
        "torch_threads": threads,
        "interop_threads": torch.get_num_interop_threads(),
        **{name: os.environ.get(name) for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")},
    }


def metric_backends(suite: Suite, measurer: Measurer) -> dict[str, dict[str, Any]]:
    """{metric: {backend, weights: {file: sha256}}} for the manifest."""
    out = measurer.manifest()
    if "speed" in suite.metrics.names:
        out["speed"] = {"backend": "timer", "weights": {}}
    return out


def model_manifest(suite: Suite, setting_models: dict[str, PortraitModel]) -> dict[str, Any]:
    """{"name", "weights"} of the baseline's model, plus "settings": {setting: weights} for settings with their own."""
    base = setting_models[suite.baseline]
    out: dict[str, Any] = {"name": suite.model, "weights": base.weights()}
    own = {name: model.weights() for name, model in setting_models.items() if model is not base}
    if own:
        out["settings"] = own
    return out


def build_manifest(
    suite: Suite,
    setting_models: dict[str, PortraitModel],
    measurer: Measurer,
    threads: int,
    devices: int,
) -> dict[str, Any]:
    return {
        "format_version": FORMAT_VERSION,
        "suite": suite.name,
        "suite_version": suite.version,
        "suite_sha256": suite.sha256,
        "suite_path": suite.path,
        "protocol": suite.protocol,
        "baseline": suite.baseline,
        "model": model_manifest(suite, setting_models),
        "steps": suite.steps,
        "shift": suite.shift,
        "seeds": list(suite.seeds),
        "case_seeds": {
            "identity_seed": suite.cases.identity_seed,
            "driving_seeds": list(suite.cases.driving_seeds),
        },
        "settings": [setting_dict(s) for s in suite.settings],
        "metric_backends": metric_backends(suite, measurer),
        "versions": _versions(),
        "git_hash": _git_hash(),
        "device": _device_info(),
        "threads": threads,
        "thread_settings": thread_settings(threads),
        # Other jobs' load when the run started: a busy machine makes wall times unreliable.
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "timing_repeats": suite.metrics.timing_repeats,
        "devices": devices,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


class RunLock:
    """An exclusive lock on a run directory, held while one process writes it.

    ``fcntl.flock`` on ``RUN/.lock`` (which records the holder's pid): the kernel drops the
    lock when its holder exits, even under kill -9, so a lock left by a dead run is taken
    over and a pid reused by another program never blocks a resume.
    """

    def __init__(self, out: Path) -> None:
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
        self.release()


def _foreign_entries(out: Path) -> list[str]:
    """What a directory without manifest.json holds besides a killed run's temp files and lock."""
    return sorted(
        p.name for p in out.iterdir() if not TEMP_NAME.match(p.name) and p.name != LOCK_NAME
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
) -> RunLock:
    """Create the run directory, or check that an existing one belongs to this very suite; returns its lock.

    Nothing is written into a directory that is not a run directory (no manifest.json) unless
    it is empty or holds only a killed run's temp files. The manifest is written first, so a
    directory with a manifest is a run directory, whatever else a kill left in it.
    """
    manifest_path = out / "manifest.json"
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} is a file; choose a directory")
    if out.is_dir() and not manifest_path.is_file():
        foreign = _foreign_entries(out)
        if foreign:
            raise ValueError(
                f"--out {str(out)!r} is not a run directory (no manifest.json) and holds "
                f"{', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''}; flashbench writes only into a new "
                "or empty directory or a run directory: choose another --out"
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
        else:
            atomic_json(
                manifest_path, build_manifest(suite, setting_models, measurer, threads, devices)
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


def _unwritable(out: Path, err: OSError) -> ValueError:
    return ValueError(
        f"cannot write the run directory {str(out)!r}: {err.strerror or err} ({err.filename or out}); "
        "choose an --out in a writable directory with free space"
    )


def remove_stale_temp_files(out: Path) -> list[Path]:
    """Delete the temp files a killed run left behind (only ever called under the run's lock)."""
    stale = [p for p in out.rglob(".tmp-*") if p.is_file() and TEMP_NAME.match(p.name)]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


# ---- units ---------------------------------------------------------------------------------


def plan_units(suite: Suite, cases: Iterable[CaseSpec]) -> list[Unit]:
    """Units in run order: per case, the baseline setting first so that its output is cached for the rest."""
    ordered = sorted(suite.settings, key=lambda s: s.name != suite.baseline)
    return [
        Unit(case, setting, seed) for case in cases for seed in suite.seeds for setting in ordered
    ]


def noise_seed(case: CaseSpec, seed: int) -> int:
    """A seed for the initial noise, the same for every setting of one case and sampling seed."""
    return int(hashlib.sha256(f"{case.id}:{seed}".encode()).hexdigest()[:15], 16)


def reseeded_noise_seed(case: CaseSpec, seed: int) -> int:
    """The seed of the re-seeded baseline's noise: another draw for the same case and sampling seed."""
    return int(hashlib.sha256(f"{case.id}:{seed}:reseeded".encode()).hexdigest()[:15], 16)


def reseeded_setting(suite: Suite) -> Setting:
    """The pseudo-setting ``reseeded``: the baseline setting sampled from another noise seed
    (the seed floor), measured and pooled like a setting; its units are the baseline's."""
    return replace(suite.setting(suite.baseline), name="reseeded")


def measured_settings(suite: Suite) -> list[Setting]:
    """The suite's settings, plus ``reseeded`` when metrics.references lists it."""
    extra = [reseeded_setting(suite)] if "reseeded" in suite.metrics.references else []
    return [*suite.settings, *extra]


def baseline_key(suite: Suite, model: PortraitModel, case: CaseSpec, seed: int) -> str:
    """Content hash of everything that determines a case's baseline output."""
    payload = {
        "model": suite.model,
        "weights": model.weights(),
        "case": case.__dict__,
        "seed": seed,
        "steps": suite.steps,
        "shift": suite.shift,
        "setting": setting_dict(suite.setting(suite.baseline)),
        "guidance_drop": list(suite.guidance_drop),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _step_progress(bar: tqdm, steps: int) -> Callable[[StepEnd], None]:
    """A ``sample`` callback that advances ``bar`` once per denoising step of a ``steps``-step pass."""

    def advance(end: StepEnd) -> None:
        if end.step == 0:
            bar.reset(total=steps)
        bar.update(1)

    return advance


def cond_to(cond: Cond, device: torch.device | str) -> Cond:
    """The conditioning with its tensors on ``device`` (noise is drawn on the CPU, so runs match across devices)."""

    def move(value: Any) -> Any:
        return value.to(device) if isinstance(value, Tensor) else value

    return replace(
        cond,
        static={k: move(v) for k, v in cond.static.items()},
        temporal={k: move(v) for k, v in cond.temporal.items()},
    )


def _noise(unit: Unit, inputs: CaseInputs) -> Tensor:
    """The unit's initial noise: drawn on the CPU from the case and seed, shared by every setting."""
    return torch.randn(
        inputs.latent_shape,
        generator=torch.Generator().manual_seed(noise_seed(unit.case, unit.seed)),
    )


class NonFiniteLatents(ValueError):
    """Sampling produced NaN or Inf."""


class NonFiniteMetric(ValueError):
    """A metric's aggregate is NaN or Inf (e.g. no frame had a face)."""


def _sampler(
    suite: Suite,
    model: PortraitModel,
    setting: Setting,
    inputs: CaseInputs,
    noise: Tensor,
    device: torch.device | str = "cpu",
    bar: tqdm | None = None,
) -> Callable[[], Sample]:
    """One sampling pass of ``setting`` on a case, ready to call (and to call again, for timing)."""
    stepper, windowing, _ = setting.build()
    guidance = (
        Guidance(setting.guidance_scale, suite.guidance_drop)
        if setting.guidance_scale is not None
        else None
    )
    if guidance is not None:
        # Dropping nothing makes both branches equal: guidance would silently cost 2x for nothing.
        present = {*inputs.cond.static, *inputs.cond.temporal}
        absent = [key for key in guidance.drop if key not in present]
        if absent:
            raise ValueError(
                f"guidance.drop names {absent}, which model {model.name!r} does not condition on; "
                f"use some of {sorted(present)}"
            )
    noise, cond = noise.to(device), cond_to(inputs.cond, device)
    sigmas = flow_match_sigmas(suite.steps, suite.shift)
    progress = None if bar is None else _step_progress(bar, len(stepper.plan(sigmas)) - 1)

    def run() -> Sample:
        return sample(
            model.denoiser,
            noise,
            sigmas,
            cond,
            stepper=stepper,
            windowing=windowing,
            guidance=guidance,
            callback=progress,
        )

    return run


def _sample(
    suite: Suite,
    model: PortraitModel,
    setting: Setting,
    inputs: CaseInputs,
    noise: Tensor,
    bar: tqdm | None,
    device: torch.device | str = "cpu",
) -> Sample:
    run = _sampler(suite, model, setting, inputs, noise, device, bar)
    with measure(device) as memory:
        result = run()
    result = replace(result, latents=result.latents.cpu(), peak_bytes=memory.peak_bytes)
    if not torch.isfinite(result.latents).all():
        nan = int(torch.isnan(result.latents).sum())
        inf = int(torch.isinf(result.latents).sum())
        raise NonFiniteLatents(
            f"non-finite latents from setting {setting.name!r}: {nan} NaN and {inf} Inf of {result.latents.numel()} values"
        )
    return result


@dataclass(frozen=True)
class Timing:
    """Wall seconds of repeated calls: their median and spread."""

    median: float
    iqr: float
    min: float
    max: float
    repeats: int

    @classmethod
    def of(cls, seconds: list[float]) -> Timing:
        low, q1, median, q3, high = np.percentile(seconds, [0, 25, 50, 75, 100])
        return cls(float(median), float(q3 - q1), float(low), float(high), len(seconds))


def _clock(device: torch.device) -> float:
    # As torch.utils.benchmark's timer: queued GPU work finishes before the clock is read.
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def time_interleaved(
    runs: list[Callable[[], object]], repeats: int, device: torch.device | str = "cpu"
) -> list[Timing]:
    """Time ``repeats`` calls of each of ``runs`` (each already called once: the warm-up), in rounds.

    Every round calls each run once, in alternating order, so a change in the machine's load
    during the rounds affects every run alike and ratios between runs (speedups) hold. Garbage
    collection is off during each call (as in ``timeit``), so a collection that one setting's
    garbage triggers is not charged to another.
    """
    device = torch.device(device)
    times: list[list[float]] = [[] for _ in runs]
    for round_ in range(repeats):
        order = list(enumerate(runs))
        for index, run in order if round_ % 2 == 0 else reversed(order):
            gc.disable()
            try:
                start = _clock(device)
                run()
                times[index].append(_clock(device) - start)
            finally:
                gc.enable()
    return [Timing.of(seconds) for seconds in times]


def _row(
    unit: Unit,
    metric: str,
    value: float,
    unit_name: str,
    higher: bool | None,
    backend: str,
    reference: str,
    frame: int | None,
) -> dict[str, Any]:
    return {
        "case": unit.case.id,
        "setting": unit.setting.name,
        "seed": unit.seed,
        "metric": metric,
        "value": float(value),
        "unit": unit_name,
        "higher_is_better": higher,
        "backend": backend,
        "reference": reference,
        "frame": frame,
        "frames": unit.case.frames,
        "stepper": unit.setting.stepper,
        "windowing": unit.setting.windowing,
    }


def seam_boundaries(setting: Setting, latent_frames: int, video_frames: int) -> list[int]:
    """Video frames where a window of the setting starts or ends (at the first step), for the seam metric."""
    _, windowing, _ = setting.build()
    per_latent = max(1, video_frames // max(1, latent_frames))
    edges = {e for start, stop in windowing.windows(latent_frames, 0) for e in (start, stop)}
    return sorted(e * per_latent for e in edges if 0 < e < latent_frames)


def unit_rows(
    suite: Suite,
    measurer: Measurer,
    unit: Unit,
    result: Sample,
    video: Tensor,
    targets: dict[str, Tensor],
) -> list[dict[str, Any]]:
    """Tidy rows of one unit: each metric against each of its references (and per frame where asked)."""
    rows: list[dict[str, Any]] = []
    boundaries = seam_boundaries(unit.setting, result.latents.shape[2], video.shape[0])
    for name in measurer.names:
        spec = METRICS[name]
        backend = measurer.backends[name]
        for reference in spec.references:
            if reference and (
                reference not in suite.metrics.references or reference not in targets
            ):
                continue
            measured = measurer.values(name, video, targets.get(reference), boundaries, unit.case)
            for figure in spec.figures:
                if figure.name not in measured:
                    continue
                value, frames = measured[figure.name]
                if not math.isfinite(value):
                    raise NonFiniteMetric(
                        f"metric {figure.name!r} vs {reference or 'nothing'} is not finite ({value}) for setting {unit.setting.name!r}"
                    )
                kind = (figure.unit, figure.higher_is_better, backend, reference)
                rows.append(_row(unit, figure.name, value, *kind, None))
                if name in suite.metrics.per_frame and frames is not None:
                    # A frame without a value (e.g. no face found) has no row; the aggregate skips it too.
                    rows.extend(
                        _row(unit, figure.name, v, *kind, i)
                        for i, v in enumerate(frames)
                        if math.isfinite(v)
                    )
    return rows


def speed_rows(unit: Unit, result: Sample, timing: Timing | None) -> list[dict[str, Any]]:
    """The unit's speed rows: wall time from ``timing`` (median and IQR of the timed passes), or
    from the one pass that made ``result`` when there is none; NFE, memory and frames per second."""
    seconds = timing.median if timing is not None else result.seconds
    figures = {
        "wall_seconds": seconds,
        "wall_seconds_iqr": timing.iqr if timing is not None else 0.0,
        "nfe": result.nfe,
        "peak_bytes": result.peak_bytes or 0,
        "cache_bytes": result.peak_cache_bytes,
        "fps": unit.case.frames / max(seconds, 1e-9),
    }
    rows = []
    for metric, value in figures.items():
        unit_name, higher = SPEED[metric]
        rows.append(_row(unit, metric, value, unit_name, higher, "timer", "", None))
    return rows


def _trace(result: Sample) -> list[dict[str, Any]]:
    return [
        {
            "step": r.step,
            "sigma": r.sigma,
            "window": list(r.window),
            "branch": r.branch,
            "action": r.action,
            "seconds": r.seconds,
        }
        for r in result.trace
    ]


@dataclass(frozen=True)
class Sampled:
    """A unit sampled and measured whose rows wait for its case's timing rounds."""

    unit: Unit
    result: Sample
    rows: list[dict[str, Any]]
    run: Callable[[], Sample]  # another sampling pass of the unit, for timing


class CaseRunner:
    """Runs the units of a suite into a run directory; one instance per process.

    ``setting_models`` maps each setting to its model (``build_models``); the baseline
    setting's model prepares the cases' shared files and serves the world-* metrics.
    """

    def __init__(
        self,
        suite: Suite,
        setting_models: dict[str, PortraitModel],
        out: Path,
        progress: bool | None = None,
        measurer: Measurer | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        self.suite, self.out, self.progress = suite, Path(out), progress
        self.setting_models = setting_models
        self.model = setting_models[suite.baseline]
        self.device = device
        for model in setting_models.values():
            if isinstance(model.denoiser, torch.nn.Module):
                model.denoiser.to(device)
        self.measurer = measurer or Measurer(
            suite.metrics.names, dict(suite.metrics.backends), self.model
        )

    def _baseline(
        self, case: CaseSpec, seed: int, inputs: CaseInputs, noise: Tensor, kind: str = "baseline"
    ) -> Tensor:
        """The baseline latents of a case from ``noise``, from the content-hash cache or sampled once and cached.

        ``kind`` "reseeded" is the baseline from the other noise seed (the seed floor), cached apart.
        """
        path = self.out / "cache" / kind / f"{baseline_key(self.suite, self.model, case, seed)}.pt"
        if path.is_file():
            return torch.load(path, weights_only=True)
        result = _sample(
            self.suite,
            self.model,
            self.suite.setting(self.suite.baseline),
            inputs,
            noise,
            None,
            self.device,
        )
        self._cache(path, result.latents)
        return result.latents

    def _cache(self, path: Path, latents: Tensor) -> None:
        _atomic_with(path, lambda tmp: torch.save(latents.contiguous(), tmp))

    def reseeded_rows(
        self,
        unit: Unit,
        inputs: CaseInputs,
        result: Sample,
        video: Tensor,
        targets: dict[str, Tensor],
    ) -> list[dict[str, Any]]:
        """Rows of the pseudo-setting ``reseeded`` for a baseline unit, saving its video.

        The baseline re-sampled from another noise seed (cached) is measured against the unit's
        ``targets`` and against the baseline's ``video`` as reference "baseline"; ``result`` is
        the baseline's sample, whose latent shape (hence seam boundaries) the re-seed shares.
        """
        generator = torch.Generator().manual_seed(reseeded_noise_seed(unit.case, unit.seed))
        noise = torch.randn(inputs.latent_shape, generator=generator)
        latents = self._baseline(unit.case, unit.seed, inputs, noise, "reseeded")
        reseeded = Unit(unit.case, reseeded_setting(self.suite), unit.seed)
        output = self.model.decode(latents)
        rows = unit_rows(
            self.suite, self.measurer, reseeded, result, output, {**targets, "baseline": video}
        )
        write_video(
            self.out / "videos" / unit.case.id / f"reseeded__seed{unit.seed}.mp4",
            output,
            self.model.fps,
        )
        return rows

    def sample_unit(
        self,
        unit: Unit,
        inputs_of: Callable[[PortraitModel], CaseInputs],
        bar: tqdm | None = None,
    ) -> Sampled | None:
        """Sample one unit, measure it and write its video and trace; a failure goes to errors/ (None).

        ``inputs_of(model)`` gives the case's inputs for a model (prepared once per model:
        conditioning is normalised with each checkpoint's own statistics). The rows file is
        written by ``finish_unit``, after the case's timing rounds.
        """
        suite, out = self.suite, self.out
        model = self.setting_models[unit.setting.name]
        try:
            inputs = inputs_of(model)
            noise = _noise(unit, inputs)
            result = _sample(suite, model, unit.setting, inputs, noise, bar, self.device)
            is_baseline = unit.setting.name == suite.baseline
            if is_baseline:
                key = baseline_key(suite, model, unit.case, unit.seed)
                self._cache(out / "cache" / "baseline" / f"{key}.pt", result.latents)
            video = model.decode(result.latents)
            targets: dict[str, Tensor] = {"reference_image": inputs.reference_image}
            if inputs.ground_truth is not None:
                targets["ground_truth"] = inputs.ground_truth
            if inputs.driving is not None:
                targets["driving"] = inputs.driving
            if not is_baseline and "baseline" in suite.metrics.references:
                base_inputs = inputs_of(self.model)
                targets["baseline"] = self.model.decode(
                    self._baseline(unit.case, unit.seed, base_inputs, _noise(unit, base_inputs))
                )
            rows = unit_rows(suite, self.measurer, unit, result, video, targets)
            if is_baseline and "reseeded" in suite.metrics.references:
                rows += self.reseeded_rows(unit, inputs, result, video, targets)
            write_video(
                out / "videos" / unit.case.id / f"{unit.setting.name}__seed{unit.seed}.mp4",
                video,
                model.fps,
            )
            if suite.save_latents:
                self._cache(out / "latents" / f"{unit.name}.pt", result.latents)
            atomic_json(out / "traces" / f"{unit.name}.json", _trace(result))
            run = _sampler(suite, model, unit.setting, inputs, noise, self.device)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as err:  # one unit's failure is recorded and the run goes on
            self._record_error(unit, err)
            return None
        return Sampled(unit, result, rows, run)

    def finish_unit(self, sampled: Sampled, timing: Timing | None) -> None:
        """Write the unit's rows file (last: from now on the unit is finished)."""
        unit, rows = sampled.unit, list(sampled.rows)
        if "speed" in self.suite.metrics.names:
            rows += speed_rows(unit, sampled.result, timing)
        atomic_json(self.out / "rows" / f"{unit.name}.json", {"unit": unit.name, "rows": rows})
        (self.out / "errors" / f"{unit.name}.json").unlink(missing_ok=True)

    def time_units(self, sampled: list[Sampled]) -> list[Timing | None]:
        """Interleaved timing rounds over a case's sampled units (when the suite measures speed)."""
        if "speed" not in self.suite.metrics.names or not sampled:
            return [None] * len(sampled)
        return time_interleaved(
            [s.run for s in sampled], self.suite.metrics.timing_repeats, self.device
        )

    def _record_error(self, unit: Unit, err: BaseException) -> None:
        record_error(self.out, unit.name, unit.case.id, unit.setting.name, unit.seed, err)

    def run_case(
        self, case: CaseSpec, units: list[Unit], bar: tqdm | None = None
    ) -> tuple[int, int, int]:
        """Run the unfinished units of one case; returns (done, skipped, failed)."""
        todo = [u for u in units if not (self.out / "rows" / f"{u.name}.json").is_file()]
        skipped = len(units) - len(todo)
        if not todo:
            return 0, skipped, 0
        prepared: dict[int, CaseInputs] = {}

        def inputs_of(model: PortraitModel) -> CaseInputs:
            if id(model) not in prepared:
                prepared[id(model)] = model.prepare(case)
            return prepared[id(model)]

        try:
            inputs = inputs_of(self.model)
            case_dir = self.out / "videos" / case.id
            if not (case_dir / "reference.png").is_file():
                write_image(case_dir / "reference.png", inputs.reference_image)
            if inputs.ground_truth is not None and not (case_dir / "ground_truth.mp4").is_file():
                write_video(case_dir / "ground_truth.mp4", inputs.ground_truth, self.model.fps)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as err:  # a case that cannot be prepared fails its units, not the run
            for unit in todo:
                self._record_error(unit, err)
            if bar is not None:
                bar.update(len(units))
            return 0, skipped, len(todo)
        sampled: list[Sampled] = []
        steps = tqdm(
            total=self.suite.steps, desc="steps", leave=False, disable=self._disabled(), position=1
        )
        with steps:
            for unit in todo:
                steps.set_postfix_str(f"{unit.setting.name} seed {unit.seed}")
                one = self.sample_unit(unit, inputs_of, steps)
                if one is not None:
                    sampled.append(one)
                if bar is not None:
                    bar.update(1)
        if bar is not None:
            bar.update(skipped)
        done = 0
        try:
            # Timed together, so that the case's settings share the machine's load of the moment.
            timings = self.time_units(sampled)
            for one, timing in zip(sampled, timings, strict=True):
                self.finish_unit(one, timing)
                done += 1
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as err:  # the units not yet finished are recorded as failed
            for one in sampled[done:]:
                self._record_error(one.unit, err)
        return done, skipped, len(todo) - done

    def _disabled(self) -> bool | None:
        return None if self.progress is None else not self.progress


def record_error(
    out: Path, name: str, case: str, setting: str, seed: int, err: BaseException
) -> None:
    """errors/<name>.json with a one-line message (the first line of the exception)."""
    text = str(err).strip().splitlines()
    message = f"{type(err).__name__}: {text[0] if text else ''}"
    log.error("%s failed: %s", name, message)
    atomic_json(
        out / "errors" / f"{name}.json",
        {"unit": name, "case": case, "setting": setting, "seed": seed, "error": message},
    )


def suite_models(suite: Suite) -> dict[str, PortraitModel]:
    """The model of each setting of ``suite`` (one instance per distinct model_args)."""
    return build_models(suite.model, {s.name: suite.model_args_for(s.name) for s in suite.settings})


def case_units(
    suite: Suite, model: PortraitModel, limit: int | None = None
) -> list[tuple[CaseSpec, list[Unit]]]:
    """The suite's cases (the first ``limit`` of them) with their units."""
    cases = suite.cases.expand(model.splits, model.fps)
    if limit is not None:
        if limit < 1:
            raise ValueError(f"--limit={limit} must be >= 1 case")
        cases = cases[:limit]
    units = plan_units(suite, cases)
    return [(case, [u for u in units if u.case == case]) for case in cases]


# ---- pooled rows (FVD, FID): one per setting, metric and reference -------------------------


def pooled_name(setting: Setting) -> str:
    return f"pooled__{setting.name}"


def check_pooled(suite: Suite, measurer: Measurer, cases: list[CaseSpec]) -> None:
    """Refuse, before any unit runs, pooled metrics that the suite's videos cannot feed."""
    for name in measurer.pooled:
        # The ground-truth side has one video per case, and a covariance needs two samples.
        if len(cases) < MIN_POOLED_VIDEOS:
            raise ValueError(
                f"{suite.path}: metrics.names: {name!r} pools each setting's videos over cases, but this run "
                f"has {len(cases)} case(s); use at least {MIN_POOLED_VIDEOS} (more identities, driving seeds "
                f"or a larger --limit) or drop {name!r}"
            )
        need = measurer.min_frames(name)
        short = [c for c in cases if c.frames < need]
        if short:
            raise ValueError(
                f"{suite.path}: cases.lengths: {name!r} needs videos of at least {need} frames, but case "
                f"{short[0].id!r} has {short[0].frames}; use longer lengths or drop {name!r}"
            )


def video_features(measurer: Measurer, name: str, backend: str, video: Path, cache: Path) -> Tensor:
    """Features of one saved video for pooled metric ``name``, cached by the file's bytes and the backend."""
    key = hashlib.sha256(f"{name}\n{backend}\n".encode() + video.read_bytes()).hexdigest()
    path = cache / name / f"{key}.pt"
    if path.is_file():
        return torch.load(path, weights_only=True)
    features = measurer.features(name, read_video(video)).cpu()
    _atomic_with(path, lambda tmp: torch.save(features, tmp))
    return features


def pooled_rows(
    suite: Suite, measurer: Measurer, out: Path, setting: Setting, units: list[Unit]
) -> list[dict[str, Any]]:
    """Rows of one setting's pooled metrics: its saved videos against the cases' ground truth and the baseline's videos.

    Videos are read back one at a time from the mp4 files (both sides through the same codec),
    so memory holds one video and the metric's running sums, never the set.
    """
    videos = out / "videos"
    generated = [videos / u.case.id / f"{setting.name}__seed{u.seed}.mp4" for u in units]
    references: dict[str, list[Path]] = {}
    if "ground_truth" in suite.metrics.references:
        truths = [videos / case / "ground_truth.mp4" for case in sorted({u.case.id for u in units})]
        if all(p.is_file() for p in truths):
            references["ground_truth"] = truths
    if "baseline" in suite.metrics.references and setting.name != suite.baseline:
        references["baseline"] = [
            videos / u.case.id / f"{suite.baseline}__seed{u.seed}.mp4" for u in units
        ]
    manifest = measurer.manifest()
    cache = out / "cache" / "features"
    rows = []
    for name in measurer.pooled:
        spec = METRICS[name]
        backend = json.dumps(manifest[name], sort_keys=True)

        def features(paths: list[Path], name: str = name, backend: str = backend):
            return (video_features(measurer, name, backend, p, cache) for p in paths)

        for reference, real in references.items():
            if reference not in spec.references:
                continue
            value = measurer.pooled_value(name, features(generated), features(real))
            if not math.isfinite(value):
                raise NonFiniteMetric(
                    f"pooled metric {name!r} vs {reference} is not finite ({value}) for setting {setting.name!r}"
                )
            rows.append(
                {
                    "case": POOLED_CASE,
                    "setting": setting.name,
                    "seed": POOLED_SEED,
                    "metric": name,
                    "value": value,
                    "unit": spec.unit,
                    "higher_is_better": spec.higher_is_better,
                    "backend": measurer.backends[name],
                    "reference": reference,
                    "frame": None,
                    "frames": max(u.case.frames for u in units),
                    "stepper": setting.stepper,
                    "windowing": setting.windowing,
                    "samples": len(generated),
                }
            )
    return rows


def write_pooled_rows(suite: Suite, measurer: Measurer, out: Path, units: list[Unit]) -> int:
    """Write rows/pooled__<setting>.json for each setting whose units (and the baseline's) all finished.

    A pooled file records the units it pools; it is rewritten when that list changes (units
    added by a larger --limit) and removed while some of them are unfinished, so pooled rows
    always stand for exactly the units of the run. Returns how many files were written.
    """
    if not measurer.pooled:
        return 0
    finished = {u.name for u in units if (out / "rows" / f"{u.name}.json").is_file()}
    uses_baseline = "baseline" in suite.metrics.references
    written = 0
    for setting in measured_settings(suite):
        # The re-seeded baseline pools the videos that the baseline's units saved.
        source = suite.baseline if setting.name == "reseeded" else setting.name
        mine = sorted((u for u in units if u.setting.name == source), key=lambda u: u.name)
        needed = mine + [u for u in units if uses_baseline and u.setting.name == suite.baseline]
        name = pooled_name(setting)
        path = out / "rows" / f"{name}.json"
        inputs = [u.name for u in mine]
        if not mine or any(u.name not in finished for u in needed):
            if path.is_file():
                log.info(
                    "%s: some of its units are unfinished; removing its stale pooled rows", name
                )
                path.unlink()
            continue
        if path.is_file() and json.loads(path.read_text()).get("units") == inputs:
            continue
        try:
            rows = pooled_rows(suite, measurer, out, setting, mine)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as err:  # recorded like a failed unit; the other settings go on
            record_error(out, name, POOLED_CASE, setting.name, POOLED_SEED, err)
            continue
        atomic_json(path, {"unit": name, "units": inputs, "rows": rows})
        (out / "errors" / f"{name}.json").unlink(missing_ok=True)
        written += 1
    return written


def pooled_failures(suite: Suite, out: Path) -> tuple[str, ...]:
    """Pooled computations (FVD, FID) whose last attempt failed: their errors/ file is removed on success."""
    return tuple(
        name
        for name in map(pooled_name, measured_settings(suite))
        if (out / "errors" / f"{name}.json").is_file()
    )


def write_plan(out: Path, units: list[Unit], measurer: Measurer, suite: Suite) -> None:
    """plan.json: the units this run is to finish, so readers (gate, compare) can tell a partial run."""
    pooled = [pooled_name(s) for s in measured_settings(suite)] if measurer.pooled else []
    atomic_json(out / "plan.json", {"units": [u.name for u in units], "pooled": pooled})


def check_threads(threads: int) -> int:
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(
            f"--threads {threads!r} must be an integer >= 1 (torch threads per process)"
        )
    return threads


def check_device(device: str | torch.device) -> torch.device:
    """``device`` as a torch device this machine has; a ValueError naming the fix otherwise."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as err:
        raise ValueError(
            f"--device {str(device)!r} is not a torch device ({_first_line(err)}); use cpu or cuda[:N]"
        ) from err
    if parsed.type == "cpu":
        return parsed
    if parsed.type != "cuda":
        raise ValueError(
            f"--device {str(device)!r}: runs support cpu and cuda[:N]; use one of them"
        )
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise ValueError(
            f"--device {str(device)!r}: no CUDA GPU is available here (torch {torch.__version__}); "
            "use --device cpu"
        )
    if parsed.index is not None and parsed.index >= count:
        raise ValueError(
            f"--device {str(device)!r}: this machine has {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}; "
            "choose one of them"
        )
    return parsed


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def run_suite(
    suite: Suite,
    out: str | Path,
    *,
    resume: bool = False,
    limit: int | None = None,
    threads: int | None = None,
    progress: bool | None = None,
    device: str = "cpu",
) -> RunSummary:
    """Run ``suite`` into ``out`` in this process; see ``flashbench.distributed`` for several."""
    out = Path(out)
    threads = check_threads(DEFAULT_THREADS if threads is None else threads)
    device = check_device(device)
    torch.set_num_threads(threads)
    setting_models = suite_models(suite)
    model = setting_models[suite.baseline]
    measurer = Measurer(suite.metrics.names, dict(suite.metrics.backends), model)
    plan = case_units(suite, model, limit)
    units = [u for _, case_units_ in plan for u in case_units_]
    check_pooled(suite, measurer, [case for case, _ in plan])
    with open_run_dir(out, suite, setting_models, measurer, resume=resume, threads=threads):
        write_plan(out, units, measurer, suite)
        runner = CaseRunner(suite, setting_models, out, progress, measurer, device)
        done = skipped = failed = 0
        start = time.perf_counter()
        with tqdm(
            total=len(units),
            desc=f"{suite.name} units",
            disable=runner._disabled(),
            position=0,
        ) as bar:
            for case, mine in plan:
                d, s, f = runner.run_case(case, mine, bar)
                done, skipped, failed = done + d, skipped + s, failed + f
        write_pooled_rows(suite, measurer, out, units)
    summary = RunSummary(out, done, skipped, failed, pooled_failures(suite, out))
    log.info(
        "%s: %d units done, %d skipped, %d failed, %d pooled computations failed in %.1f s",
        out,
        done,
        skipped,
        failed,
        len(summary.pooled_failed),
        time.perf_counter() - start,
    )
    return summary


def read_rows(out: str | Path) -> list[dict[str, Any]]:
    """All rows of a run directory, sorted (for comparisons)."""
    rows = []
    for path in sorted((Path(out) / "rows").glob("*.json")):
        rows.extend(json.loads(path.read_text())["rows"])
    return sorted(
        rows,
        key=lambda r: (
            r["case"],
            r["setting"],
            r["seed"],
            r["metric"],
            r["reference"],
            -1 if r["frame"] is None else r["frame"],
        ),
    )
