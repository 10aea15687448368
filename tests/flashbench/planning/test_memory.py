import json

import pytest
import torch

from flashbench.cli.main import main
from flashbench.models.registry import models
from flashbench.planning.memory import plan, planned_model
from flashbench.sampling import sample
from flashbench.schedule import flow_match_sigmas
from flashbench.settings import Setting, steppers

STEPS = 8
FRAMES, SIZE = 10, 16
WINDOWINGS = {
    "full": ("full", {}),
    # A shifting grid keeps the old grid's caches until the step ends: the planner must too.
    "sliding_shift": ("sliding", {"window": 4, "overlap": 1, "shift": 1}),
}


def _examples() -> list[tuple[str, dict]]:
    return [
        (f"{name}-{label}", name, dict(params))
        for name in steppers.names()
        for label, params in type(steppers.build(name)).facts(STEPS).examples.items()
        # diffusers' own caches run only on a diffusers transformer (tests/wan).
        if not type(steppers.build(name)).facts(STEPS).diffusers
    ]


@pytest.fixture(scope="module")
def toy():
    return planned_model("toy", FRAMES, SIZE, SIZE)


@pytest.mark.parametrize("guided", [False, True], ids=["unguided", "cfg"])
@pytest.mark.parametrize("windowing", sorted(WINDOWINGS))
@pytest.mark.parametrize(("label", "name", "params"), _examples(), ids=lambda v: str(v))
def test_planned_cache_equals_sampled_peak_cache_bytes(toy, label, name, params, windowing, guided):
    kind, windowing_args = WINDOWINGS[windowing]
    setting = Setting(label, name, params, kind, windowing_args, 4.0 if guided else None)
    stepper, windows, guidance = setting.build()
    noise = torch.randn(toy.latent_shape, generator=torch.Generator().manual_seed(0))
    result = sample(
        toy.denoiser,
        noise,
        flow_match_sigmas(STEPS),
        toy.cond,
        stepper=stepper,
        windowing=windows,
        guidance=guidance,
    )
    planned = plan(toy, setting, STEPS)
    assert planned.cache == result.peak_cache_bytes
    assert planned.branches == (2 if guided else 1)


def test_planned_weights_equal_the_built_models_parameter_bytes(toy):
    built = models.build("toy").denoiser
    expected = sum(p.numel() * p.element_size() for p in built.parameters())
    assert plan(toy, Setting("baseline")).weights == expected > 0


def test_alp_cache_is_order_plus_one_copies_of_every_block_output(toy):
    planned = plan(toy, Setting("alp", "alp", {"order": 3}, guidance_scale=4.0))
    hidden = FRAMES * (SIZE // 4) ** 2 * 32 * 4  # toy: one dim-32 float32 token per latent pixel
    assert (planned.cache_per_block, planned.cache_blocks, planned.cache_factors) == (hidden, 3, 4)
    assert planned.cache == 2 * (12 * hidden + planned.cache_other)


def test_wan_14b_plans_on_the_meta_device_with_its_published_size():
    model = planned_model("wan2.1-14b", 81, 480, 832)
    assert model.latent_shape == (1, 16, 21, 60, 104)
    assert all(p.device.type == "meta" for p in model.denoiser.parameters())
    planned = plan(model, Setting("alp", "alp", {"order": 3}))
    # 14B parameters, mostly bf16; 21 x 30 x 52 tokens of width 5120 per block copy.
    assert 13.5e9 < planned.weights / 2 < 15e9
    assert planned.cache_per_block == 21 * 30 * 52 * 5120 * 2
    assert (planned.cache_blocks, planned.cache_factors) == (40, 4)


def test_cli_memory_prints_a_row_per_setting_and_json_totals(capsys):
    argv = ["memory", "--model", "toy", "--frames", "8", "--size", "16x16"]
    assert main([*argv, "--setting", "baseline", "alp_k5", "--unit", "KiB"]) == 0
    out = capsys.readouterr().out
    assert "not measured" in out
    assert out.count("\nbaseline ") == 1 and out.count("\nalp_k5 ") == 1
    # A repeated --setting adds to the list instead of replacing it; none means the baseline.
    assert main([*argv, "--setting", "baseline", "--setting", "alp_k5"]) == 0
    out = capsys.readouterr().out
    assert out.count("\nbaseline ") == 1 and out.count("\nalp_k5 ") == 1
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.count("\nbaseline ") == 1 and "alp_k5" not in out
    assert main([*argv, "--setting", "alp_k5", "--json", "--guided"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    # ALP updates its cache in place between blocks: the peak is inside a block or at the update.
    at_update = row["activations"] - row["block_intermediates"] + row["transient"]
    fixed = row["weights"] + row["latents"] + row["cache"]
    assert row["total"] == fixed + max(row["activations"], at_update)
    assert 0 < row["block_intermediates"] < row["activations"]
    assert row["branches"] == 2 and row["cache"] > 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "toy", "--frames", "8", "--size", "16"], "HEIGHTxWIDTH"),
        (["--model", "toy", "--frames", "8", "--size", "16x12"], "square"),
        (["--model", "tyo", "--frames", "8", "--size", "16x16"], "did you mean 'toy'"),
        (["--model", "wan2.1-14b", "--frames", "80", "--size", "480x832"], "4k + 1"),
        (["--model", "wan2.1-14b", "--frames", "81", "--size", "480x830"], "multiples of 16"),
    ],
)
def test_cli_memory_refuses_bad_input_in_one_line(capsys, args, message):
    assert main(["memory", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


@pytest.mark.parametrize("name", ["diffusers_cache", "cache_dit"])
def test_the_ecosystems_caches_are_refused_with_how_to_measure_them(name):
    from flashbench.steppers.base import Features

    features = Features(2, 64, 16, 64, 64, None, 4, 4)
    with pytest.raises(ValueError, match=rf"cannot plan stepper '{name}'.*flashbench run"):
        steppers.build(name).cache_layout(features)
