import json
import logging
import shutil

import pytest

from reports.load import RunFormatError, load_run


def test_golden_run_loads_every_row_trace_error_and_video(golden_run, golden_spec):
    CASES, SEEDS, SETTINGS = golden_spec["cases"], golden_spec["seeds"], golden_spec["settings"]
    run = load_run(golden_run)
    units = len(CASES) * len(SEEDS) * len(SETTINGS)
    per_frame = len(SEEDS) * len(SETTINGS) * sum(CASES.values())
    fidelity = len(CASES) * len(SEEDS) * (len(SETTINGS) - 1) * 3
    assert len(run.rows) == units * 8 + per_frame + fidelity
    assert set(run.rows["unit_id"]) == {
        f"{c}__{s}__seed{k}" for c in CASES for s in SETTINGS for k in SEEDS
    }
    assert run.rows["frame"].isna().sum() == units * 8 + fidelity
    assert str(run.rows["higher_is_better"].dtype) == "boolean"
    assert run.baseline == "baseline" and run.suite == "golden"
    # Traces carry the unit's setting and stepper from its rows file.
    alp = run.traces[run.traces["setting"] == "alp_k5"]
    assert set(alp["stepper"]) == {"alp"} and set(alp["action"]) == {"compute", "predict"}
    assert list(run.errors["setting"]) == ["broken"]
    assert set(run.videos) == set(CASES)
    assert {"reference", "ground_truth", "alp_k5__seed1"} <= set(run.videos["self_a_8f"])


@pytest.fixture
def small_run(make_run):
    return make_run("small")


def _first_rows_file(run):
    return sorted((run / "rows").glob("*.json"))[0]


def test_truncated_rows_file_is_an_error_naming_the_file(small_run):
    path = _first_rows_file(small_run)
    path.write_text(path.read_text()[:50])
    with pytest.raises(RunFormatError, match=path.name):
        load_run(small_run)


def test_row_missing_a_column_is_an_error_naming_it(small_run):
    path = _first_rows_file(small_run)
    payload = json.loads(path.read_text())
    del payload["rows"][0]["backend"]
    path.write_text(json.dumps(payload))
    with pytest.raises(RunFormatError, match="backend"):
        load_run(small_run)


def test_row_with_wrong_type_is_an_error(small_run):
    path = _first_rows_file(small_run)
    payload = json.loads(path.read_text())
    payload["rows"][0]["seed"] = "zero"
    path.write_text(json.dumps(payload))
    with pytest.raises(RunFormatError, match="seed='zero'"):
        load_run(small_run)


def test_unit_name_must_match_file_name(small_run):
    path = _first_rows_file(small_run)
    payload = json.loads(path.read_text())
    payload["unit"] = "something_else"
    path.write_text(json.dumps(payload))
    with pytest.raises(RunFormatError, match="does not match"):
        load_run(small_run)


def test_the_same_measurement_twice_is_an_error(small_run):
    path = _first_rows_file(small_run)
    shutil.copy(path, small_run / "rows" / "copy.json")
    payload = json.loads((small_run / "rows" / "copy.json").read_text())
    payload["unit"] = "copy"
    (small_run / "rows" / "copy.json").write_text(json.dumps(payload))
    with pytest.raises(RunFormatError, match="repeat the same measurement"):
        load_run(small_run)


def test_inconsistent_direction_of_a_metric_is_an_error(small_run):
    path = _first_rows_file(small_run)
    payload = json.loads(path.read_text())
    fvd = next(r for r in payload["rows"] if r["metric"] == "fvd")
    fvd["higher_is_better"] = True
    path.write_text(json.dumps(payload))
    with pytest.raises(RunFormatError, match="fvd"):
        load_run(small_run)


def test_unknown_format_version_and_missing_manifest_are_errors(small_run, tmp_path):
    manifest = json.loads((small_run / "manifest.json").read_text())
    manifest["format_version"] = 2
    (small_run / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(RunFormatError, match="format_version=2"):
        load_run(small_run)
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunFormatError, match=r"no manifest\.json"):
        load_run(tmp_path / "empty")


