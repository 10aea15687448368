"""Model parameters in suites: one checkpoint per setting (the NFEB ablation), checked at validate time."""

import json

import pytest
import torch

from flashbench.runner import read_rows, run_suite
from flashbench.suite import load_suite, parse_suite

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
    assert (
        f"python -m reference_model.train_model --config small --nfeb center --out {missing.parent}"
        in message
    )


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


def test_shipped_nfeb_ablation_names_the_five_variants(monkeypatch):
    from flashbench import models

    checked = []
    monkeypatch.setitem(models._ARG_CHECKS, "reference", lambda **args: checked.append(args))
    suite = load_suite("nfeb_ablation")
    assert suite.model == "reference" and suite.baseline == "nfeb_paper"
    variants = {suite.model_args_for(s.name)["variant"] for s in suite.settings}
    assert variants == {"paper", "code", "add", "pure_norm", "center"}
    assert {a["weights"] for a in checked} == {f"runs/nfeb/{v}/dit_small.pt" for v in variants}
