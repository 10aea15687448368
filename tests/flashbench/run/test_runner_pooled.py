"""Pooled metrics (FVD, FID): one row per setting, metric and reference, deterministic and resumable."""

import json

import pytest

from flashbench.run.measure import Measurer
from flashbench.run.rows import read_rows
from flashbench.run.runner import run_suite
from flashbench.suite.document import parse_suite
from metrics.fid import FrechetInceptionDistance
from metrics.fvd import FrechetVideoDistance

_BUILD = Measurer._build


def _small_backends(self, name, backend):
    """Mean colours stand in for I3D and Inception: the pooling, files and resume are what is tested."""
    if name == "fvd":
        features = lambda clips: clips.mean(dim=(3, 4)).flatten(1)  # noqa: E731
        return FrechetVideoDistance(feature=features, num_features=48, sync_on_compute=False)
    if name == "fid":
        features = lambda images: images.mean(dim=(2, 3))  # noqa: E731
        return FrechetInceptionDistance(feature=features, num_features=3, sync_on_compute=False)
    return _BUILD(self, name, backend)


@pytest.fixture
def pooled_text(tiny_text):
    return (
        tiny_text.replace("lengths = [6]", "lengths = [16]")
        .replace('names = ["psnr",', 'names = ["fvd", "fid", "psnr",')
        .replace('reenactment = ["self", "cross"]', 'reenactment = ["self"]')
        .replace("driving_seeds = [0]", "driving_seeds = [0, 1, 2]")
        .replace('"windowing.window" = [3, 4]', '"windowing.window" = [4]')
    )


@pytest.fixture
def small_backends(monkeypatch):
    monkeypatch.setattr(Measurer, "_build", _small_backends)


def pooled(rows):
    return [r for r in rows if r["case"] == "*"]


def test_pooled_rows_are_one_per_setting_metric_and_reference(
    pooled_text, small_backends, tmp_path
):
    from reports.load import load_run

    suite = parse_suite(pooled_text, "pooled.toml")
    run_suite(suite, tmp_path / "a", threads=1, progress=False)
    rows = pooled(read_rows(tmp_path / "a"))
    keys = sorted((r["setting"], r["metric"], r["reference"]) for r in rows)
    assert keys == [
        ("baseline", "fid", "ground_truth"),
        ("baseline", "fvd", "ground_truth"),
        ("sliding_w4", "fid", "baseline"),
        ("sliding_w4", "fid", "ground_truth"),
        ("sliding_w4", "fvd", "baseline"),
        ("sliding_w4", "fvd", "ground_truth"),
    ]
    # 3 driving seeds x 1 sampling seed = 3 videos pooled per setting.
    assert {(r["seed"], r["samples"], r["frame"], r["frames"]) for r in rows} == {(-1, 3, None, 16)}
    # Windows change the video a little: far closer to the baseline than to the ground truth.
    value = {(r["setting"], r["metric"], r["reference"]): r["value"] for r in rows}
    for metric in ("fvd", "fid"):
        assert (
            value[("sliding_w4", metric, "baseline")]
            < value[("sliding_w4", metric, "ground_truth")]
        )
    assert all(r["value"] >= 0 for r in rows)
    # Reports read them like any row.
    frame = load_run(tmp_path / "a").rows
    fvd = frame[frame["metric"] == "fvd"]
    assert set(fvd["case"]) == {"*"} and set(fvd["seed"]) == {-1}
    assert set(fvd["unit_id"]) == {"pooled__baseline", "pooled__sliding_w4"}
    # Rerun into a fresh directory: the same pooled values, bit for bit.
    run_suite(suite, tmp_path / "b", threads=1, progress=False)
    assert pooled(read_rows(tmp_path / "b")) == rows


def test_resume_recomputes_pooled_rows_when_units_are_added(pooled_text, small_backends, tmp_path):
    suite = parse_suite(pooled_text, "pooled.toml")
    out = tmp_path / "run"
    run_suite(suite, out, limit=2, threads=1, progress=False)
    path = out / "rows" / "pooled__sliding_w4.json"
    first = json.loads(path.read_text())
    assert len(first["units"]) == 2 and {r["samples"] for r in first["rows"]} == {2}
    run_suite(suite, out, resume=True, threads=1, progress=False)
    second = json.loads(path.read_text())
    assert len(second["units"]) == 3 and {r["samples"] for r in second["rows"]} == {3}
    # Nothing changed: the pooled file is left as it is.
    stamp = path.stat().st_mtime_ns
    run_suite(suite, out, resume=True, threads=1, progress=False)
    assert path.stat().st_mtime_ns == stamp
    assert [r["value"] for r in second["rows"]] != [r["value"] for r in first["rows"]]