def test_leftover_temp_files_are_reported_not_silently_skipped(small_run, caplog):
    (small_run / "rows" / "unit.json.tmp").write_text("{")
    with caplog.at_level(logging.WARNING, logger="reports.load"):
        load_run(small_run)
    assert "unit.json.tmp" in caplog.text


def test_run_without_rows_is_an_error(small_run):
    run = small_run
    for path in (run / "rows").glob("*.json"):
        path.unlink()
    with pytest.raises(RunFormatError, match="no rows"):
        load_run(run)


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_a_hand_edited_nan_in_a_row_is_an_error_naming_file_and_line(small_run, constant):
    path = _first_rows_file(small_run)
    payload = json.loads(path.read_text())
    payload["rows"][1]["value"] = float("nan")
    # As the runner writes it (one key per line); a string holding "NaN" is not the culprit.
    payload["rows"][0]["backend"] = "NaN-free backend"
    text = (
        json.dumps(payload, indent=1)
        .replace("NaN", constant)
        .replace(f'"{constant}-free backend"', '"NaN-free backend"')
    )
    path.write_text(text)
    line = next(
        i for i, t in enumerate(text.splitlines(), 1) if t.strip() == f'"value": {constant},'
    )
    with pytest.raises(
        RunFormatError, match=rf"{path.name}: line {line}: {constant} is not a finite"
    ):
        load_run(small_run)


def test_an_overflowing_value_in_a_row_is_an_error(small_run):
    path = _first_rows_file(small_run)
    payload = json.loads(path.read_text())
    payload["rows"][0]["value"] = 1.0
    path.write_text(json.dumps(payload).replace('"value": 1.0', '"value": 1e999', 1))
    with pytest.raises(RunFormatError, match=r"rows\[0\]: value=inf must be a finite number"):
        load_run(small_run)


def test_a_rows_file_that_is_not_utf8_is_an_error_naming_it(small_run):
    path = _first_rows_file(small_run)
    path.write_bytes(b'{"unit": "\xff\xfe"}')
    with pytest.raises(RunFormatError, match=rf"{path.name} is not UTF-8 text"):
        load_run(small_run)


def _add_rows(path, unit, rows):
    payload = json.loads(path.read_text())
    first = payload["rows"][0]
    payload["rows"] += [{**first, "frame": None, **row} for row in rows]
    path.write_text(json.dumps({"unit": unit, "rows": payload["rows"]}))


def test_an_old_runs_expression_error_pose_is_read_as_apd(make_run, caplog):
    # Old runs measured the pose error twice: as apd and as expression_error_pose.
    path = make_run("old")
    files = sorted((path / "rows").glob("*__alp_k5__*.json"))
    measured = {"reference": "driving", "unit": "", "higher_is_better": False, "backend": "pose"}
    _add_rows(files[0], files[0].stem, [
        {**measured, "metric": "apd", "value": 0.25},
        {**measured, "metric": "expression_error_pose", "value": 0.25},
    ])  # fmt: skip
    _add_rows(files[1], files[1].stem, [
        {**measured, "metric": "expression_error_pose", "value": 0.5},
    ])  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="reports.load"):
        rows = load_run(path).rows
    assert "expression_error_pose" not in set(rows["metric"])
    apd = rows[rows["metric"] == "apd"].sort_values("value")
    assert list(apd["value"]) == [0.25, 0.5] and list(apd["unit_id"]) == [f.stem for f in files[:2]]
    assert (
        "names 2 rows 'expression_error_pose'" in caplog.text and "1 of them repeat" in caplog.text
    )


def test_temporal_rows_get_their_distance_from_one_lower_is_better(make_run):
    rows = load_run(make_run("temporal", temporal=True)).rows
    temporal = rows[rows["metric"] == "temporal"].set_index(["setting", "case", "seed"])
    deviation = rows[rows["metric"] == "temporal_deviation"].set_index(["setting", "case", "seed"])
    assert len(deviation) == len(temporal) > 0
    assert (deviation["value"] == (temporal["value"] - 1.0).abs()).all()
    assert not deviation["higher_is_better"].any() and temporal["higher_is_better"].isna().all()
    assert "temporal_deviation" not in set(load_run(make_run("plain")).rows["metric"])
