"""The registered ``flashportrait`` model on a tiny folder of random files in the released layouts: cases prepare, sample, decode and run in suites."""

import numpy as np
import pytest
import torch
import wan_models  # noqa: F401  (skips without diffusers)
from onnx_faces import write_detector, write_landmark_net
from safetensors.torch import save_file
from test_flashportrait import TINY, released_transformer
from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel
from wan_models import text_embeddings, tiny_vae

from flashbench.models.base import CaseSpec
from flashbench.models.flashportrait.model import video_frames
from flashbench.models.flashportrait.pdfgc import FanEncoder
from flashbench.models.flashportrait.transformer import PORTRAIT, build_flashportrait
from flashbench.models.registry import models
from flashbench.models.wan.denoiser import CONDITION
from flashbench.models.wan.model import PROMPTS, write_manifest
from flashbench.run.rows import read_rows
from flashbench.run.runner import run_suite
from flashbench.sampling import sample
from flashbench.schedule import flow_match_sigmas
from flashbench.suite.document import parse_suite

# World frames of 160 pixels: the detector's 160 x 272 input holds them unscaled, and the fake
# face box (anchor (80, 128) at stride 16, five strides each side) covers the whole frame, so
# the landmarks span more than the tracker's 96-pixel minimum face.
RESOLUTION = 160
FACE = (16, 8, 5, 0.9, (5, 5, 5, 5))
ARGS = {"config": "tiny"}


def crop_points() -> np.ndarray:
    """[222, 2] landmarks in crop units, level eyes (74, 96), spread over the crop."""
    rng = np.random.default_rng(0)
    pixels = np.column_stack([rng.uniform(10, 118, 222), rng.uniform(10, 118, 222)])
    pixels[74], pixels[96] = (40.0, 50.0), (88.0, 50.0)
    return (pixels / 128).astype(np.float32)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("flashportrait")
    torch.manual_seed(0)
    transformer, encoder = build_flashportrait(TINY, "code")
    torch.save(released_transformer(transformer), folder / "transformer.pt")
    torch.save(encoder.state_dict(), folder / "portrait_encoder.pt")
    torch.save(FanEncoder().state_dict(), folder / "pd_fpg.pth")
    write_detector(folder / "face_det.onnx", [FACE])
    write_landmark_net(folder / "face_landmark.onnx", crop_points())
    tiny_vae().save_pretrained(folder / "vae")
    clip = CLIPVisionConfig(
        hidden_size=TINY.image_dim,
        intermediate_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=32,
        patch_size=8,
    )
    CLIPVisionModel(clip).save_pretrained(folder / "image_encoder")
    CLIPImageProcessor(crop_size=32, size=32).save_pretrained(folder / "image_processor")
    embeddings = {
        "prompt_embeds": text_embeddings(1, batch=2),
        "negative_prompt_embeds": text_embeddings(2),
    }
    save_file(embeddings, folder / PROMPTS)
    write_manifest(folder)
    return folder


@pytest.fixture(scope="module")
def model(folder):
    return models.build("flashportrait", weights=str(folder), **ARGS)


def case(identity: int, driving_identity: int, frames: int = 10) -> CaseSpec:
    reenactment = "self" if identity == driving_identity else "cross"
    return CaseSpec("c", reenactment, identity, driving_identity, 0, frames, RESOLUTION)


