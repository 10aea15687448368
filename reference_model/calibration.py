"""The identity-distance calibration of the world's identity encoder, stored next to its weights.

`metrics.identity_distance` maps d = 1 - cosine to 0 at a reference image's own frames and
1 at the median other identity; the two levels belong to one encoder on one face set. Here
the face set is the world's validation identities, each rendered under its own driving
motion with frame 0 as the reference image (as a suite case's reference is its ground
truth's first frame). `python -m reference_model.calibration` writes
`weights/identity_calibration.json` with the encoder's sha256 and how it was made;
`load_identity_calibration()` reads it and refuses one made with other encoder weights.
World v2 has its own encoder and faces in their scenes: `python -m reference_model.calibration
--world v2` writes `weights_v2/identity_calibration.json` the same way.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torch import Tensor

from metrics.identity_distance import IdentityCalibration, calibrate_identity
from reference_model.shipped_weights import WEIGHTS_DIR, WORLD_WEIGHTS, read_manifest, world_of
from reference_model.world import driving_sequence, identity_params, split_ids
from reference_model.world.versions import world as world_version

CALIBRATION_FILE = "identity_calibration.json"
ENCODER_FILE = "identity.pt"
COMMAND = "python -m reference_model.calibration"


def world_identity_views(
    split: str = "val", identities: int = 128, frames: int = 13, size: int = 64, world: str = "v1"
) -> Tensor:
    """Clips ``[identities, frames, 3, size, size]`` of the first ids of ``split``, id k moved by
    driving seed k, in the scene of a suite case with that identity and seed (``world_cases``)."""
    from reference_model.world_cases import hidden_seed

    ids = list(split_ids(split))[:identities]
    motion = torch.stack([driving_sequence(seed, frames) for seed in range(len(ids))])
    scenes = torch.tensor([hidden_seed(i, seed) for seed, i in enumerate(ids)])
    video = world_version(world).render_video(identity_params(ids), motion, scenes, 0, size)
    return video.transpose(1, 2)


def build_identity_calibration(encoder=None, **views) -> IdentityCalibration:
    """Calibrate the shipped identity encoder (or ``encoder``) on ``world_identity_views(**views)``."""
    from reference_model.identity import load_identity_encoder

    settings = {"split": "val", "identities": 128, "frames": 13, "size": 64, **views}
    if encoder is None:
        encoder = load_identity_encoder(WORLD_WEIGHTS[settings.get("world", "v1")])
    clips = world_identity_views(**settings)
    return calibrate_identity(
        encoder,
        clips,
        backend="world-identity-encoder",
        made_with=(
            f"world_identity_views({', '.join(f'{k}={v!r}' for k, v in settings.items())}): "
            "the first ids of the split, id k under driving seed k, frame 0 its reference image"
        ),
    )


def _command(weights_dir: Path) -> str:
    world = world_of(weights_dir)
    return COMMAND + (f" --world {world}" if world not in (None, "v1") else "")


def write_identity_calibration(world: str = "v1") -> dict:
    """Calibrate world ``world``'s shipped encoder and write ``identity_calibration.json`` beside it."""
    weights_dir = WORLD_WEIGHTS[world]
    calibration = build_identity_calibration(**({} if world == "v1" else {"world": world}))
    record = {
        **calibration.to_dict(),
        "encoder": ENCODER_FILE,
        "encoder_sha256": read_manifest(Path(weights_dir))[ENCODER_FILE]["sha256"],
        "command": _command(weights_dir),
    }
    path = Path(weights_dir) / CALIBRATION_FILE
    path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return record


def load_identity_calibration(weights_dir: Path | str = WEIGHTS_DIR) -> IdentityCalibration:
    """The stored calibration of a world's identity encoder, checked against the encoder's sha256."""
    path = Path(weights_dir) / CALIBRATION_FILE
    command = _command(Path(weights_dir))
    if not path.exists():
        raise ValueError(f"identity calibration {path} is missing; make it with `{command}`")
    stored = json.loads(path.read_text())
    expected = read_manifest(Path(weights_dir))[ENCODER_FILE]["sha256"]
    if stored.get("encoder_sha256") != expected:
        raise ValueError(
            f"identity calibration {path} was made with {ENCODER_FILE} sha256 "
            f"{stored.get('encoder_sha256')} but the shipped encoder is {expected}; remake it with `{command}`"
        )
    return IdentityCalibration.read(path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", choices=sorted(WORLD_WEIGHTS), default="v1")
    print(json.dumps(write_identity_calibration(parser.parse_args(argv).world), indent=2))


if __name__ == "__main__":
    main()
