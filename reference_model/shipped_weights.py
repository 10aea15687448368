"""Weight files shipped in ``reference_model/weights/`` (world v1) and ``weights_v2/`` (world v2), verified by sha256 before loading."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from metrics.weights import WeightStatus, file_sha256

# Each world version's networks (and DiT) live in their own folder (MODEL_CARD_V2.md).
WORLD_FOLDERS = {"v1": "weights", "v2": "weights_v2"}
WORLD_WEIGHTS = {w: Path(__file__).resolve().parent / f for w, f in WORLD_FOLDERS.items()}
WEIGHTS_DIR = WORLD_WEIGHTS["v1"]
WEIGHTS_V2 = WORLD_WEIGHTS["v2"]
MANIFEST = "weights.json"
# The DiT's sha256 is recorded apart from the world's networks (reference_model/pipeline.py).
DIT_MANIFEST = "dit.json"
# What each shipped file is for, as `flashbench weights` lists it (the model cards tell more).
USES = {
    "dit_small.pt": "the reference model's denoiser (PortraitDiT small; MODEL_CARD_DIT.md)",
    "autoencoder.pt": "the reference model's world: frames <-> latents (MODEL_CARD_WORLD.md)",
    "expression.pt": "the world's expression and pose extractor: aed, apd (world-*-extractor)",
    "identity.pt": "the world's identity encoder: id_sim, id_dist (world-identity-encoder)",
}
LICENCE = "Apache-2.0, as FlashBench (trained on its synthetic portrait world)"


def restore_fix(path: Path) -> str:
    """How to get a shipped file back (it is tracked by git and installed with the package)."""
    folder = WORLD_FOLDERS[world_of(Path(path).parent) or "v1"]
    return f"restore it with `git checkout -- reference_model/{folder}/{path.name}` or reinstall flashbench"


def world_of(folder: Path) -> str | None:
    """The world whose shipped weights folder ``folder`` is (however it is spelled), or None."""
    return next(
        (w for w, d in WORLD_WEIGHTS.items() if d.resolve() == Path(folder).resolve()), None
    )


def restore_hint(path: Path) -> str:
    """The fix of a broken shipped file, for an error message."""
    return f"the shipped file is corrupt or missing: {restore_fix(path)}"


def is_shipped(path: Path) -> bool:
    """Whether ``path``, however it is spelled (relative, with ``..``, a link), is in a shipped weights folder."""
    return world_of(Path(path).parent) is not None


def read_json(path: Path) -> Any:
    """A JSON file of the weights folder; a ValueError naming the file if it does not parse."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        fix = restore_hint(path) if is_shipped(path) else "restore or regenerate it"
        raise ValueError(f"{path} is not valid JSON ({error}); {fix}") from error


def read_manifest(weights_dir: Path | None = None) -> dict[str, Any]:
    """The manifest ``weights.json`` (of the shipped folder by default): one entry per file with its sha256 and retrain command."""
    path = Path(weights_dir if weights_dir is not None else WEIGHTS_DIR) / MANIFEST
    if not path.exists():
        return {}
    return read_json(path)


def retrain_command(name: str) -> str:
    """The one-line command that retrains the network stored as ``name``.pt."""
    return f"python -m reference_model.train_world {name}"


def load_verified(name: str, weights_dir: Path | str | None = None) -> dict[str, Any]:
    """The checkpoint ``name``.pt, after checking its sha256 against ``weights.json``."""
    weights_dir = Path(weights_dir) if weights_dir is not None else WEIGHTS_DIR
    file_name = f"{name}.pt"
    path = weights_dir / file_name
    fix = f"regenerate it with `{retrain_command(name)}`"
    if is_shipped(path):
        fix = f"{restore_hint(path)}, or {fix}"
    if not path.exists():
        raise ValueError(f"weights file {path} is missing; {fix}")
    entry = read_manifest(weights_dir).get(file_name)
    if entry is None:
        raise ValueError(f"weights file {path} has no entry in {weights_dir / MANIFEST}; {fix}")
    actual = file_sha256(path)
    if actual != entry["sha256"]:
        raise ValueError(
            f"weights file {path} has sha256 {actual} but {MANIFEST} expects {entry['sha256']} "
            f"(corrupted or mismatched); {fix}"
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a file that hashes right but does not unpickle
        raise ValueError(f"weights file {path} could not be read ({error}); {fix}") from error
    if not isinstance(checkpoint, dict) or checkpoint.get("kind") != name:
        raise ValueError(f"weights file {path} does not hold a {name!r} checkpoint; {fix}")
    return checkpoint


def checkpoint_of(name: str, model: nn.Module) -> dict[str, Any]:
    """What ``load_network`` reads back: the network's kind, its config dataclass and its weights."""
    return {"kind": name, "config": asdict(model.config), "state_dict": model.state_dict()}


def load_network(
    name: str, build: Callable[[dict[str, Any]], nn.Module], weights_dir: Path | str | None = None
) -> nn.Module:
    """The shipped network ``name`` (sha256-verified) built by ``build(config)``, in eval mode with gradients off."""
    checkpoint = load_verified(name, weights_dir)
    model = build(checkpoint["config"])
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval().requires_grad_(False)


def record(
    name: str, path: Path, details: dict[str, Any], weights_dir: Path = WEIGHTS_DIR
) -> dict[str, Any]:
    """Add or replace the manifest entry of ``path`` (sha256, size, retrain command, details)."""
    manifest = read_manifest(weights_dir)
    entry = {
        "sha256": file_sha256(path),
        "bytes": path.stat().st_size,
        "retrain": retrain_command(name),
        **details,
    }
    manifest[path.name] = entry
    (Path(weights_dir) / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return entry


def weight_status(verify: bool = True) -> list[WeightStatus]:
    """Every shipped weight file of both worlds with its recorded sha256 (``dit.json``,
    ``weights.json``), present or missing, hashed when ``verify``: the reference model's entry of
    ``flashbench weights``."""
    records = []
    for world, folder in WORLD_WEIGHTS.items():
        dit = folder / DIT_MANIFEST
        recorded = read_manifest(folder)
        if dit.is_file() or world == "v1":
            entry = read_json(dit)
            recorded = {entry["file"]: entry, **recorded}
        prefix = "reference" if world == "v1" else f"reference-{world}"
        for file_name, entry in recorded.items():
            path = folder / file_name
            present = path.is_file()
            actual = file_sha256(path) if present and verify else None
            retrain = entry.get("retrain", "the stages of MODEL_CARD_DIT.md (`flashbench train`)")
            records.append(
                WeightStatus(
                    name=f"{prefix}-{Path(file_name).stem}",
                    used_by=USES.get(file_name, "the reference model")
                    + ("" if world == "v1" else f", world {world} (MODEL_CARD_V2.md)"),
                    path=str(path),
                    present=present,
                    expected_sha256=entry["sha256"],
                    actual_sha256=actual,
                    verified=None if actual is None else actual == entry["sha256"],
                    obtain=f"{restore_fix(path)}; or retrain: {retrain}",
                    licence=LICENCE,
                )
            )
    return records
