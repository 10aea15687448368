"""Suite files: valid ones load, malformed ones fail with a ValueError naming file, key and fix."""

import json
import math
import tomllib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flashbench.settings import steppers
from flashbench.suite.document import (
    SECTIONS,
    load_suite,
    parse_suite,
    shipped_suites,
    suite_keys_table,
)
from flashbench.suite.schema import dumps_toml, section_keys


def test_every_shipped_suite_validates():
    names = shipped_suites()
    assert {
        "quick",
        "quick_full",
        "acceleration",
        "long_video",
        "nfeb_ablation",
        "alp_ablation",
        "window_ablation",
        "leaderboard",
    } <= set(names)
    for name in names:
        try:
            suite = load_suite(name)
        except ValueError as err:
            # The NFEB variants' checkpoints are trained by the user (none ships).
            assert name == "nfeb_ablation" and "python -m reference_model.train_nfeb" in str(err)
            continue
        assert suite.baseline in [s.name for s in suite.settings]


def test_leaderboard_suite_names_its_protocol():
    assert load_suite("leaderboard").protocol


def test_tiny_suite_expands_its_sweep(tiny_text):
    suite = parse_suite(tiny_text, "tiny.toml")
    assert [s.name for s in suite.settings] == ["baseline", "sliding_w3", "sliding_w4"]
    assert suite.setting("sliding_w4").windowing_args == {"overlap": 2, "window": 4}


def test_unknown_key_error_names_file_key_and_suggestion(tiny_text):
    with pytest.raises(
        ValueError, match=r"my\.toml: suite\.stpes: unknown key 'stpes'; did you mean 'steps'"
    ):
        parse_suite(tiny_text.replace("steps = 3", "stpes = 3"), "my.toml")


def test_unknown_windowing_suggests_the_close_name(tiny_text):
    with pytest.raises(
        ValueError,
        match=r"settings\[1\]\.windowing: unknown windowing 'slidin'; did you mean 'sliding'",
    ):
        parse_suite(tiny_text.replace('windowing = "sliding"', 'windowing = "slidin"'), "t.toml")


def test_unknown_metric_suggests_the_close_name(tiny_text):
    with pytest.raises(
        ValueError, match=r"metrics\.names\[0\]: unknown value 'pnsr'; did you mean 'psnr'"
    ):
        parse_suite(tiny_text.replace('names = ["psnr"', 'names = ["pnsr"'), "t.toml")


def test_baseline_must_be_a_setting_of_the_suite(tiny_text):
    with pytest.raises(
        ValueError, match=r"suite\.baseline: unknown setting 'basline'; did you mean 'baseline'"
    ):
        parse_suite(tiny_text.replace('baseline = "baseline"', 'baseline = "basline"'), "t.toml")


def test_setting_that_does_not_build_names_its_entry(tiny_text):
    with pytest.raises(
        ValueError,
        match=r"settings\[1\]: setting 'sliding_w2x' does not build: ValueError: overlap=2 must be smaller than window=2",
    ):
        parse_suite(
            tiny_text.replace("[3, 4]", "[2, 4]").replace(
                "sliding_w{window}", "sliding_w{window}x"
            ),
            "t.toml",
        )


def test_toml_syntax_error_is_a_value_error_with_the_file():
    with pytest.raises(ValueError, match=r"broken\.toml: not valid TOML"):
        parse_suite("[suite\nname = 1", "broken.toml")


def test_unknown_suite_name_suggests_a_shipped_one():
    with pytest.raises(ValueError, match=r"unknown suite 'quik'; did you mean 'quick'"):
        load_suite("quik")


def _value(draw_leaf):
    return st.recursive(
        draw_leaf,
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
        ),
        max_leaves=6,
    )


LEAVES = (
    st.integers(-(10**20), 10**20)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.booleans()
    | st.text(max_size=12)
    | st.sampled_from(
        [
            "2s",
            "16f",
            "baseline",
            "sliding",
            "euler",
            "full",
            "psnr",
            "speed",
            "test",
            "self",
            "{window}",
        ]
    )
)
VALUES = _value(LEAVES)


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return (
            "nan"
            if math.isnan(value)
            else ("inf" if value == math.inf else ("-inf" if value == -math.inf else repr(value)))
        )
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"


