"""The ``flashportrait`` model of suites: FlashPortrait's released files on diffusers' Wan2.1-I2V (nothing downloads).

Folder (``weights=``, else ``$FLASHBENCH_FLASHPORTRAIT``, else ``~/.cache/flashbench/flashportrait``;
docs/wan.md):

- FlashPortrait's release, as its README lays it out under ``checkpoints/FlashPortrait/``:
  ``transformer.pt``, ``portrait_encoder.pt``, ``pd_fpg.pth`` (the PD-FGC expression
  extractor), ``face_det.onnx`` and ``face_landmark.onnx`` (the driving video's face tracker);
- from the Wan2.1-I2V-14B-720P diffusers snapshot: ``vae/``, ``image_encoder/`` (CLIP) and
  ``image_processor/``;
- ``prompts.safetensors``: umT5 embeddings of the prompts and the negative prompt (no text
  encoder runs here; as the ``wan`` model's);
- ``flashbench-manifest.json``: the sha256 of every file (``flashbench.models.wan.model.write_manifest``).

Cases come from the synthetic world, rendered at the case's resolution: the reference image,
the driving video (tracked, aligned and read by PD-FGC) and, in self-reenactment, the truth.
With ``cases=PATH`` they come from real files instead, one folder per case as FlashPortrait's
``examples/case-N`` (``reference.png``, ``driven_video.mp4``): a case's ``identity`` picks the
reference (folder ``identity % N`` by sorted name), its ``driving_identity`` the driving video;
there is no truth, and the world's instruments are not offered.
The transformer is built on the meta device and takes the released tensors as they are, so
the 14B model is never allocated twice.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from flashbench.models.base import WORLD_SPLITS, CaseInputs, CaseSpec, ModelSpec
from flashbench.models.flashportrait.transformer import (
    CONFIGS,
    FRAMES_PER_LATENT,
    NFEB_VARIANTS,
    PORTRAIT,
    FlashPortraitDenoiser,
    build_flashportrait,
    portrait_cond,
)
from flashbench.models.flashportrait.weights import load_portrait_encoder, load_transformer
from flashbench.models.wan.denoiser import IMAGE, NEGATIVE_PROMPT, PROMPT
from flashbench.models.wan.model import PROMPTS, decode_latents, verify_folder
from flashbench.registry import load_object

ENV = "FLASHBENCH_FLASHPORTRAIT"
DEFAULT_FOLDER = Path("~/.cache/flashbench/flashportrait")
RELEASED_FILES = (
    "transformer.pt",
    "portrait_encoder.pt",
    "pd_fpg.pth",
    "face_det.onnx",
    "face_landmark.onnx",
)
WAN_I2V_FILES = (
    "vae/config.json",
    "image_encoder/config.json",
    "image_processor/preprocessor_config.json",
    PROMPTS,
)
COND_KEYS = (PROMPT, NEGATIVE_PROMPT, IMAGE, PORTRAIT)
# A folder of real cases holds one folder per case, as FlashPortrait's examples/case-N.
REFERENCE, DRIVING = "reference.png", "driven_video.mp4"
# Wan's VAE is 8x in space and the transformer's patches 2x2.
RESOLUTION_STEP = 16
# The synthetic world's cases and instruments, named "module:object" and imported lazily as
# models are, so that flashbench never imports reference_model.
WORLD_CASES = "reference_model.world_cases:render_case"
WORLD_INSTRUMENTS = "reference_model.world_cases:instruments"


def released_folder(weights: str | None = None) -> Path:
    """The model folder; ValueError naming every missing released file and where to put it."""
    folder = Path(weights or os.environ.get(ENV) or DEFAULT_FOLDER).expanduser()
    missing = [name for name in RELEASED_FILES if not (folder / name).is_file()]
    if missing:
        raise ValueError(
            f"FlashPortrait's released files {', '.join(missing)} are missing from {folder}; "
            "download FlashPortrait's checkpoints yourself (its README: "
            f"checkpoints/FlashPortrait/{{{','.join(RELEASED_FILES)}}}) and put them in {folder}, "
            f"or give model_args weights=PATH or ${ENV}; nothing is downloaded here (docs/wan.md)"
        )
    return folder


def model_files(weights: str | None = None, hashes: bool = False) -> tuple[Path, dict[str, str]]:
    """The folder and its manifest's ``{file: sha256}``, once every file the model reads is in place."""
    folder = released_folder(weights)
    return folder, verify_folder(folder, RELEASED_FILES + WAN_I2V_FILES, hashes, "flashportrait")


