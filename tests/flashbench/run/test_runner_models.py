"""Model parameters in suites: one checkpoint per setting (the NFEB ablation), checked at validate time."""

import json

import pytest
import torch

from flashbench.run.rows import read_rows
from flashbench.run.runner import run_suite
from flashbench.suite.document import load_suite, parse_suite

SUITE = """
[suite]
name = "nfeb_tiny"
version = "1"
model = "reference"
steps = 2
seeds = [0]

[cases]
identities = 1
lengths = [4]
resolution = 64

[metrics]
names = ["psnr", "speed"]
references = ["ground_truth", "baseline"]

[[settings]]
name = "paper"
use = "baseline"

[[settings]]
name = "add"
use = "baseline"
model_args = {{ weights = "{weights}", variant = "{variant}" }}
"""


@pytest.fixture(scope="module")
def add_checkpoint(tmp_path_factory):
    """A tiny-config DiT with the `add` NFEB variant (16x16 latents, as the world's autoencoder makes)."""
    from reference_model.dit import PortraitDiT, tiny
    from reference_model.pipeline import export_weights

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("nfeb") / "add" / "dit_tiny.pt"
    export_weights(PortraitDiT(tiny(latent_size=16, variant="add")), path, step=0)
    return path


def test_missing_variant_checkpoint_is_a_validate_time_error_naming_file_and_command(tmp_path):
    missing = tmp_path / "runs" / "nfeb" / "center" / "dit_small.pt"
    text = SUITE.format(weights=missing, variant="center")
    with pytest.raises(ValueError) as info:
        parse_suite(text, "nfeb.toml")
    message = str(info.value)
    assert message.startswith("nfeb.toml: settings[1].model_args: weights file")
    assert str(missing) in message
    assert f"python -m reference_model.train_nfeb {missing.parent.parent}" in message


def test_checkpoint_of_another_variant_is_refused(add_checkpoint):
    with pytest.raises(ValueError, match=r"holds NFEB variant 'add', not 'center'"):
        parse_suite(SUITE.format(weights=add_checkpoint, variant="center"), "nfeb.toml")


def test_unknown_model_parameter_suggests_the_close_one(add_checkpoint):
    text = SUITE.format(weights=add_checkpoint, variant="add").replace("weights =", "weight =")
    with pytest.raises(
        ValueError, match=r"settings\[1\].model_args.weight: .*did you mean 'weights'"
    ):
        parse_suite(text, "nfeb.toml")


def test_variant_checkpoint_loads_and_runs_beside_the_shipped_model(add_checkpoint, tmp_path):
    suite = parse_suite(SUITE.format(weights=add_checkpoint, variant="add"), "nfeb.toml")
    assert suite.model_args_for("add")["variant"] == "add" and suite.model_args_for("paper") == {}
    summary = run_suite(suite, tmp_path / "run", threads=1, progress=False)
    assert (summary.done, summary.failed) == (2, 0)
    rows = read_rows(tmp_path / "run")
    psnr = {(r["setting"], r["reference"]): r["value"] for r in rows if r["metric"] == "psnr"}
    # The untrained variant is far from the shipped model's output and from the ground truth.
    assert psnr[("paper", "ground_truth")] > psnr[("add", "ground_truth")] + 5
    assert ("add", "baseline") in psnr
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    world = ["autoencoder.pt", "expression.pt", "identity.pt"]
    assert list(manifest["model"]["weights"]) == ["dit_small.pt", *world]
    assert list(manifest["model"]["settings"]) == ["add"]
    assert list(manifest["model"]["settings"]["add"]) == ["dit_tiny.pt", *world]
    written = (tmp_path / "run" / "suite.toml").read_text()
    assert "model_args" in written and "dit_tiny.pt" in written


def _keep_suite(model_args: str, keep: str) -> str:
    return (
        SHIPPED_SUITE.format(model_args=model_args) + f"\n[guidance]\nscale = 2.0\nkeep = {keep}\n"
    )


def test_guidance_keep_is_checked_against_the_weights_and_runs(tmp_path):
    from reference_model.dit import PortraitDiT, tiny
    from reference_model.pipeline import export_weights

    torch.manual_seed(0)
    path = tmp_path / "dit_tiny.pt"
    export_weights(PortraitDiT(tiny(latent_size=16, part_dropout=True)), path, step=0)
    args = f'{{ weights = "{path}" }}'
    with pytest.raises(
        ValueError, match=r"guidance\.keep\[1\]: unknown part 'eye'; did you mean 'eyes'"
    ):
        parse_suite(_keep_suite(args, '["pose", "eye"]'), "k.toml")
    with pytest.raises(ValueError, match=r"guidance\.keep\[0\]: 'pose': .*part dropout"):
        parse_suite(_keep_suite("{}", '["pose"]'), "k.toml")
    suite = parse_suite(_keep_suite(args, '["pose"]'), "k.toml")
    assert suite.guidance_of(suite.settings[0]).keep == ("pose",)
    summary = run_suite(suite, tmp_path / "run", threads=1, progress=False)
    assert (summary.done, summary.failed) == (1, 0)
    assert 'keep = ["pose"]' in (tmp_path / "run" / "suite.toml").read_text()