def _emit(doc: dict) -> str:
    lines = [
        f"{json.dumps(k)} = {_toml_value(v)}"
        for k, v in doc.items()
        if not isinstance(v, dict)
        and not (isinstance(v, list) and v and all(isinstance(e, dict) for e in v))
    ]
    for key, value in doc.items():
        tables = (
            [value]
            if isinstance(value, dict)
            else value
            if isinstance(value, list) and value and all(isinstance(e, dict) for e in value)
            else []
        )
        for table in tables:
            lines.append(
                f"[{json.dumps(key)}]" if isinstance(value, dict) else f"[[{json.dumps(key)}]]"
            )
            lines.extend(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in table.items())
    return "\n".join(lines)


def _base_doc() -> dict:
    return {
        "suite": {
            "name": "fuzz",
            "version": "1",
            "model": "toy",
            "steps": 2,
            "baseline": "baseline",
            "seeds": [0],
        },
        "cases": {
            "split": "test",
            "identities": 1,
            "driving_seeds": [0],
            "reenactment": ["self"],
            "lengths": [4],
            "resolution": 16,
        },
        "metrics": {"names": ["psnr", "speed"], "references": ["ground_truth"], "per_frame": []},
        "guidance": {"drop": ["expression"]},
        "settings": [
            {"use": "baseline"},
            {
                "name": "s_w{window}",
                "windowing": "sliding",
                "windowing_args": {"overlap": 1},
                "sweep": {"windowing.window": [2, 3]},
            },
        ],
    }


@st.composite
def mutated_suites(draw):
    doc = _base_doc()
    for _ in range(draw(st.integers(1, 3))):
        section = draw(st.sampled_from([*doc, "extra"]))
        action = draw(st.sampled_from(["set", "delete", "replace_section"]))
        if action == "replace_section" or section not in doc:
            doc[section] = draw(VALUES)
            continue
        body = doc[section]
        target = (
            draw(st.sampled_from(body))
            if isinstance(body, list) and body and all(isinstance(e, dict) for e in body)
            else body
        )
        if not isinstance(target, dict):
            continue
        key = draw(
            st.sampled_from(
                [*target, "bogus", "stepper", "stepper_args", "sweep", "use", "guidance_scale"]
            )
        )
        if action == "delete":
            target.pop(key, None)
        else:
            target[key] = draw(VALUES)
    return _emit(doc)


def test_unmutated_fuzz_base_is_valid():
    suite = parse_suite(_emit(_base_doc()), "fuzz.toml")
    assert [s.name for s in suite.settings] == ["baseline", "s_w2", "s_w3"]


@given(mutated_suites())
def test_malformed_suites_raise_value_error_naming_the_file(text):
    try:
        parse_suite(text, "fuzz.toml")
    except ValueError as err:
        message = str(err)
        assert message.startswith("fuzz.toml: "), message
        assert "\n" not in message.split("not valid TOML")[0]


@given(st.text(max_size=200))
def test_arbitrary_text_never_crashes_the_parser(text):
    try:
        parse_suite(text, "any.toml")
    except ValueError as err:
        assert str(err).startswith("any.toml: ")


def test_sweep_of_an_unknown_stepper_parameter_names_setting_and_parameter(tiny_text):
    assert "euler" in steppers
    text = (
        tiny_text
        + '\n[[settings]]\nname = "eul"\nstepper = "euler"\nsweep = { "stepper.bogus" = [1] }\n'
    )
    with pytest.raises(
        ValueError, match=r"settings\[2\]: setting 'eul_bogus1' does not build: .*'bogus'"
    ):
        parse_suite(text, "t.toml")


def test_unknown_model_suggests_the_registered_one(tiny_text):
    with pytest.raises(ValueError, match=r"suite\.model: unknown model 'tyo'; did you mean 'toy'"):
        parse_suite(tiny_text.replace('model = "toy"', 'model = "tyo"'), "t.toml")


def test_metric_without_any_of_its_references_is_refused(tiny_text):
    text = tiny_text.replace('"reference_image", "driving"]', '"reference_image"]')
    with pytest.raises(
        ValueError,
        match=r"'aed' compares against \['driving'\]; add one of them to metrics\.references",
    ):
        parse_suite(text, "t.toml")


