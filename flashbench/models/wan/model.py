"""The ``wan`` model of suites: a local diffusers-format Wan text-to-video folder, checked by sha256.

Folder layout (``docs/wan.md``): ``transformer/`` and ``vae/`` as diffusers saves them
(``WanPipeline.save_pretrained`` or a ``Wan-AI/Wan2.1-T2V-*-Diffusers`` snapshot), the prompt
embeddings of the cases in ``prompts.safetensors`` (no text encoder runs here), and
``flashbench-manifest.json``: the sha256 of every file the model reads. Nothing downloads.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from flashbench.models.base import WORLD_SPLITS, CaseInputs, CaseSpec, ModelSpec, WithoutInstruments
from flashbench.models.wan.denoiser import COND_KEYS, WanDenoiser, wan_cond
from metrics.weights import file_sha256

ENV = "FLASHBENCH_WAN"
DEFAULT_FOLDER = Path("~/.cache/flashbench/wan")
MANIFEST = "flashbench-manifest.json"
PROMPTS = "prompts.safetensors"
# Wan's VAE: 4x in time (frames = 4k + 1), 8x in space; the transformer's patches are 2x2.
TIME_STRIDE, SPACE_STRIDE, RESOLUTION_STEP = 4, 8, 16
# What the ``wan`` model reads besides the weights the configs name (docs/wan.md).
WAN_FILES = ("transformer/config.json", "vae/config.json", PROMPTS)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def wan_folder(weights: str | None = None) -> Path:
    """The model folder: ``weights``, else ``$FLASHBENCH_WAN``, else ``~/.cache/flashbench/wan``."""
    folder = Path(weights or os.environ.get(ENV) or DEFAULT_FOLDER).expanduser()
    if not folder.is_dir():
        raise ValueError(
            f"Wan model folder {folder} does not exist; put a diffusers-format Wan T2V folder "
            f"(transformer/, vae/, {PROMPTS}, {MANIFEST}) there, or give model_args weights=PATH "
            f"or ${ENV} (docs/wan.md)"
        )
    return folder


def write_manifest(folder: str | Path) -> Path:
    """Record the sha256 of every file under ``folder`` (once, on files you trust) in its manifest."""
    folder = Path(folder)
    files = {
        path.relative_to(folder).as_posix(): file_sha256(path)
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != MANIFEST and ".cache" not in path.parts
    }
    target = folder / MANIFEST
    target.write_text(json.dumps({"files": files}, indent=2) + "\n")
    return target


def verify_folder(
    folder: Path, required: tuple[str, ...] = WAN_FILES, hashes: bool = True, model: str = "wan"
) -> dict[str, str]:
    """The manifest's ``{file: sha256}`` once every listed file exists (and, with ``hashes``, matches); ValueError naming the first that does not.

    ``required``: the files model ``model`` reads, which the manifest must list.
    """
    manifest = folder / MANIFEST
    if not manifest.is_file():
        raise ValueError(
            f"{manifest} is missing: it lists the sha256 of every file model {model!r} reads; once "
            "the folder holds files you trust, write it with "
            f"`python -c \"from flashbench.models.wan.model import write_manifest; write_manifest('{folder}')\"`"
        )
    files: Mapping[str, str] = json.loads(manifest.read_text())["files"]
    for name in required:
        if name not in files:
            raise ValueError(
                f"{manifest} does not list {name}; model {model!r} reads {', '.join(required)}; "
                "rewrite the manifest once the file is in place"
            )
    for name, expected in files.items():
        path = folder / name
        if not path.is_file():
            raise ValueError(
                f"model {model!r}'s file {name} is missing from {folder}; put it at {path} (the "
                f"manifest {manifest} lists it with sha256 {expected})"
            )
        found = file_sha256(path) if hashes else expected
        if found != expected:
            raise ValueError(
                f"model {model!r}'s file {path} has sha256 {found}, but {manifest} expects "
                f"{expected}; the file is corrupt or not the one recorded: copy it again"
            )
    return dict(files)


def check_dtype(dtype: str) -> None:
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r} must be one of {', '.join(DTYPES)} (GPUs: bfloat16)")


@torch.no_grad()
def decode_latents(vae: nn.Module, latents: Tensor) -> Tensor:
    """Frames ``[T, 3, H, W]`` in [0, 1] of the first video, de-normalised as Wan's pipelines do before their VAE."""
    config, device = vae.config, vae.device
    mean = torch.tensor(config.latents_mean).view(1, -1, 1, 1, 1).to(device)
    inverse_std = 1.0 / torch.tensor(config.latents_std).view(1, -1, 1, 1, 1).to(device)
    latents = latents[:1].float().to(device) / inverse_std + mean
    video = vae.decode(latents, return_dict=False)[0]
    return ((video[0].transpose(0, 1).float().cpu() + 1) / 2).clamp(0, 1)


