"""The ``--json`` output of ``compare``, ``gate`` and ``leaderboard``: one JSON document per command.

docs/reports-json.md is the schema. Every document names its ``command`` and ``format_version``;
the version changes when a key changes meaning or goes away (keys may be added within one).
Missing numbers (a measurement one run lacks, NaN, a non-finite value) are ``null``, never
``NaN``, which JSON does not have.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from reports.gate import Floor

FORMAT_VERSION = 1
# The leaderboard's columns that describe an entry; every other column is a metric's mean.
ENTRY_COLUMNS = (
    "rank", "protocol", "run", "setting", "stepper", "windowing", "speedup_wall", "speedup_nfe",
    "speedup_flops", "meets_floors", "failed",
)  # fmt: skip


def plain(value: Any) -> Any:
    """A table cell as JSON holds it: numpy scalars as Python's, missing or non-finite numbers as None."""
    if value is None or value is pd.NA:
        return None
    if hasattr(value, "item"):  # a numpy scalar
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def records(table: pd.DataFrame, integers: Sequence[str] = ()) -> list[dict[str, Any]]:
    """The rows of ``table`` as JSON objects; ``integers`` are columns of counts (a float column
    when some are missing) written as integers."""
    out = []
    for row in table.to_dict("records"):
        record = {column: plain(value) for column, value in row.items()}
        for column in integers:
            if record.get(column) is not None:
                record[column] = int(record[column])
        out.append(record)
    return out


def dumps(document: dict[str, Any]) -> str:
    """The document as indented JSON (``allow_nan=False``: a NaN that slipped through is an error)."""
    return json.dumps(document, indent=2, allow_nan=False)


def _head(command: str) -> dict[str, Any]:
    return {"command": command, "format_version": FORMAT_VERSION}


def compare_document(run_a: str | Path, run_b: str | Path, table: pd.DataFrame) -> dict[str, Any]:
    """``compare --json``: every (setting, metric) of reports.compare.compare_runs' table, and
    whether run B passed (no regression, no lost measurement)."""
    regressions, lost = int(table["regression"].sum()), int(table["lost"].sum())
    return {
        **_head("compare"),
        "run_a": str(run_a),
        "run_b": str(run_b),
        "passed": regressions == 0 and lost == 0,
        "regressions": regressions,
        "lost": lost,
        "differences": records(table, integers=("n_a", "n_b", "cases")),
    }


def gate_document(
    run: str | Path,
    floors: Sequence[Floor | str],
    statistic: str,
    failures: pd.DataFrame,
    incomplete: pd.DataFrame,
) -> dict[str, Any]:
    """``gate --json``: the floors judged, each failure, each incomplete unit, and the verdict."""
    return {
        **_head("gate"),
        "run": str(run),
        "passed": failures.empty and incomplete.empty,
        "statistic": statistic,
        "floors": [str(floor) for floor in floors],
        "failures": records(failures),
        "incomplete": records(incomplete),
    }


def leaderboard_document(
    runs: Sequence[str | Path], floors: Sequence[Floor], table: pd.DataFrame
) -> dict[str, Any]:
    """``leaderboard --json``: reports.leaderboard.leaderboard_table's entries in rank order,
    each metric's mean under ``metrics`` and each floor missed under ``failed``."""
    labels = [column for column in table.columns if column not in ENTRY_COLUMNS]
    entries = []
    for row in records(table, integers=("rank",)):
        entry = {c: row[c] for c in ENTRY_COLUMNS if c not in ("protocol", "failed")}
        entry["metrics"] = {label: row[label] for label in labels}
        # The table joins the floors an entry misses with "; " (a floor's text holds none).
        entry["failed"] = row["failed"].split("; ") if row["failed"] else []
        entries.append(entry)
    return {
        **_head("leaderboard"),
        "protocol": str(table["protocol"].iloc[0]) if len(table) else None,
        "runs": [str(run) for run in runs],
        "floors": [str(floor) for floor in floors],
        "entries": entries,
    }