def test_cases_expand_to_named_self_and_cross_cases(tiny_text):
    from flashbench.models.base import WORLD_SPLITS

    suite = parse_suite(tiny_text.replace("lengths = [6]", 'lengths = [6, "1s"]'), "t.toml")
    cases = suite.cases.expand(WORLD_SPLITS, fps=8)
    assert [c.frames for c in cases] == [6, 8, 6, 8]
    self_case, cross_case = cases[0], cases[2]
    assert (
        self_case.id == f"self_id{self_case.identity}_drv0_6f"
        and self_case.identity in WORLD_SPLITS["test"]
    )
    assert cross_case.id.startswith(
        f"cross_id{cross_case.identity}_by{cross_case.driving_identity}_drv0_"
    )
    assert cross_case.driving_identity != cross_case.identity
    with pytest.raises(
        ValueError, match=r"cases\.identities=501 exceeds the 500 identities of split 'test'"
    ):
        parse_suite(tiny_text.replace("identities = 1", "identities = 501"), "t.toml").cases.expand(
            WORLD_SPLITS, 8
        )


# ---- suites whose every unit would fail are refused at validation -------------------------

GUIDED = '\n[guidance]\nscale = 4.0\ndrop = ["expresion"]\n'
ALP_ORDER = (
    '\n[[settings]]\nname = "alp_big"\nstepper = "alp"\nstepper_args = { order = 1000000 }\n'
)
BROKEN = [
    (
        ("[suite]\n", "[suite]\nmodel_args = { dim = -1 }\n"),
        r"suite\.model_args: dim=-1 must be an integer in \[1, 1024\] for the toy model",
    ),
    (
        ("[suite]\n", "[suite]\nmodel_args = { dim = 1000000000000 }\n"),
        r"suite\.model_args: dim=1000000000000 must be an integer in \[1, 1024\]",
    ),
    (("[suite]\n", "[suite]\nmodel_args = { dim = 31 }\n"), r"dim=31 must be even"),
    (("steps = 3", "steps = 1000000000000"), r"suite\.steps: =1000000000000 must be <= 10000"),
    (
        ("resolution = 16", "resolution = 18"),
        r"cases\.resolution: =18 must be a multiple of 4 for this model; use 16 or 20",
    ),
    (("seeds = [0]", "seeds = [1e3]"), r"suite\.seeds\[0\]: must be an integer, got 1000\.0"),
    (("seeds = [0]", f"seeds = [{2**40}]"), r"suite\.seeds\[0\]: =1099511627776 must be <= "),
    (("", ALP_ORDER), r"settings\[2\]: setting 'alp_big' does not build: .*order=1000000 must be"),
    (
        ("", GUIDED),
        r"guidance\.drop\[0\]: unknown conditioning entry 'expresion'; did you mean 'expression'\?",
    ),
    (
        ("windowing_args = { overlap = 2 }", "windowing_args = { overlapp = 2 }"),
        r"settings\[1\]: setting 'sliding_w3' does not build: .*did you mean 'overlap'",
    ),
    (
        ('use = "baseline"', 'use = "baseline"\nstepper_args = { intervall = 5 }'),
        r"settings\[0\]: .*unknown parameter 'intervall' of stepper 'euler'",
    ),
    (
        ('names = ["psnr",', 'names = ["fvd", "psnr",'),
        r"metrics\.names: 'fvd' pools each setting's videos over cases, but the suite has 2 case",
    ),
]