def case_folders(cases: str) -> list[Path]:
    """The case folders under ``cases``, sorted by name, each holding reference.png and driven_video.mp4."""
    root = Path(cases).expanduser()
    layout = (
        f"a folder of case folders, each holding {REFERENCE} and {DRIVING} (FlashPortrait's "
        "examples/case-N layout)"
    )
    if not root.is_dir():
        raise ValueError(f"cases={cases!r} is not a folder; give {layout}")
    folders = sorted(path for path in root.iterdir() if path.is_dir())
    if not folders:
        raise ValueError(f"cases={cases!r} holds no case folder; give {layout}")
    missing = [
        f"{path.name}/{name}"
        for path in folders
        for name in (REFERENCE, DRIVING)
        if not (path / name).is_file()
    ]
    if missing:
        raise ValueError(f"cases={cases!r} lacks {', '.join(missing)}; give {layout}")
    return folders


def check_flashportrait_args(
    weights: str | None = None,
    variant: str = "code",
    config: str = "wan2.1-i2v-14b-720p",
    device: str = "cpu",
    cases: str | None = None,
) -> ModelSpec:
    """The ``flashportrait`` model's spec, or a ValueError if the folder or options cannot build it (hashes are checked at load)."""
    if variant not in NFEB_VARIANTS:
        raise ValueError(f"variant={variant!r} is not an NFEB variant; use one of {NFEB_VARIANTS}")
    if config not in CONFIGS:
        raise ValueError(f"config={config!r} is unknown; use one of {sorted(CONFIGS)}")
    model_files(weights)
    if cases is not None:
        case_folders(cases)
    # The world's instruments read world faces only; real cases have none.
    provides = () if cases else ("identity_encoder", "expression_extractor", "pose_extractor")
    return ModelSpec(
        WORLD_SPLITS, FlashPortraitModel.fps, COND_KEYS, RESOLUTION_STEP, provides=provides
    )


def video_frames(frames: int) -> int:
    """The frames FlashPortrait generates for a case of ``frames``: 4k + 1, rounded down as the released pipeline rounds."""
    return (frames - 1) // FRAMES_PER_LATENT * FRAMES_PER_LATENT + 1