def test_a_world_case_prepares_as_the_released_pipeline_and_samples_to_frames(model):
    inputs = model.prepare(case(3, 3, frames=10))
    frames = video_frames(10)
    assert frames == 9  # 4k + 1, rounded down as the released pipeline rounds
    assert inputs.latent_shape == (1, 4, 3, RESOLUTION // 8, RESOLUTION // 8)
    assert inputs.ground_truth.shape == (frames, 3, RESOLUTION, RESOLUTION)
    assert torch.equal(inputs.reference_image, inputs.ground_truth[0])
    assert torch.equal(inputs.driving, inputs.ground_truth)
    cond = inputs.cond
    # 24 tokens per video frame behind three pad frames: 4 per latent frame.
    assert cond.frames_per_latent == 4
    assert cond.temporal[PORTRAIT].shape == (1, 12, 24, TINY.encoder.width)
    assert (
        not cond.temporal[PORTRAIT][:, :3].any()
        and cond.temporal[PORTRAIT][:, 3:].abs().gt(0).all()
    )
    # The I2V condition: the first latent frame's mask is set, the others' clear.
    condition = cond.static[CONDITION]
    assert condition.shape == (1, 3, 4 + 4, RESOLUTION // 8, RESOLUTION // 8)
    assert condition[:, 0, :4].eq(1).all() and condition[:, 1:, :4].eq(0).all()
    assert cond.static["image_embeds"].shape == (1, 17, TINY.image_dim)
    noise = torch.randn(inputs.latent_shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        latents = sample(model.denoiser, noise, flow_match_sigmas(3, 5.0), cond).latents
    video = model.decode(latents)
    assert video.shape == (frames, 3, RESOLUTION, RESOLUTION)
    assert video.isfinite().all() and video.min() >= 0 and video.max() <= 1


def test_cross_reenactment_reads_the_driver_and_keeps_the_reference(model):
    self_case, cross = model.prepare(case(3, 3)), model.prepare(case(3, 5))
    assert torch.equal(cross.reference_image, self_case.reference_image)
    assert torch.equal(cross.ground_truth, self_case.ground_truth)
    assert not torch.equal(cross.driving, self_case.driving)
    # The portrait tokens come from the driving video (through PD-FGC), not the reference.
    tokens = PORTRAIT
    assert not torch.allclose(cross.cond.temporal[tokens], self_case.cond.temporal[tokens])
    assert torch.equal(cross.cond.static[CONDITION], self_case.cond.static[CONDITION])


def test_a_changed_file_is_refused_by_name_before_the_model_loads(folder, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    (copy / PROMPTS).write_bytes((copy / PROMPTS).read_bytes() + b" ")
    with pytest.raises(ValueError, match=rf"{PROMPTS} has sha256 .* expects"):
        models.build("flashportrait", weights=str(copy), **ARGS)


@pytest.mark.parametrize(
    "args, message",
    [
        ({"variant": "sum"}, "not an NFEB variant"),
        ({"config": "wan2.2"}, "config='wan2.2' is unknown"),
    ],
)
def test_bad_model_args_are_refused_with_the_choices(folder, args, message):
    from flashbench.models.flashportrait.model import check_flashportrait_args

    with pytest.raises(ValueError, match=message):
        check_flashportrait_args(str(folder), **args)


@pytest.fixture(scope="module")
def real_cases(tmp_path_factory):
    """Two case folders as FlashPortrait's examples/case-N: a portrait and a 12-frame driving video."""
    import imageio.v3 as iio

    from flashbench.run.files import write_video

    root = tmp_path_factory.mktemp("cases")
    generator = torch.Generator().manual_seed(0)
    for name in ("case-1", "case-2"):
        (root / name).mkdir()
        image = torch.rand(200, 180, 3, generator=generator)
        iio.imwrite(root / name / "reference.png", (image * 255).to(torch.uint8).numpy())
        write_video(root / name / "driven_video.mp4", torch.rand(12, 3, 160, 192), fps=25)
    return root


def test_real_cases_read_the_reference_and_the_drivers_video_and_have_no_truth(folder, real_cases):
    import imageio.v3 as iio

    from flashbench.models.video import read_video

    model = models.build("flashportrait", weights=str(folder), cases=str(real_cases), **ARGS)
    inputs = model.prepare(case(0, 1, frames=11))
    assert inputs.ground_truth is None
    assert inputs.latent_shape == (1, 4, 3, RESOLUTION // 8, RESOLUTION // 8)
    image = torch.from_numpy(iio.imread(real_cases / "case-1" / "reference.png")).float() / 255
    assert inputs.reference_image.shape == (3, RESOLUTION, RESOLUTION)
    # Resized, the reference keeps its mean colour; the driver's video is case-2's, cut to 9 frames.
    torch.testing.assert_close(
        inputs.reference_image.mean((1, 2)), image.mean((0, 1)), atol=0.01, rtol=0
    )
    video = read_video(real_cases / "case-2" / "driven_video.mp4")
    assert inputs.driving.shape == (9, 3, RESOLUTION, RESOLUTION)
    torch.testing.assert_close(
        inputs.driving.mean((1, 2, 3)), video[:9].mean((1, 2, 3)), atol=0.01, rtol=0
    )
    assert model.expression_extractor() is None and model.identity_encoder() is None
    with pytest.raises(ValueError, match="has 12 frames; case c needs 13"):
        model.prepare(case(0, 1, frames=13))


def test_a_case_folder_without_its_video_is_refused_by_name(folder, real_cases, tmp_path):
    import shutil

    from flashbench.models.flashportrait.model import check_flashportrait_args

    shutil.copytree(real_cases, tmp_path / "cases")
    (tmp_path / "cases" / "case-2" / "driven_video.mp4").unlink()
    with pytest.raises(ValueError, match=r"lacks case-2/driven_video\.mp4"):
        check_flashportrait_args(str(folder), cases=str(tmp_path / "cases"))


SUITE = """
[suite]
name = "flashportrait_tiny"
version = "1"
model = "flashportrait"
model_args = {{ weights = "{weights}", config = "tiny" }}
steps = 4
seeds = [0]

[cases]
identities = 1
lengths = [13]
resolution = {resolution}
reenactment = ["self"]

[guidance]
scale = 4.0
drop = ["portrait_tokens"]

[metrics]
names = ["psnr", "aed", "speed"]
references = ["baseline", "ground_truth", "driving"]

[[settings]]
use = "baseline"

[[settings]]
name = "alp"
stepper = "alp"
stepper_args = {{ interval = 2, order = 1 }}

[[settings]]
name = "sliding"
windowing = "sliding"
windowing_args = {{ window = 2, overlap = 1, weighting = "linear" }}
"""


def test_suite_on_the_tiny_flashportrait_runs_every_setting_with_emotion_cfg(folder, tmp_path):
    text = SUITE.format(weights=folder, resolution=RESOLUTION)
    suite = parse_suite(text, "flashportrait_tiny.toml")
    summary = run_suite(suite, tmp_path / "run", threads=1, progress=False)
    assert (summary.done, summary.failed) == (3, 0)
    rows = [r for r in read_rows(tmp_path / "run") if r["metric"] in ("psnr", "aed")]
    settings = {r["setting"] for r in rows}
    assert {"alp", "sliding"} <= settings
    assert all(np.isfinite(r["value"]) for r in rows)