@pytest.mark.parametrize(("change", "message"), BROKEN)
def test_validate_refuses_a_suite_whose_every_unit_would_fail(
    tiny_text, write_suite, capsys, change, message
):
    from flashbench.cli.main import main

    old, new = change
    assert old in tiny_text
    text = tiny_text.replace(old, new, 1) if old else tiny_text + new
    if "fvd" in new:  # one case per driving seed and length: 2 is the minimum, 1 is refused
        text = text.replace('reenactment = ["self", "cross"]', 'reenactment = ["self"]')
        message = message.replace("2 case", "1 case")
    with pytest.raises(ValueError, match=message):
        parse_suite(text, "t.toml")
    assert main(["validate", str(write_suite(text))]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err


def test_guidance_drop_naming_nothing_the_model_conditions_on_fails_the_units_loudly(
    tiny_text, tmp_path
):
    from dataclasses import replace

    from flashbench.run.runner import run_suite

    # Validation refuses it; a suite that bypasses validation is still caught when sampling.
    suite = parse_suite(tiny_text + '\n[guidance]\nscale = 4.0\ndrop = ["expression"]\n', "t.toml")
    summary = run_suite(
        replace(suite, guidance_drop=("expresion",)), tmp_path / "run", progress=False
    )
    assert (summary.done, summary.failed) == (0, 6)
    error = json.loads(next((tmp_path / "run" / "errors").glob("*.json")).read_text())["error"]
    assert "guidance.drop names ['expresion'], which model 'toy' does not condition on" in error


def test_a_missing_suite_header_is_named(tiny_text):
    body = tiny_text.split("[suite]\n", 1)[1]
    with pytest.raises(
        ValueError, match=r"t\.toml: name: is outside any table: the \[suite\] table is missing"
    ):
        parse_suite(body, "t.toml")
    without = tiny_text.split("[cases]", 1)[1]
    with pytest.raises(ValueError, match=r"t\.toml: suite: the \[suite\] table is missing"):
        parse_suite("[cases]" + without, "t.toml")


@pytest.mark.parametrize("where", ["top", "value"])
def test_deeply_nested_arrays_are_a_clear_error(tiny_text, where):
    deep = "[" * 5000 + "]" * 5000
    text = f"x = {deep}\n" if where == "top" else tiny_text.replace("steps = 3", f"steps = {deep}")
    with pytest.raises(ValueError, match=r"t\.toml: ") as info:
        parse_suite(text, "t.toml")
    assert "\n" not in str(info.value) and len(str(info.value)) < 300


# ---- the schema is declared once: docs and resolved TOML come from it ---------------------

DOCS = Path(__file__).resolve().parents[3] / "docs" / "suites.md"


def test_docs_key_table_is_generated_from_the_schema():
    text = DOCS.read_text()
    begin, end = "<!-- suite keys: begin (generated) -->\n", "<!-- suite keys: end -->"
    table = text[text.index(begin) + len(begin) : text.index(end)]
    assert table == suite_keys_table(), (
        "docs/suites.md's key table is out of date; replace it with suite_keys_table()'s output"
    )


def test_every_key_of_the_schema_is_in_the_docs_table():
    table = suite_keys_table()
    for section, record in SECTIONS.items():
        for name in section_keys(record, section):
            assert f"| `{section}.{name}` |" in table


@pytest.mark.parametrize("name", [n for n in shipped_suites() if n != "nfeb_ablation"])
def test_resolved_suite_parses_back_to_the_same_suite(name):
    suite = load_suite(name)
    again = parse_suite(dumps_toml(suite.resolved()), "suite.toml")
    assert again.resolved() == suite.resolved()
    assert (again.settings, again.cases, again.metrics) == (
        suite.settings,
        suite.cases,
        suite.metrics,
    )


@given(st.text(), st.text(min_size=1))
def test_resolved_toml_reads_back_any_text_including_outside_the_bmp(text, key):
    # An emoji (outside the BMP), quotes, backslashes and control characters all read back.
    data = {"suite": {"description": text + "🎬", "model_args": {key: [text]}}}
    assert tomllib.loads(dumps_toml(data)) == data


def test_a_missing_required_key_is_named_with_its_doc(tiny_text):
    with pytest.raises(
        ValueError,
        match=r"t\.toml: suite\.version: is required: e\.g\. version = \"1\"; bump it whenever",
    ):
        parse_suite(tiny_text.replace('version = "1"\n', ""), "t.toml")


def test_an_empty_protocol_means_none_and_is_written_empty(tiny_text):
    suite = parse_suite(tiny_text.replace("[suite]\n", '[suite]\nprotocol = ""\n'), "t.toml")
    assert suite.protocol is None and suite.resolved()["suite"]["protocol"] == ""


def test_guidance_rule_is_read_checked_and_used_by_every_guided_setting(tiny_text):
    from flashbench.guidance import APG, CFG

    guided = tiny_text + '\n[guidance]\nscale = 3.0\ndrop = ["expression"]\n'
    plain = parse_suite(guided, "t.toml")
    assert plain.guidance_rule is None and "rule" not in dumps_toml(plain.resolved())
    assert all(plain.guidance_of(s).rule == CFG() for s in plain.settings)
    apg = parse_suite(guided + 'rule = "apg:eta=0,momentum=-0.5"\n', "t.toml")
    assert all(apg.guidance_of(s).rule == APG(eta=0.0, momentum=-0.5) for s in apg.settings)
    assert all(apg.guidance_of(s).scale == 3.0 for s in apg.settings)
    # The resolved suite.toml keeps the rule, and reads back to the same suite.
    assert parse_suite(dumps_toml(apg.resolved()), "t.toml").guidance_rule == apg.guidance_rule
    for bad, words in [
        ('"apgg"', "did you mean 'apg'"),
        ('"apg:eta=x"', "not a number"),
        ("3", "string"),
    ]:
        with pytest.raises(ValueError, match=words) as info:
            parse_suite(guided + f"rule = {bad}\n", "t.toml")
        assert "guidance.rule" in str(info.value) and "\n" not in str(info.value)
