"""The seed floor: the baseline re-sampled with another noise seed, cached, measured and resumed."""

from __future__ import annotations

from flashbench.rows import TIMING_METRICS, read_rows
from flashbench.runner import run_suite
from flashbench.suite import parse_suite


def _suite(tiny_text: str):
    text = tiny_text.replace(
        'references = ["ground_truth", "baseline", "reference_image", "driving"]',
        'references = ["ground_truth", "baseline", "reseeded", "reference_image", "driving"]',
    )
    assert "reseeded" in text
    return parse_suite(text, "tiny.toml")


def _stable(rows):
    """The rows but timing, in ``read_rows``' order."""
    return [r for r in rows if r["metric"] not in TIMING_METRICS]


def test_baseline_units_carry_their_seed_floor_and_only_they(tiny_text, tmp_path):
    out = tmp_path / "run"
    run_suite(_suite(tiny_text), out, progress=False)
    rows = read_rows(out)
    reseeded = [r for r in rows if r["reference"] == "reseeded"]
    assert {r["setting"] for r in reseeded} == {"baseline"}
    assert {r["metric"] for r in reseeded} == {"psnr", "ssim"}
    cases = {r["case"] for r in rows}
    assert {r["case"] for r in reseeded} == cases
    # Another noise seed gives another video: the floor is a real distance, not the PSNR cap.
    assert all(r["value"] < 100.0 for r in reseeded if r["metric"] == "psnr")
    assert len(list((out / "cache" / "reseeded").glob("*.pt"))) == len(cases)
    # Settings other than the baseline still compare with the baseline, not with the re-seed.
    assert {r["setting"] for r in rows if r["reference"] == "baseline"} == {
        "sliding_w3",
        "sliding_w4",
    }


def test_reseeded_baseline_is_cached_and_a_resume_reuses_it(tiny_text, tmp_path):
    suite, out = _suite(tiny_text), tmp_path / "run"
    run_suite(suite, out, progress=False)
    before = _stable(read_rows(out))
    cached = {p: p.stat().st_mtime_ns for p in (out / "cache" / "reseeded").glob("*.pt")}
    for rows_file in (out / "rows").glob("*__baseline__*.json"):
        rows_file.unlink()
    resumed = run_suite(suite, out, resume=True, progress=False)
    assert resumed.done == len(cached) and resumed.ok
    assert {p: p.stat().st_mtime_ns for p in cached} == cached
    assert _stable(read_rows(out)) == before


def test_without_reseeded_in_references_nothing_is_resampled(tiny_text, tmp_path):
    out = tmp_path / "run"
    run_suite(parse_suite(tiny_text, "tiny.toml"), out, progress=False)
    assert not any(r["reference"] == "reseeded" for r in read_rows(out))
    assert not (out / "cache" / "reseeded").exists()