def check_wan_args(
    weights: str | None = None, dtype: str = "float32", device: str = "cpu"
) -> ModelSpec:
    """The ``wan`` model's spec, or a ValueError if the folder or options cannot build it.

    Checks that every file is in place; their sha256 are checked when the model loads (hashing a
    14B checkpoint takes minutes, once is enough).
    """
    check_dtype(dtype)
    verify_folder(wan_folder(weights), hashes=False)
    return ModelSpec(WORLD_SPLITS, WanModel.fps, COND_KEYS, resolution_step=RESOLUTION_STEP)


class WanModel(WithoutInstruments):
    """Wan text-to-video from a verified folder: case ``identity`` picks a prompt of ``prompts.safetensors``."""

    name = "wan"
    fps = 16
    splits = WORLD_SPLITS
    cond_keys = COND_KEYS

    def __init__(self, folder: Path, dtype: str = "float32", device: str = "cpu") -> None:
        try:
            from diffusers import AutoencoderKLWan, WanTransformer3DModel
            from safetensors.torch import load_file
        except ImportError as err:
            raise ValueError(
                f"model 'wan' needs diffusers ({err}); pip install 'flashbench[wan]'"
            ) from err

        self.folder = folder
        self.files = verify_folder(folder)
        load = {"torch_dtype": DTYPES[dtype], "local_files_only": True}
        transformer = WanTransformer3DModel.from_pretrained(folder / "transformer", **load)
        self.denoiser = WanDenoiser(transformer.to(device).eval())
        # The VAE decodes in float32: it is a small part of the cost and bfloat16 bands colours.
        self.vae = AutoencoderKLWan.from_pretrained(folder / "vae", local_files_only=True)
        self.vae = self.vae.to(device).eval()
        prompts = load_file(folder / PROMPTS)
        self.prompts, self.negative = prompts["prompt_embeds"], prompts["negative_prompt_embeds"]
        self.device = torch.device(device)

    def latent_shape(self, case: CaseSpec) -> tuple[int, ...]:
        """The latent ``case`` samples, without preparing it (the memory planner's input)."""
        if case.resolution % RESOLUTION_STEP:
            raise ValueError(
                f"resolution={case.resolution} must be a multiple of {RESOLUTION_STEP} for Wan "
                "(8x VAE, 2x2 patches)"
            )
        latent_frames = (case.frames - 1) // TIME_STRIDE + 1
        size = case.resolution // SPACE_STRIDE
        return (1, self.vae.config.z_dim, latent_frames, size, size)

    def prepare(self, case: CaseSpec) -> CaseInputs:
        shape = self.latent_shape(case)
        index = case.identity % len(self.prompts)
        cond = wan_cond(
            self.prompts[index : index + 1].to(self.device), self.negative.to(self.device)
        )
        # Text to video has no reference image; a grey frame keeps the record's shape.
        grey = torch.full((3, case.resolution, case.resolution), 0.5)
        return CaseInputs(cond, shape, grey, ground_truth=None)

    def decode(self, latents: Tensor) -> Tensor:
        return decode_latents(self.vae, latents)

    def weights(self) -> dict[str, str]:
        return dict(self.files)


def load_wan(weights: str | None = None, dtype: str = "float32", device: str = "cpu") -> WanModel:
    """The ``wan`` model (registry entry ``"flashbench.models.wan.model:load_wan"``)."""
    check_dtype(dtype)
    return WanModel(wan_folder(weights), dtype, device)
