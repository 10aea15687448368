"""TeaCache / MagCache calibration: fitted, saved with a fingerprint, refused for another model."""

import argparse
import json

import pytest
import torch
from stepper_models import toy, toy_inputs

from flashbench.cli.calibrate import add_subcommands
from flashbench.planning.calibration import calibrate_magcache, calibrate_teacache
from flashbench.sampling import sample
from flashbench.schedule import flow_match_sigmas
from flashbench.steppers.calibration import load_calibration, model_fingerprint, save_calibration
from flashbench.steppers.magcache import MagCache, magcache
from flashbench.steppers.teacache import teacache


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    model = toy(0)
    runs = [toy_inputs(seed) for seed in range(2)]
    noises, conds = [n for n, _ in runs], [c for _, c in runs]
    sigmas = flow_match_sigmas(12)
    folder = tmp_path_factory.mktemp("calibration")
    tea = save_calibration(
        calibrate_teacache(model, noises, sigmas, conds, name="toy0"), folder / "tea.json"
    )
    mag = save_calibration(
        calibrate_magcache(model, noises, sigmas, conds, name="toy0"), folder / "mag.json"
    )
    return tea, mag


def test_teacache_calibration_is_a_degree_4_fit_with_the_model_fingerprint(files):
    data = json.loads(files[0].read_text())
    assert data["kind"] == "teacache" and data["steps"] == 12
    assert len(data["values"]["coefficients"]) == 5
    assert data["values"]["points"] == 2 * 11
    assert data["fingerprint"] == model_fingerprint(toy(0)) != model_fingerprint(toy(1))


def test_magcache_ratios_are_one_per_step_and_near_one(files):
    ratios = load_calibration(files[1], "magcache").values["ratios"]
    assert len(ratios) == 12 and ratios[0] == 1.0
    assert all(0.5 < r < 2.0 for r in ratios)


@pytest.mark.parametrize("index", [0, 1])
def test_calibrated_steppers_run_on_their_model_and_refuse_another(files, index):
    stepper = (
        teacache(calibration=str(files[0]), threshold=0.3)
        if index == 0
        else magcache(calibration=str(files[1]))
    )
    noise, cond = toy_inputs(7)
    result = sample(toy(0), noise, flow_match_sigmas(12), cond, stepper=stepper)
    assert torch.isfinite(result.latents).all() and result.nfe < 12
    with pytest.raises(ValueError, match=r"fitted on model 'toy0'.*flashbench calibrate"):
        sample(toy(1), noise, flow_match_sigmas(12), cond, stepper=stepper)


def test_a_file_of_the_wrong_kind_or_format_is_refused(files, tmp_path):
    with pytest.raises(ValueError, match="not teacache"):
        teacache(calibration=str(files[1]))
    broken = tmp_path / "broken.json"
    broken.write_text('{"kind": "teacache"}')
    with pytest.raises(ValueError, match="not a flashbench calibration"):
        teacache(calibration=str(broken))
    with pytest.raises(ValueError, match="not both"):
        teacache(calibration=str(files[0]), coefficients=(1.0, 0.0))


def test_magcache_interpolates_ratios_for_another_step_count():
    stepper = MagCache(ratios=(1.0, 0.8, 0.6))
    assert stepper.ratio(0, 5, {}) == 1.0 and stepper.ratio(4, 5, {}) == pytest.approx(0.6)
    assert stepper.ratio(2, 5, {}) == pytest.approx(0.8)


def test_cli_subcommands_write_a_calibration(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    add_subcommands(parser.add_subparsers(dest="command", required=True))
    out = tmp_path / "toy.json"
    args = parser.parse_args(
        [
            "calibrate",
            "teacache",
            "--out",
            str(out),
            "--steps",
            "8",
            "--samples",
            "1",
            "--frames",
            "4",
            "--threads",
            "1",
        ]
    )
    assert args.func(args) == 0
    assert load_calibration(out, "teacache").model == "toy"
    assert "R^2" in capsys.readouterr().out


def test_cli_model_args_reach_the_model_and_bad_ones_are_one_clear_line(tmp_path, capsys):
    from flashbench.cli.main import main

    out = tmp_path / "mag.json"
    common = [
        "--out",
        str(out),
        "--steps",
        "6",
        "--samples",
        "1",
        "--frames",
        "4",
        "--threads",
        "1",
    ]
    assert main(["calibrate", "magcache", "--model-args", '{"depth": 2}', *common]) == 0
    assert load_calibration(out, "magcache").model == "toy"
    written = out.read_bytes()
    assert main(["calibrate", "magcache", *common]) == 2
    assert "exists; flashbench never overwrites" in capsys.readouterr().err
    assert out.read_bytes() == written
    for bad, said in (
        ("[1]", "must be a JSON object"),
        ("{depth: 2}", "is not JSON"),
        ('{"dept": 2}', "did you mean 'depth'"),
    ):
        fresh = ["--out", str(tmp_path / "other.json"), *common[2:]]
        assert main(["calibrate", "magcache", "--model-args", bad, *fresh]) == 2
        err = capsys.readouterr().err.strip()
        assert said in err and "\n" not in err