def test_fvd_on_clips_shorter_than_its_protocol_is_refused_before_any_unit(
    pooled_text, small_backends, tmp_path
):
    suite = parse_suite(pooled_text.replace("lengths = [16]", "lengths = [6]"), "short.toml")
    with pytest.raises(
        ValueError, match=r"short.toml: cases.lengths: 'fvd' needs videos of at least 16 frames"
    ):
        run_suite(suite, tmp_path / "run", threads=1, progress=False)
    assert not (tmp_path / "run").exists()


def test_a_single_case_is_refused(pooled_text, small_backends, tmp_path):
    suite = parse_suite(pooled_text, "one.toml")
    with pytest.raises(
        ValueError, match=r"one.toml: metrics.names: 'fvd' .* has 1 case\(s\); use at least 2"
    ):
        run_suite(suite, tmp_path / "run", limit=1, threads=1, progress=False)


def test_pooled_metrics_cannot_be_per_frame(pooled_text):
    text = pooled_text.replace('per_frame = ["id_sim"]', 'per_frame = ["fvd"]')
    with pytest.raises(ValueError, match=r"metrics.per_frame\[0\]: 'fvd' is pooled"):
        parse_suite(text, "bad.toml")


@pytest.mark.slow
def test_two_process_run_gives_the_pooled_rows_of_a_one_process_run_with_real_i3d(
    pooled_text, write_suite, tmp_path, cli
):
    text = pooled_text.replace('names = ["fvd", "fid", "psnr",', 'names = ["fvd", "psnr",')
    text = text.replace("driving_seeds = [0, 1, 2]", "driving_seeds = [0, 1]")
    path = write_suite(text)
    suite = parse_suite(text, str(path))
    run_suite(suite, tmp_path / "one", threads=1, progress=False)
    two = cli("run", path, "--out", tmp_path / "two", "--devices", 2, "--no-progress")
    assert two.returncode == 0, two.stderr[-3000:]
    one, two = pooled(read_rows(tmp_path / "one")), pooled(read_rows(tmp_path / "two"))
    assert len(one) == 3 and one == two
    assert {r["backend"] for r in one} == {"i3d"}


def test_a_failed_pooled_computation_fails_the_run_until_a_resume_computes_it(
    pooled_text, small_backends, write_suite, tmp_path, monkeypatch, capsys
):
    from flashbench.cli.main import main

    def singular(self, name, generated, real):
        raise RuntimeError("covariance is singular")

    path, out = write_suite(pooled_text), tmp_path / "run"
    with monkeypatch.context() as patch:
        patch.setattr(Measurer, "pooled_value", singular)
        assert main(["run", str(path), "--out", str(out), "--no-progress"]) == 1
        printed = capsys.readouterr().out
        assert "6 units done, 0 already finished, 0 failed" in printed
        assert (
            "2 pooled metric computation(s) failed: pooled__baseline, pooled__sliding_w4" in printed
        )
        errors = json.loads((out / "errors" / "pooled__baseline.json").read_text())
        assert errors["error"] == "RuntimeError: covariance is singular"
    assert main(["run", str(path), "--out", str(out), "--resume", "--no-progress"]) == 0
    assert not list((out / "errors").glob("*.json"))
    assert len(pooled(read_rows(out))) == 6


def test_the_reseeded_baseline_has_pooled_rows_and_an_fvd_seed_floor(
    pooled_text, small_backends, tmp_path
):
    from reports.load import load_run
    from reports.seed_floor import floor_table
    from reports.tables import aggregate_rows

    text = pooled_text.replace(
        '"baseline", "reference_image"', '"baseline", "reseeded", "reference_image"'
    )
    assert "reseeded" in text
    out = tmp_path / "run"
    run_suite(parse_suite(text, "pooled.toml"), out, threads=1, progress=False)
    rows = [r for r in pooled(read_rows(out)) if r["setting"] == "reseeded"]
    keys = sorted((r["metric"], r["reference"]) for r in rows)
    assert keys == [
        ("fid", "baseline"),
        ("fid", "ground_truth"),
        ("fvd", "baseline"),
        ("fvd", "ground_truth"),
    ]
    assert json.loads((out / "plan.json").read_text())["pooled"][-1] == "pooled__reseeded"
    run = load_run(out)
    table = floor_table(aggregate_rows(run.rows), run.baseline, n_boot=100)
    fvd = table[table["metric"] == "fvd@ground_truth"].set_index("setting")
    # One pooled value per setting: no CI, and the floor is |FVD(reseeded) - FVD(baseline)|.
    by = {(r["setting"], r["metric"], r["reference"]): r["value"] for r in pooled(read_rows(out))}
    floor = abs(by["reseeded", "fvd", "ground_truth"] - by["baseline", "fvd", "ground_truth"])
    assert fvd.loc["sliding_w4", "seed_floor"] == pytest.approx(floor)
    assert fvd.loc["sliding_w4", "n"] == 1
    # One value is one case: no interval (reports.bootstrap.MIN_CASES), judged on the values.
    assert fvd.loc["sliding_w4", "cases"] == 1
    assert fvd[["ci_low", "ci_high"]].isna().all().all()