def test_shipped_nfeb_ablation_names_the_five_variants(monkeypatch):
    from flashbench.models import registry as models

    checked = []
    monkeypatch.setitem(models._ARG_CHECKS, "reference", lambda **args: checked.append(args))
    suite = load_suite("nfeb_ablation")
    assert suite.model == "reference" and suite.baseline == "nfeb_paper"
    variants = {suite.model_args_for(s.name)["variant"] for s in suite.settings}
    assert variants == {"paper", "code", "add", "pure_norm", "center"}
    assert {a["weights"] for a in checked} == {f"runs/nfeb/{v}/dit_small.pt" for v in variants}


# ---- the shipped checkpoint: checked by sha256 however it is named, restored when broken ----

SHIPPED_SUITE = """
[suite]
name = "shipped"
version = "1"
model = "reference"
model_args = {model_args}
steps = 2

[cases]
identities = 1
lengths = [4]
resolution = 64

[metrics]
names = ["psnr"]
references = ["ground_truth"]

[[settings]]
use = "baseline"
"""
RESTORE = "git checkout -- reference_model/weights/dit_small.pt"


@pytest.fixture
def shipped_copy(tmp_path, monkeypatch):
    """A copy of the shipped weights folder that the loaders take for the real one; the working directory is its root."""
    import shutil

    from reference_model import pipeline, shipped_weights

    weights = tmp_path / "reference_model" / "weights"
    shutil.copytree(pipeline.WEIGHTS_DIR, weights)
    monkeypatch.setattr(shipped_weights, "WEIGHTS_DIR", weights)
    monkeypatch.setitem(shipped_weights.WORLD_WEIGHTS, "v1", weights)
    monkeypatch.setattr(pipeline, "WEIGHTS_DIR", weights)
    monkeypatch.setattr(pipeline, "DEFAULT_WEIGHTS", weights / "dit_small.pt")
    monkeypatch.setitem(pipeline.WORLD_DITS, "v1", weights / "dit_small.pt")
    monkeypatch.chdir(tmp_path)
    return weights


def _flip_a_bit(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "model_args",
    [
        "{}",
        '{ weights = "reference_model/weights/dit_small.pt" }',
        '{ weights = "reference_model/../reference_model/weights/dit_small.pt" }',
    ],
)
def test_a_bit_flipped_shipped_checkpoint_is_refused_however_it_is_named(
    shipped_copy, write_suite, tmp_path, capsys, model_args
):
    from flashbench.cli.main import main

    _flip_a_bit(shipped_copy / "dit_small.pt")
    text = SHIPPED_SUITE.format(model_args=model_args)
    with pytest.raises(
        ValueError, match=r"dit_small.pt has sha256 .* but dit.json expects"
    ) as info:
        parse_suite(text, "shipped.toml")
    assert RESTORE in str(info.value) and "train_model" not in str(info.value)
    path = write_suite(text, name="shipped")
    assert main(["run", str(path), "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "dit_small.pt has sha256" in err and "\n" not in err
    assert not (tmp_path / "run").exists()


def test_a_relative_path_to_the_shipped_checkpoint_is_verified_when_loading(shipped_copy):
    from reference_model.pipeline import load_reference_model

    _flip_a_bit(shipped_copy / "dit_small.pt")
    with pytest.raises(ValueError, match=RESTORE):
        load_reference_model("reference_model/weights/dit_small.pt")


@pytest.mark.parametrize("damage", ["truncate", "delete"])
def test_a_truncated_or_missing_shipped_checkpoint_says_restore_not_retrain(shipped_copy, damage):
    dit = shipped_copy / "dit_small.pt"
    if damage == "truncate":
        dit.write_bytes(dit.read_bytes()[:1000])
    else:
        dit.unlink()
    with pytest.raises(ValueError) as info:
        parse_suite(SHIPPED_SUITE.format(model_args="{}"), "shipped.toml")
    message = str(info.value)
    assert str(dit) in message and RESTORE in message and "train_model" not in message


@pytest.mark.parametrize("name", ["dit.json", "weights.json"])
def test_a_truncated_weights_manifest_is_an_error_naming_the_file(shipped_copy, name):
    from reference_model.autoencoder import load_autoencoder

    manifest = shipped_copy / name
    manifest.write_text(manifest.read_text()[:40])
    with pytest.raises(
        ValueError,
        match=rf"{name} is not valid JSON .*git checkout -- reference_model/weights/{name}",
    ):
        if name == "dit.json":
            parse_suite(SHIPPED_SUITE.format(model_args="{}"), "shipped.toml")
        else:
            load_autoencoder()
