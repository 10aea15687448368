"""The ``wan`` suite model loads a sha256-checked local folder and refuses a wrong one by name."""

import json

import pytest
import torch
from safetensors.torch import save_file
from wan_models import TEXT_DIM, noise, text_embeddings, tiny_transformer, tiny_vae

from flashbench.models.base import CaseSpec
from flashbench.models.registry import check_model_args, models
from flashbench.models.wan.denoiser import PROMPT
from flashbench.models.wan.model import ENV, MANIFEST, PROMPTS, write_manifest

CASE = CaseSpec(
    "c0", "self", identity=10_501, driving_identity=10_501, driving_seed=0, frames=9, resolution=32
)


@pytest.fixture
def folder(tmp_path):
    """A diffusers-format folder of a tiny random transformer and VAE, with prompts and manifest."""
    tiny_transformer(seed=5).save_pretrained(tmp_path / "transformer")
    tiny_vae().save_pretrained(tmp_path / "vae")
    save_file(
        {
            "prompt_embeds": torch.cat([text_embeddings(1), text_embeddings(2)]),
            "negative_prompt_embeds": text_embeddings(3),
        },
        tmp_path / PROMPTS,
    )
    write_manifest(tmp_path)
    return tmp_path


def test_wan_loaded_from_folder_equals_the_saved_transformer(folder):
    model = models.build("wan", weights=str(folder))
    original = tiny_transformer(seed=5)
    inputs = model.prepare(CASE)
    assert inputs.latent_shape == (1, 4, 3, 4, 4)
    # identity 10_501 picks prompt 10_501 % 2 = 1: text_embeddings(2).
    assert torch.equal(inputs.cond.static[PROMPT], text_embeddings(2))
    x, sigma = noise(0, frames=3), torch.tensor([0.6])
    with torch.no_grad():
        expected = original(x, sigma * 1000, text_embeddings(2), return_dict=False)[0]
        assert torch.equal(model.denoiser(x, sigma, inputs.cond), expected)
    frames = model.decode(x)
    assert frames.shape == (9, 3, 32, 32)
    assert frames.min() >= 0 and frames.max() <= 1
    assert model.weights() == json.loads((folder / MANIFEST).read_text())["files"]
    assert check_model_args("wan", {"weights": str(folder)}).cond_keys == model.cond_keys


def test_wan_folder_comes_from_the_environment(folder, monkeypatch):
    monkeypatch.setenv(ENV, str(folder))
    assert models.build("wan").folder == folder


def test_missing_file_is_named_with_where_to_put_it(folder):
    (folder / "vae" / "config.json").unlink()
    with pytest.raises(ValueError, match=r"vae/config\.json is missing.*put it at"):
        check_model_args("wan", {"weights": str(folder)})


def test_corrupted_file_is_refused_by_its_sha256(folder):
    weights = next((folder / "transformer").glob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    # Presence is enough for the suite check; loading hashes every file.
    check_model_args("wan", {"weights": str(folder)})
    with pytest.raises(ValueError, match=rf"{weights.name} has sha256 .* expects"):
        models.build("wan", weights=str(folder))


def test_missing_manifest_or_folder_says_how_to_make_it(folder, tmp_path_factory):
    (folder / MANIFEST).unlink()
    with pytest.raises(ValueError, match="write_manifest"):
        models.build("wan", weights=str(folder))
    empty = tmp_path_factory.mktemp("absent") / "wan"
    with pytest.raises(ValueError, match=f"does not exist.*{ENV}"):
        models.build("wan", weights=str(empty))


def test_bad_dtype_is_refused_with_the_choices(folder):
    with pytest.raises(ValueError, match="bfloat16"):
        check_model_args("wan", {"weights": str(folder), "dtype": "fp8"})


def test_prompt_width_matches_the_tiny_transformer():
    assert tiny_transformer().config.text_dim == TEXT_DIM
