"""The plan before the run: units that the memory planner says do not fit are refused before any file."""

from dataclasses import replace

import pytest
import torch

from flashbench.cli.main import main
from flashbench.models.registry import models
from flashbench.planning.memory import PlannedModel, plan
from flashbench.run import fits
from flashbench.run.fits import Memory, check_fits, unplanned_reason
from flashbench.run.plan import plan_run, suite_models
from flashbench.suite.document import parse_suite

# 100,000 frames (the longest a suite allows) at 4096 pixels: tens of TB on any machine.
ABSURD = {"lengths = [6]": "lengths = [100000]", "resolution = 16": "resolution = 4096"}


@pytest.fixture
def absurd_path(tiny_text, write_suite):
    for old, new in ABSURD.items():
        assert old in tiny_text
        tiny_text = tiny_text.replace(old, new)
    return write_suite(tiny_text, "absurd")


def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err, err
    return err


def test_validate_refuses_a_suite_whose_units_do_not_fit(absurd_path, capsys):
    assert main(["validate", str(absurd_path)]) == 2
    err = one_line(capsys)
    assert f"{absurd_path}: unit self_id10544_drv0_100000f__baseline__seed0 does not fit" in err
    assert "100000 frames at 4096px" in err and "GiB available" in err and "cpu has" in err


def test_run_refuses_a_suite_whose_units_do_not_fit_and_writes_nothing(
    absurd_path, tmp_path, capsys
):
    out = tmp_path / "run"
    assert main(["run", str(absurd_path), "--out", str(out), "--no-progress"]) == 2
    err = one_line(capsys)
    assert err.startswith(f"flashbench run: error: {absurd_path}: unit ") and "does not fit" in err
    assert not out.exists()


def test_peak_times_processes_must_fit_the_shared_cpu_memory(tiny_text):
    suite = parse_suite(tiny_text, "tiny.toml")
    setting_models = suite_models(suite)
    run_plan = plan_run(suite, setting_models[suite.baseline])
    peak, notes = check_fits(run_plan, setting_models, Memory("cpu", 2**50))
    assert peak > 0 and notes == []
    check_fits(run_plan, setting_models, Memory("cpu", peak, processes=1))
    with pytest.raises(ValueError, match=r"GiB x 2 processes .* but cpu has"):
        check_fits(run_plan, setting_models, Memory("cpu", peak, processes=2))
    with pytest.raises(ValueError, match="does not fit"):
        check_fits(run_plan, setting_models, Memory("cuda:0", peak - 1))


@pytest.mark.parametrize("setting", ["baseline", "sliding_w3"])
@pytest.mark.parametrize("frames", [1, 6, 11])
def test_plan_from_latent_shape_equals_the_plan_of_the_prepared_case(tiny_text, setting, frames):
    """The check plans from ``latent_shape`` and a stretched one-frame conditioning, without
    preparing the case: the same plan as from the whole prepared case."""
    suite = parse_suite(tiny_text.replace("lengths = [6]", f"lengths = [{frames}]"), "tiny.toml")
    setting_models = suite_models(suite)
    run_plan = plan_run(suite, setting_models[suite.baseline], limit=1)
    only = replace(run_plan, settings=(run_plan.setting(setting),))
    only = replace(
        only,
        cases=tuple(
            (case, tuple(u for u in units if u.setting.name == setting))
            for case, units in run_plan.cases
        ),
    )
    (unit,) = only.units
    model = setting_models[setting]
    inputs = model.prepare(unit.case)
    full = PlannedModel("toy", model.denoiser, inputs.latent_shape, torch.float32, inputs.cond)
    expected = plan(full, unit.setting, suite.steps, guided=False).total
    assert check_fits(only, setting_models, Memory("cpu", 2**50))[0] == expected


def test_models_without_a_plan_are_named_and_not_refused(capsys):
    assert unplanned_reason(models.build("toy")) is None
    assert "declares no latent_shape" in unplanned_reason(models.build("gmm"))
    assert main(["validate", "exact_ode"]) == 0
    printed = capsys.readouterr().out
    assert "memory not planned: model 'gmm' declares no latent_shape(case)" in printed


def test_a_gpu_run_on_a_machine_without_enough_gpus_is_one_line(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="no CUDA GPU is available here; use --accelerator cpu"):
        fits.run_memory("gpu", 2)


def test_a_setting_the_planner_cannot_see_is_named_and_not_refused(tiny_text):
    text = tiny_text + '\n[[settings]]\nname = "fbc"\nstepper = "diffusers_cache"\n'
    suite = parse_suite(text, "tiny.toml")
    setting_models = suite_models(suite)
    run_plan = plan_run(suite, setting_models[suite.baseline])
    peak, notes = check_fits(run_plan, setting_models, Memory("cpu", 2**50))
    assert peak > 0
    assert len(notes) == 1 and notes[0].startswith("setting 'fbc': memory not planned (")
