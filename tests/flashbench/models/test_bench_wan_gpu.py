"""benchmarks/bench_wan_gpu.py end to end on the CPU at tiny shapes: every setting measured, sane fields, no overwrite."""

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
import torch
import wan_models  # noqa: F401  (skips without diffusers)

from flashbench.sampling import sample
from flashbench.schedule import flow_match_sigmas

SCRIPT = Path(__file__).parents[3] / "benchmarks" / "bench_wan_gpu.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_wan_gpu", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench():
    return load_bench()


@pytest.fixture(scope="module")
def report(bench, tmp_path_factory):
    out = tmp_path_factory.mktemp("wan_gpu")
    torch.set_num_threads(1)
    assert bench.main(["--tiny", "--device", "cpu", "--out", str(out)]) == 0
    data = json.loads((out / bench.JSON_NAME).read_text())
    return out, data, (out / bench.MARKDOWN_NAME).read_text()


def rows_by_setting(section):
    rows = {}
    for row in section["rows"]:
        rows.setdefault(row["setting"], []).append(row)
    return rows


@pytest.mark.slow
def test_every_section_measures_every_setting_with_sane_fields(bench, report):
    _, data, text = report
    assert [s["name"] for s in data["sections"]] == [s.name for s in bench.TINY_SECTIONS]
    assert "say nothing about quality" in data["note"] and data["note"] in text
    assert data["complete"] and "Incomplete" not in text
    for spec, section in zip(bench.TINY_SECTIONS, data["sections"], strict=True):
        rows = rows_by_setting(section)
        assert list(rows) == list(spec.settings)
        lengths = spec.lengths or (spec.frames,)
        for name, runs in rows.items():
            assert [r["frames"] for r in runs] == list(lengths)
            assert f"| {name} |" in text
            for row in runs:
                assert row["status"] == "ok"
                assert row["seconds_median"] > 0 and row["step_seconds"] > 0
                assert sum(a["steps"] for a in row["per_action"].values()) == row["steps"]
                assert 0 < row["full_passes"] <= sum(row["calls"].values())
                assert row["flops"] > 0 and row["wall_efficiency"] > 0
                assert row["peak_bytes"] is None  # no CUDA: no device peak
                if row["plan"] is not None:  # diffusers' caches cannot be planned
                    assert row["cache_bytes"] == row["plan"]["cache"]
                    assert row["plan"]["total"] > row["plan"]["weights"] > 0
        for baseline in rows["baseline"]:
            assert baseline["speedup"] == baseline["flop_ratio"] == 1.0
            assert baseline["full_passes"] == 2 * spec.steps * baseline["windows"]
        # Fewer passes, fewer counted FLOPs: the forecasters skip every block of a predicted call.
        for alp, baseline in zip(rows["alp_k5"], rows["baseline"], strict=True):
            assert alp["full_passes"] < baseline["full_passes"]
            assert alp["flop_ratio"] > 1


@pytest.mark.slow
def test_alp_memory_grows_with_the_videos_length_under_sliding_windows(report):
    _, data, _ = report
    section = next(s for s in data["sections"] if s["windowing"] != "full")
    rows = rows_by_setting(section)
    alp = rows["alp_k5"]
    windows = [r["windows"] for r in alp]
    caches = [r["cache_bytes"] for r in alp]
    assert windows == sorted(windows) and windows[0] < windows[-1]
    assert caches == sorted(caches) and caches[0] < caches[-1]
    # Each live window keeps its own cache for each branch: the cache scales with the window count.
    per_window = {c / w for c, w in zip(caches, windows, strict=True)}
    assert len(per_window) == 1
    assert all(r["cache_bytes"] == 0 for r in rows["baseline"])


@pytest.mark.slow
def test_counted_flops_equal_sample_count_flops_over_the_whole_sample(bench, report):
    _, data, _ = report
    spec = bench.TINY_SECTIONS[0]
    transformer = bench.build_transformer(bench.transformer_config(spec.model, tiny=True), "cpu")
    model = bench.WanDenoiser(transformer)
    shape, cond = bench.video_inputs(transformer, spec.frames, spec.height, spec.width, "cpu", True)
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    rows = rows_by_setting(data["sections"][0])
    names = (
        "baseline",
        "alp_k5",
        "fbcache_0p05",
        "magcache_wan",
        "diffusers_magcache_wan",
        "fora_n3",
    )
    for setting in bench.setting_list(names, bench.published_ratios(spec.magcache), {}):
        stepper, windowing, _ = setting.build()
        result = sample(model, noise, flow_match_sigmas(spec.steps, shift=5.0), cond,
                        stepper=stepper, windowing=windowing, guidance=bench.GUIDANCE,
                        count_flops=True)  # fmt: skip
        counted = rows[setting.name][0]["flops"]
        if setting.stepper == "alp":
            # The bench counts the denoiser's parts; ALP's forecast combines its 4 factors (order
            # 3) with a matmul of its own, 2 x 4 FLOPs per element of each block's h, which
            # count_flops also sees.
            config = transformer.config
            forecasts = rows[setting.name][0]["calls"]["predict"]
            tokens = math.prod(shape[2:]) // 4  # 2 x 2 patches
            hidden = tokens * config.num_attention_heads * config.attention_head_dim
            assert result.flops - counted == forecasts * config.num_layers * 2 * 4 * hidden
        else:
            assert counted == result.flops > 0


def test_refuses_to_overwrite_an_existing_result(bench, tmp_path):
    kept = tmp_path / bench.MARKDOWN_NAME
    kept.write_text("mine")
    with pytest.raises(SystemExit, match="exists"):
        bench.main(["--tiny", "--device", "cpu", "--out", str(tmp_path)])
    assert kept.read_text() == "mine"


def test_refuses_real_sizes_off_a_gpu(bench, tmp_path):
    with pytest.raises(SystemExit, match="--tiny"):
        bench.main(["--device", "cpu", "--out", str(tmp_path)])
    assert not any(tmp_path.iterdir())
