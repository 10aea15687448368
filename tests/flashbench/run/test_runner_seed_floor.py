"""The seed floor: the baseline re-sampled with another noise seed, cached, measured like a setting, resumed."""

from __future__ import annotations

import pytest

from flashbench.run.rows import SPEED, read_rows
from flashbench.run.runner import run_suite
from flashbench.suite.document import parse_suite


def _suite_text(tiny_text: str) -> str:
    text = tiny_text.replace(
        'references = ["ground_truth", "baseline", "reference_image", "driving"]',
        'references = ["ground_truth", "baseline", "reseeded", "reference_image", "driving"]',
    )
    assert "reseeded" in text
    return text


def _suite(tiny_text: str):
    return parse_suite(_suite_text(tiny_text), "tiny.toml")


def test_reseeded_baseline_is_measured_like_a_setting_against_every_reference(tiny_text, tmp_path):
    out = tmp_path / "run"
    run_suite(_suite(tiny_text), out, progress=False)
    rows = read_rows(out)
    reseeded = [r for r in rows if r["setting"] == "reseeded"]
    cases = {r["case"] for r in rows}
    assert {r["case"] for r in reseeded} == cases
    labels = {(r["metric"], r["reference"]) for r in reseeded}
    # Fidelity to the baseline's output: today's seed floor of every @baseline figure ...
    assert {m for m, ref in labels if ref == "baseline"} == {"psnr", "ssim"}
    # ... and every other reference, as the baseline has them: a floor for each of its figures.
    base = {(r["metric"], r["reference"]) for r in rows if r["setting"] == "baseline"}
    assert labels - {(m, "baseline") for m in ("psnr", "ssim")} == base - {(m, "") for m in SPEED}
    assert {"ground_truth", "driving", "reference_image"} <= {ref for _, ref in labels}
    # The re-seeded baseline samples like the baseline; per-frame rows come too.
    assert {(r["stepper"], r["windowing"]) for r in reseeded} == {("euler", "full")}
    assert any(r["frame"] is not None for r in reseeded if r["metric"] == "id_sim")
    # Another noise seed gives another video: the floor is a real distance, not the PSNR cap.
    assert all(r["value"] < 100.0 for r in reseeded if r["metric"] == "psnr")
    assert len(list((out / "cache" / "reseeded").glob("*.pt"))) == len(cases)
    assert all((out / "videos" / case / "reseeded__seed0.mp4").is_file() for case in cases)
    # No setting is measured against the re-seed; settings still compare with the baseline.
    assert not any(r["reference"] == "reseeded" for r in rows)
    assert {r["setting"] for r in rows if r["reference"] == "baseline"} == {
        "reseeded",
        "sliding_w3",
        "sliding_w4",
    }


def test_a_run_has_a_seed_floor_and_verdict_for_its_ground_truth_metrics(tiny_text, tmp_path):
    from reports.load import load_run
    from reports.seed_floor import PASSING, UNDECIDED, floor_table
    from reports.tables import aggregate_rows

    out = tmp_path / "run"
    run_suite(_suite(tiny_text), out, progress=False)
    run = load_run(out)
    table = floor_table(aggregate_rows(run.rows), run.baseline, n_boot=200)
    judged = set(table["metric"])
    assert {"psnr@ground_truth", "id_sim@reference_image", "aed@driving", "psnr@baseline"} <= judged
    assert set(table["setting"]) == {"sliding_w3", "sliding_w4"}
    assert set(table["verdict"]) <= {*PASSING, UNDECIDED, "beyond the seed floor"}


def test_a_setting_named_reseeded_is_refused_when_the_seed_floor_is_asked_for(tiny_text):
    text = _suite_text(tiny_text).replace('name = "sliding_w{window}"', 'name = "reseeded"')
    text = text.replace('sweep = { "windowing.window" = [3, 4] }', "")
    text = text.replace(
        "windowing_args = { overlap = 2 }", "windowing_args = { window = 3, overlap = 2 }"
    )
    with pytest.raises(ValueError, match='named "reseeded"'):
        parse_suite(text, "tiny.toml")


def test_reseeded_baseline_is_cached_and_a_resume_reuses_it(tiny_text, tmp_path, stable_rows):
    suite, out = _suite(tiny_text), tmp_path / "run"
    run_suite(suite, out, progress=False)
    before = stable_rows(read_rows(out))
    cached = {p: p.stat().st_mtime_ns for p in (out / "cache" / "reseeded").glob("*.pt")}
    for rows_file in (out / "rows").glob("*__baseline__*.json"):
        rows_file.unlink()
    resumed = run_suite(suite, out, resume=True, progress=False)
    assert resumed.done == len(cached) and resumed.ok
    assert {p: p.stat().st_mtime_ns for p in cached} == cached
    assert stable_rows(read_rows(out)) == before


def test_without_reseeded_in_references_nothing_is_resampled(tiny_text, tmp_path):
    out = tmp_path / "run"
    run_suite(parse_suite(tiny_text, "tiny.toml"), out, progress=False)
    assert not any(r["setting"] == "reseeded" for r in read_rows(out))
    assert not (out / "cache" / "reseeded").exists()
