"""The row type: one declaration of the rows files' keys, their order and their JSON types."""

import json
from dataclasses import fields

import pytest

from flashbench.run.rows import COLUMNS, Row

UNIT_ROW = {
    "case": "self_id3_drv7_2s",
    "setting": "alp_k5",
    "seed": 0,
    "metric": "psnr",
    "value": 31.5,
    "unit": "dB",
    "higher_is_better": True,
    "backend": "pixels",
    "reference": "baseline",
    "frame": None,
    "frames": 50,
    "stepper": "alp",
    "windowing": "sliding",
}


def test_a_unit_row_round_trips_to_the_same_json_text():
    text = json.dumps([UNIT_ROW], indent=1)
    assert json.dumps([Row.from_json(UNIT_ROW).to_json()], indent=1) == text


def test_only_pooled_rows_carry_samples_and_it_comes_last():
    pooled = {**UNIT_ROW, "case": "*", "seed": -1, "samples": 3}
    assert list(Row.from_json(pooled).to_json()) == [f.name for f in fields(Row)]
    assert "samples" not in Row.from_json(UNIT_ROW).to_json()


def test_columns_follow_the_fields_with_nullable_and_optional_ones_marked():
    assert [c.name for c in COLUMNS] == [f.name for f in fields(Row)]
    assert {c.name for c in COLUMNS if c.nullable} == {"higher_is_better", "frame", "samples"}
    assert [c.name for c in COLUMNS if not c.required] == ["samples"]


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("seed", True, "seed=True must be int"),
        ("seed", "zero", "seed='zero' must be int"),
        ("value", "1", "value='1' must be a number"),
        ("value", float("inf"), "value=inf must be a finite number"),
        ("frame", 1.0, "frame=1.0 must be int or null"),
        ("higher_is_better", 1, "higher_is_better=1 must be bool or null"),
        ("backend", None, "backend=None must be str"),
    ],
)
def test_a_field_of_the_wrong_json_type_is_named_with_its_value(column, value, message):
    with pytest.raises(ValueError, match=message):
        Row.from_json({**UNIT_ROW, column: value})


def test_a_whole_number_is_a_value_and_missing_keys_are_listed():
    assert Row.from_json({**UNIT_ROW, "value": 3}).value == 3
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['frame', 'frames'\]"):
        Row.from_json({k: v for k, v in UNIT_ROW.items() if k not in ("frame", "frames")})