class FlashPortraitModel:
    """The released FlashPortrait as a layered denoiser (``denoiser``) that prepares world cases as its pipeline does."""

    name = "flashportrait"
    fps = 25
    splits = WORLD_SPLITS
    cond_keys = COND_KEYS

    def __init__(
        self,
        folder: Path,
        files: dict[str, str],
        variant: str,
        config: str,
        device: str,
        cases: str | None = None,
    ) -> None:
        from accelerate import init_empty_weights
        from diffusers import AutoencoderKLWan, WanImageToVideoPipeline
        from safetensors.torch import load_file
        from transformers import CLIPImageProcessor, CLIPVisionModel

        from flashbench.models.flashportrait.face_landmarks import FaceLandmarker
        from flashbench.models.flashportrait.pdfgc import load_pdfgc

        self.folder, self.files, self.device = folder, files, torch.device(device)
        # Parameters empty, for the released tensors to fill; buffers real: the rotary tables
        # are computed, not released.
        with init_empty_weights(include_buffers=False):
            transformer, self.portrait_encoder = build_flashportrait(CONFIGS[config](), variant)
        load = {"map_location": device, "weights_only": True, "mmap": True}
        load_transformer(transformer, torch.load(folder / "transformer.pt", **load))
        load_portrait_encoder(
            self.portrait_encoder, torch.load(folder / "portrait_encoder.pt", **load)
        )
        self.denoiser = FlashPortraitDenoiser(transformer.to(device))
        local = {"local_files_only": True}
        # The VAE and CLIP run once per case and stay in float32, as the pipelines keep them.
        self.pipeline = WanImageToVideoPipeline(
            tokenizer=None,
            text_encoder=None,
            scheduler=None,
            vae=AutoencoderKLWan.from_pretrained(folder / "vae", **local).to(device).eval(),
            image_encoder=CLIPVisionModel.from_pretrained(folder / "image_encoder", **local)
            .to(device)
            .eval(),
            image_processor=CLIPImageProcessor.from_pretrained(folder / "image_processor", **local),
        )
        prompts = load_file(folder / PROMPTS)
        self.prompts, self.negative = prompts["prompt_embeds"], prompts["negative_prompt_embeds"]
        self.landmarker = FaceLandmarker(folder / "face_det.onnx", folder / "face_landmark.onnx")
        self.pdfgc = load_pdfgc(folder / "pd_fpg.pth", device)
        self.cases = None if cases is None else case_folders(cases)
        self._instruments: dict[str, Callable[[Tensor], Tensor]] | None = None

    @torch.no_grad()
    def prepare(self, case: CaseSpec) -> CaseInputs:
        """Reference, driving video (and truth) of a case; the prompt, CLIP tokens, I2V condition and portrait tokens from them."""
        from flashbench.models.flashportrait.pdfgc import driving_features

        if case.resolution % RESOLUTION_STEP:
            raise ValueError(
                f"resolution={case.resolution} must be a multiple of {RESOLUTION_STEP} for "
                "FlashPortrait (8x VAE, 2x2 patches)"
            )
        frames, size = video_frames(case.frames), case.resolution
        if self.cases is None:
            reference, native, truth = load_object(WORLD_CASES)(case, frames)
        else:
            (reference, native), truth = real_case(self.cases, case, frames), None
        # The released pipeline tracks and reads the driving video at its own size.
        features = driving_features(self.pdfgc, native, self.landmarker(native))
        driving = resize(native, size)
        encoder = self.portrait_encoder
        tokens = encoder(features[None].to(self.device, next(encoder.parameters()).dtype))
        index = case.identity % len(self.prompts)
        static = {
            PROMPT: self.prompts[index : index + 1].to(self.device),
            NEGATIVE_PROMPT: self.negative.to(self.device),
            IMAGE: self.pipeline.encode_image(to_uint8(reference), self.device),
        }
        vae, space = self.pipeline.vae, self.pipeline.vae_scale_factor_spatial
        latent_frames = (frames - 1) // FRAMES_PER_LATENT + 1
        shape = (1, vae.config.z_dim, latent_frames, size // space, size // space)
        _, condition = self.pipeline.prepare_latents(
            reference[None].to(self.device) * 2 - 1,
            1,
            vae.config.z_dim,
            size,
            size,
            frames,
            torch.float32,
            self.device,
            latents=torch.zeros(shape),
        )
        cond = portrait_cond(static, tokens.unflatten(1, (frames, -1)), condition)
        return CaseInputs(cond, shape, reference, truth, driving)

    def decode(self, latents: Tensor) -> Tensor:
        return decode_latents(self.pipeline.vae, latents)

    def instrument(self, name: str) -> Callable[[Tensor], Tensor] | None:
        """The world's instrument ``name`` (on frames of any size); real cases have none."""
        if self.cases is not None:
            return None
        if self._instruments is None:
            self._instruments = load_object(WORLD_INSTRUMENTS)()
        return self._instruments[name]

    def identity_encoder(self) -> Callable[[Tensor], Tensor] | None:
        return self.instrument("identity_encoder")

    def expression_extractor(self) -> Callable[[Tensor], Tensor] | None:
        """The world's extractor (eyes, brows, mouth)."""
        return self.instrument("expression_extractor")

    def pose_extractor(self) -> Callable[[Tensor], Tensor] | None:
        return self.instrument("pose_extractor")

    def weights(self) -> dict[str, str]:
        return dict(self.files)


def real_case(folders: list[Path], case: CaseSpec, frames: int) -> tuple[Tensor, Tensor]:
    """Case ``identity``'s reference image at the case's size, and ``frames`` of case ``driving_identity``'s video."""
    import imageio.v3 as iio

    from flashbench.models.video import read_video

    image_path = folders[case.identity % len(folders)] / REFERENCE
    video_path = folders[case.driving_identity % len(folders)] / DRIVING
    image = torch.from_numpy(iio.imread(image_path, mode="RGB").copy()).permute(2, 0, 1)
    reference = resize(image[None].float() / 255, case.resolution)[0]
    driving = read_video(video_path)
    if len(driving) < frames:
        raise ValueError(
            f"{video_path} has {len(driving)} frames; case {case.id} needs {frames}: use a "
            f"length of at most {len(driving)} frames"
        )
    return reference, driving[:frames]


def resize(frames: Tensor, size: int) -> Tensor:
    """``[T, 3, H, W]`` in [0, 1] -> ``size`` x ``size`` (antialiased bicubic; the release resizes with PIL's Lanczos)."""
    if frames.shape[-2:] == (size, size):
        return frames
    return F.interpolate(frames, (size, size), mode="bicubic", antialias=True).clamp(0, 1)


def to_uint8(image: Tensor) -> Tensor:
    """``[3, H, W]`` in [0, 1] -> uint8 ``[H, W, 3]``, what CLIP's image processor takes unrescaled."""
    return (image.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu()


def load_flashportrait(
    weights: str | None = None,
    variant: str = "code",
    config: str = "wan2.1-i2v-14b-720p",
    device: str = "cpu",
    cases: str | None = None,
) -> FlashPortraitModel:
    """The ``flashportrait`` model (registry entry ``"flashbench.models.flashportrait.model:load_flashportrait"``)."""
    check_flashportrait_args(weights, variant, config, device, cases)
    folder, files = model_files(weights, hashes=True)
    return FlashPortraitModel(folder, files, variant, config, device, cases)
