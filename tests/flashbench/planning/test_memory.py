import json
from dataclasses import replace

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensor
from torch.profiler import ProfilerActivity, profile

from flashbench.cli.main import main
from flashbench.models.registry import models
from flashbench.planning.memory import LiveBytes, plan, planned_model
from flashbench.sampling import Guidance, sample
from flashbench.schedule import flow_match_sigmas
from flashbench.settings import Setting, settings, steppers

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


def test_wan_14b_plans_on_fake_tensors_with_its_published_size():
    model = planned_model("wan2.1-14b", 81, 480, 832)
    assert model.latent_shape == (1, 16, 21, 60, 104)
    # Shapes without storage: nothing of the 14B is allocated.
    assert all(isinstance(p, FakeTensor) for p in model.denoiser.parameters())
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


def test_live_bytes_counts_each_allocation_once_and_releases_it_at_its_last_reference():
    base = torch.zeros(256)  # allocated before: never counted, nor are its views
    with LiveBytes() as live:
        a = base + 1  # 1 KiB
        view = a[:128]  # a view allocates nothing
        b = a * 2
        assert live.live == 2048
        del a
        assert live.live == 2048  # the view keeps a's storage
        del view
        assert live.live == 1024
        c = b.view(16, 16) + base[:16]
        del b
        assert live.live == 1024 and live.peak == 2048
        d = torch.cat([c, c, c])  # 3 KiB beside c
    assert live.peak == 4096 and d.numel() == 768


def _measured_working_set(model, setting, steps):
    """Peak bytes of CPU tensors allocated while sampling (the noise included, the weights not)."""
    stepper, windowing, _ = setting.build()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as profiler:
        noise = torch.randn(model.latent_shape, generator=torch.Generator().manual_seed(0))
        sample(model.denoiser, noise, flow_match_sigmas(steps), model.cond,
               stepper=stepper, windowing=windowing, guidance=Guidance(4.0))  # fmt: skip
    events = profiler.profiler.kineto_results.events()
    live = peak = 0
    for _, change in sorted((e.start_ns(), e.nbytes()) for e in events if e.name() == "[memory]"):
        live += change
        peak = max(peak, live)
    return peak


@pytest.mark.parametrize("frames", [8, 16, 24])
@pytest.mark.parametrize("name", ["baseline", "alp_k5", "sliding"])
def test_reference_plan_is_within_5_percent_of_the_measured_peak(name, frames):
    # The activation estimate this replaced (latent + velocity + 2 h + 2 widest linear outputs)
    # undercounted these by up to 21%; the tracked peak leaves out only kernels' own workspaces.
    torch.set_num_threads(1)
    model = planned_model("reference", frames, 64, 64)
    planned = plan(model, settings.get(name), 4, guided=True)
    measured = _measured_working_set(model, settings.get(name), 4)
    assert measured == pytest.approx(planned.total - planned.weights, rel=0.05)


@pytest.mark.parametrize("name", ["alp_k5", "alp_k5_stack", "taylorseer_n5_o1"])
def test_a_caching_steppers_memory_grows_with_the_videos_length_under_sliding_windows(toy, name):
    windowed = replace(
        settings.get(name), windowing="sliding", windowing_args={"window": 4, "overlap": 2}
    )
    plans, peaks = [], []
    for frames in (8, 16, 32):
        model = planned_model("toy", frames, SIZE, SIZE)
        plans.append(plan(model, windowed, STEPS, guided=True))
        stepper, windowing, _ = windowed.build()
        noise = torch.randn(model.latent_shape, generator=torch.Generator().manual_seed(0))
        peaks.append(sample(model.denoiser, noise, flow_match_sigmas(STEPS), model.cond,
                            stepper=stepper, windowing=windowing, guidance=Guidance(4.0)))  # fmt: skip
    # Each window keeps its own cache (sample's caches per (window, branch)): the planned cache is
    # the sampled one, one window's worth per live window, growing with the video.
    assert [p.cache for p in plans] == [r.peak_cache_bytes for r in peaks]
    assert all(p.cache == p.cache_per_window * p.windows for p in plans)
    assert plans[0].windows < plans[1].windows < plans[2].windows
    assert plans[0].cache < plans[1].cache < plans[2].cache
    assert all(p.as_dict()["cache_grows_with_length"] for p in plans)
    # The activations are bounded by the window, whatever the length.
    assert len({p.activations for p in plans}) == 1
    full = plan(planned_model("toy", 32, SIZE, SIZE), settings.get(name), STEPS, guided=True)
    assert not full.cache_grows_with_length and full.windows == 1


def test_wan_i2v_14b_plans_its_image_tokens_and_condition_channels():
    model = planned_model("wan2.1-i2v-14b", 5, 480, 832)
    assert model.cond.static["image_embeds"].shape == (1, 257, 1280)
    assert model.cond.temporal["condition"].shape == (1, 2, 20, 60, 104)
    t2v = plan(planned_model("wan2.1-14b", 5, 480, 832), Setting("baseline"))
    i2v = plan(model, Setting("baseline"))
    # The image projection and each block's image key/value projections (2 x 5120^2 per block).
    assert i2v.weights - t2v.weights > 40 * 2 * 5120 * 5120 * 2


def test_wan_activations_hold_no_tokens_by_tokens_attention_matrix():
    # A fused attention kernel (the GPU's, the CPU's) keeps no 32,760 x 32,760 score matrix per
    # head (26 GB in bf16 at 12 heads); the meta device's math path would, so Wan is planned on
    # fake CPU tensors.
    model = planned_model("wan2.1-1.3b", 81, 480, 832)
    planned = plan(model, Setting("baseline"), 4)
    tokens, width = 21 * 30 * 52, 1536
    assert 4 * tokens * width * 2 < planned.activations < 2 * 2**30
