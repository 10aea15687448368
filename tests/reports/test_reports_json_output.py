"""``compare``, ``gate`` and ``leaderboard --json``: one JSON document each, with the keys and
types docs/reports-json.md documents, and the same exit codes as the Markdown output."""

import argparse
import json

from reports.cli import add_subcommands

NUMBER = (int, float)
NULL = type(None)
HEAD = {"command": str, "format_version": int}
# docs/reports-json.md, key by key.
COMPARE = {**HEAD, "run_a": str, "run_b": str, "passed": bool, "regressions": int, "lost": int,
           "differences": list}  # fmt: skip
DIFFERENCE = {
    "setting": str, "metric": str, "higher_is_better": (bool, NULL), "n_a": (int, NULL),
    "n_b": (int, NULL), "cases": (int, NULL), "mean_a": (*NUMBER, NULL), "mean_b": (*NUMBER, NULL),
    "diff": (*NUMBER, NULL), "ci_low": (*NUMBER, NULL), "ci_high": (*NUMBER, NULL),
    "significant": bool, "regression": bool, "lost": bool, "note": str,
}  # fmt: skip
GATE = {**HEAD, "run": str, "passed": bool, "statistic": str, "floors": list, "failures": list,
        "incomplete": list}  # fmt: skip
FAILURE = {"setting": str, "floor": str, "value": (*NUMBER, NULL), "reason": str}
INCOMPLETE = {"unit": str, "setting": str, "problem": str}
LEADERBOARD = {**HEAD, "protocol": (str, NULL), "runs": list, "floors": list, "entries": list}
ENTRY = {
    "rank": (int, NULL), "run": str, "setting": str, "stepper": str, "windowing": str,
    "speedup_wall": (*NUMBER, NULL), "speedup_nfe": (*NUMBER, NULL),
    "speedup_flops": (*NUMBER, NULL), "meets_floors": bool,
    "metrics": dict, "failed": list,
}  # fmt: skip


def _json(capsys, *argv):
    """The exit code and the parsed stdout of ``argv --json`` (stdout must be one JSON document)."""
    parser = argparse.ArgumentParser()
    add_subcommands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args([*map(str, argv), "--json"])
    code = args.func(args)
    return code, json.loads(capsys.readouterr().out)


def _is(value, types):
    types = types if isinstance(types, tuple) else (types,)
    # bool is an int in Python: only a key documented as a boolean may hold one.
    return isinstance(value, types) and (bool in types or not isinstance(value, bool))


def _check(record, schema):
    assert list(record) == list(schema)
    for key, types in schema.items():
        assert _is(record[key], types), (key, record[key])


def test_compare_json_has_every_difference_with_its_documented_keys(golden_run, make_run, capsys):
    partial = make_run("partial", psnr_shift={"teacache_fast": -3.0})
    for path in (partial / "rows").glob("*__alp_k5__*.json"):
        path.unlink()
    code, document = _json(capsys, "compare", golden_run, partial, "--bootstrap", 200)
    assert code == 1
    _check(document, COMPARE)
    assert document["command"] == "compare" and document["format_version"] == 1
    for difference in document["differences"]:
        _check(difference, DIFFERENCE)
    regressions = [d for d in document["differences"] if d["regression"]]
    assert [(d["setting"], d["metric"]) for d in regressions] == [
        ("teacache_fast", "psnr@baseline")
    ]
    assert document["regressions"] == 1 and not document["passed"]
    # A measurement only run A has: lost, with no numbers (null, not NaN).
    only = next(d for d in document["differences"] if d["note"] == "only in run A")
    assert only["lost"] and only["n_a"] is None and only["diff"] is None
    assert document["lost"] == sum(d["lost"] for d in document["differences"])
    code, document = _json(capsys, "compare", golden_run, golden_run, "--bootstrap", 200)
    assert code == 0 and document["passed"] and document["regressions"] == document["lost"] == 0


def test_gate_json_lists_the_floors_failures_and_incomplete_units(golden_run, make_run, capsys):
    code, document = _json(capsys, "gate", golden_run, "--min-psnr", 30, "--floor", "fvd<=150")
    assert code == 1
    _check(document, GATE)
    assert document["floors"] == ["psnr@baseline >= 30", "fvd <= 150"]
    for failure in document["failures"]:
        _check(failure, FAILURE)
    assert {(f["setting"], f["floor"]) for f in document["failures"]} == {
        ("teacache_fast", "psnr@baseline >= 30"),
        ("teacache_fast", "fvd <= 150"),
    }
    [incomplete] = document["incomplete"]
    _check(incomplete, INCOMPLETE)
    assert incomplete["unit"] == "self_b_12f__broken__seed0" and not document["passed"]
    complete = make_run("complete", failed_unit=False, plan=True)
    code, document = _json(capsys, "gate", complete, "--min-psnr", 25, "--statistic", "ci")
    assert code == 0 and document["passed"] and document["statistic"] == "ci"
    assert document["failures"] == [] == document["incomplete"]


def test_leaderboard_json_ranks_entries_with_their_metrics_and_missed_floors(
    golden_run, make_run, capsys
):
    second = make_run("second", psnr_shift={"teacache_fast": 10.0})
    code, document = _json(
        capsys, "leaderboard", golden_run, second, "--floor", "psnr@baseline>=30",
        "--bootstrap", 200,
    )  # fmt: skip
    assert code == 0
    _check(document, LEADERBOARD)
    assert document["protocol"] == "flashbench-golden-v1"
    assert document["runs"] == [str(golden_run), str(second)]
    assert document["floors"] == ["psnr@baseline >= 30"]
    for entry in document["entries"]:
        _check(entry, ENTRY)
        assert all(_is(value, (*NUMBER, NULL)) for value in entry["metrics"].values())
    ranked = [e for e in document["entries"] if e["meets_floors"]]
    assert [e["rank"] for e in ranked] == [1, 2, 3, 4, 5]
    assert (ranked[0]["run"], ranked[0]["setting"]) == ("second", "teacache_fast")
    assert ranked[0]["metrics"]["psnr@baseline"] == 36.5
    [dropped] = [e for e in document["entries"] if not e["meets_floors"]]
    assert dropped["rank"] is None and dropped["failed"] == ["psnr@baseline >= 30"]
