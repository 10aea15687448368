"""The ``flashportrait`` model of suites: FlashPortrait's released files on diffusers' Wan2.1-I2V (nothing downloads).

Folder (``weights=``, else ``$FLASHBENCH_FLASHPORTRAIT``, else ``~/.cache/flashbench/flashportrait``)
holds the release's ``transformer.pt``, ``portrait_encoder.pt`` and ``pd_fpg.pth`` (the PD-FGC
expression extractor), as FlashPortrait's README lays them out under
``checkpoints/FlashPortrait/``. The transformer is built on the meta device and takes the
released tensors as they are, so the 14B model is never allocated twice.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from flashbench.flashportrait import (
    CONFIGS,
    NFEB_VARIANTS,
    FlashPortraitDenoiser,
    build_flashportrait,
)
from flashbench.flashportrait_weights import load_portrait_encoder, load_transformer

ENV = "FLASHBENCH_FLASHPORTRAIT"
DEFAULT_FOLDER = Path("~/.cache/flashbench/flashportrait")
RELEASED_FILES = ("transformer.pt", "portrait_encoder.pt", "pd_fpg.pth")


def released_folder(weights: str | None = None) -> Path:
    """The folder of the released files; ValueError naming every missing file and where to put it."""
    folder = Path(weights or os.environ.get(ENV) or DEFAULT_FOLDER).expanduser()
    missing = [name for name in RELEASED_FILES if not (folder / name).is_file()]
    if missing:
        raise ValueError(
            f"FlashPortrait's released files {', '.join(missing)} are missing from {folder}; "
            "download FlashPortrait's checkpoints yourself (its README: "
            f"checkpoints/FlashPortrait/{{{','.join(RELEASED_FILES)}}}) and put them in {folder}, "
            f"or give model_args weights=PATH or ${ENV}; nothing is downloaded here"
        )
    return folder


class FlashPortraitModel:
    """The released FlashPortrait as a layered denoiser (``denoiser``) and its portrait encoder.

    Case preparation (umT5 prompt, CLIP image tokens, the Wan VAE and PD-FGC on the driving
    video) is not built yet: ``prepare`` says so rather than guess.
    """

    name = "flashportrait"
    fps = 25

    def __init__(self, folder: Path, variant: str, config: str, device: str) -> None:
        transformer, self.portrait_encoder = build_flashportrait(
            CONFIGS[config](), variant, device="meta"
        )
        load = {"map_location": device, "weights_only": True, "mmap": True}
        load_transformer(transformer, torch.load(folder / "transformer.pt", **load))
        load_portrait_encoder(
            self.portrait_encoder, torch.load(folder / "portrait_encoder.pt", **load)
        )
        self.denoiser = FlashPortraitDenoiser(transformer)
        self.folder = folder

    def prepare(self, case: object) -> None:
        raise ValueError(
            "model 'flashportrait' cannot prepare suite cases yet (umT5, CLIP, Wan VAE and PD-FGC "
            "inputs are not wired); use its .denoiser with your own Cond (flashbench.flashportrait)"
        )


def load_flashportrait(
    weights: str | None = None,
    variant: str = "code",
    config: str = "wan2.1-i2v-14b-720p",
    device: str = "cpu",
) -> FlashPortraitModel:
    """The ``flashportrait`` model (registry entry ``"flashbench.flashportrait_model:load_flashportrait"``)."""
    if variant not in NFEB_VARIANTS:
        raise ValueError(f"variant={variant!r} is not an NFEB variant; use one of {NFEB_VARIANTS}")
    if config not in CONFIGS:
        raise ValueError(f"config={config!r} is unknown; use one of {sorted(CONFIGS)}")
    return FlashPortraitModel(released_folder(weights), variant, config, device)
