"""Wall times are benchmark-grade: a warm-up pass, interleaved timed repeats, median and spread in rows, the load in the manifest."""

import itertools
import json

import pytest

from flashbench.run import passes, runner, timing
from flashbench.run.rows import read_rows
from flashbench.run.runner import run_suite
from flashbench.run.timing import Timing, time_interleaved
from flashbench.suite.document import parse_suite


def test_timing_rounds_alternate_their_order_and_report_median_and_iqr(monkeypatch):
    ticks = itertools.count()
    monkeypatch.setattr(timing, "_clock", lambda device: float(next(ticks)) ** 2)
    calls = []
    runs = [lambda name=name: calls.append(name) for name in "abc"]
    timings = time_interleaved(runs, repeats=4)
    # Each call lasts (2k + 1)^2 - (2k)^2 = 4k + 1 ticks, k counting calls in order.
    assert calls == list("abccbaabccba")
    assert timings[0] == Timing.of([1, 21, 25, 45]) and timings[0].repeats == 4
    assert timings[0].median == 23.0 and timings[0].iqr == pytest.approx(30.0 - 16.0)
    assert (timings[1].min, timings[1].median, timings[1].max) == (5.0, 23.0, 41.0)
    assert (timings[2].min, timings[2].max) == (9.0, 37.0)


def test_each_unit_is_sampled_once_then_timed_repeats_times_and_rows_say_so(
    tiny_text, tmp_path, monkeypatch
):
    calls = []
    sample = passes.sample

    def counted(*args, **kwargs):
        result = sample(*args, **kwargs)
        calls.append((kwargs["stepper"], result.flops))
        return result

    monkeypatch.setattr(passes, "sample", counted)
    text = tiny_text.replace("per_frame = [", "timing_repeats = 4\nper_frame = [")
    suite = parse_suite(text, "tiny.toml")
    assert suite.metrics.timing_repeats == 4
    run_suite(suite, tmp_path / "run", progress=False)
    assert len(calls) == 6 * (1 + 4)  # the baseline's latents for the others come from the cache
    rows = [r for r in read_rows(tmp_path / "run") if r["reference"] == ""]
    wall = {(r["case"], r["setting"]): r["value"] for r in rows if r["metric"] == "wall_seconds"}
    iqr = {(r["case"], r["setting"]): r["value"] for r in rows if r["metric"] == "wall_seconds_iqr"}
    assert wall.keys() == iqr.keys() and len(wall) == 6
    assert all(w > 0 and iqr[k] >= 0 for k, w in wall.items())
    # FLOPs are counted in each unit's untimed pass only, and its count is the unit's row.
    counts = [flops for _, flops in calls if flops is not None]
    assert len(counts) == 6 and all(flops > 0 for flops in counts)
    flops = sorted(r["value"] for r in rows if r["metric"] == "flops")
    assert flops == sorted(counts)
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["timing_repeats"] == 4 and manifest["threads"] == 1
    assert manifest["thread_settings"]["torch_threads"] == 1
    assert len(manifest["load_average"]) == 3
    assert "timing_repeats = 4" in (tmp_path / "run" / "suite.toml").read_text()


def test_without_speed_nothing_is_timed_or_counted(tiny_text, tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "time_interleaved", lambda *a, **k: pytest.fail("timed"))
    sample = passes.sample

    def uncounted(*args, **kwargs):
        assert not kwargs["count_flops"], "FLOPs counted for a suite without speed"
        return sample(*args, **kwargs)

    monkeypatch.setattr(passes, "sample", uncounted)
    text = tiny_text.replace('"seam", "speed"]', '"seam"]')
    run_suite(parse_suite(text, "tiny.toml"), tmp_path / "run", progress=False)
    rows = read_rows(tmp_path / "run")
    assert rows and not [r for r in rows if r["metric"] in ("wall_seconds", "flops")]


@pytest.mark.parametrize("repeats", [0, 101, 2.5])
def test_timing_repeats_out_of_range_is_refused(tiny_text, repeats):
    text = tiny_text.replace("per_frame = [", f"timing_repeats = {repeats}\nper_frame = [")
    with pytest.raises(ValueError, match=r"metrics\.timing_repeats"):
        parse_suite(text, "tiny.toml")


def test_a_run_defaults_to_one_torch_thread(tiny_text, tmp_path):
    import torch

    torch.set_num_threads(2)
    run_suite(parse_suite(tiny_text, "tiny.toml"), tmp_path / "run", limit=1, progress=False)
    assert torch.get_num_threads() == 1
    assert json.loads((tmp_path / "run" / "manifest.json").read_text())["threads"] == 1
