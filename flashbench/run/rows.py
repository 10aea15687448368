"""The result row (docs/run-directory.md, "Rows"): declared once, written by the runner, checked by readers.

A row is one measurement: a metric of a case x setting x seed (x frame) against a reference.
Its fields are the JSON keys of ``rows/<unit>.json``, in the order written. This module
imports nothing but the standard library, so ``reports`` reads rows with it cheaply.
"""

from __future__ import annotations

import json
import math
import types
import typing
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import Any

# The run directory's format (manifest.json's format_version); readers refuse other versions.
FORMAT_VERSION = 1
# The keys of a traces/<unit>.json record: one per step, window and guidance branch.
TRACE_KEYS = ("step", "sigma", "window", "branch", "action", "seconds")
# The rows of the ``speed`` metric: name -> (unit, higher is better; None: no direction).
SPEED: dict[str, tuple[str, bool | None]] = {
    "wall_seconds": ("s", False),
    "wall_seconds_iqr": ("s", None),
    "nfe": ("passes", None),
    "flops": ("FLOPs", None),
    "peak_bytes": ("bytes", None),
    "cache_bytes": ("bytes", None),
    "fps": ("frames/s", True),
}
# Measurements of the machine, not of the result: they differ between reruns.
TIMING_METRICS = ("wall_seconds", "wall_seconds_iqr", "fps", "peak_bytes")
# Pooled rows (FVD, FID) stand for every case and sampling seed of their setting.
POOLED_CASE = "*"
POOLED_SEED = -1
# What identifies one measurement: two rows with the same key would silently overwrite.
KEY = ("case", "setting", "seed", "metric", "reference", "frame")


@dataclass(frozen=True)
class Row:
    """One measurement; constructing it checks every field's JSON type (ValueError naming field and value)."""

    case: str
    setting: str
    seed: int
    metric: str
    value: float
    unit: str
    higher_is_better: bool | None  # None for descriptive figures (nfe, bytes)
    backend: str
    reference: str
    frame: int | None  # None for the aggregate; a frame (or transition) index otherwise
    frames: int
    stepper: str
    windowing: str
    # Pooled rows only: how many generated videos they pool. Unit rows have no such key.
    samples: int | None = None

    def __post_init__(self) -> None:
        for column in COLUMNS:
            value = getattr(self, column.name)
            if value is None and column.nullable:
                continue
            if not column.accepts(value):
                raise ValueError(
                    f"{column.name}={value!r} must be {column.kind_name}"
                    + (" or null" if column.nullable else "")
                )
        if not math.isfinite(self.value):  # 1e999 parses as inf; rows are strict JSON
            raise ValueError(f"value={self.value!r} must be a finite number")

    @classmethod
    def from_json(cls, data: Any) -> Row:
        """The row a JSON object of a rows file holds; a ValueError says what is wrong with it."""
        if not isinstance(data, dict):
            raise ValueError(f"must be an object, got {type(data).__name__}")
        missing = [c.name for c in COLUMNS if c.required and c.name not in data]
        if missing:
            raise ValueError(f"lacks column(s) {missing}; see docs/run-directory.md")
        return cls(**{c.name: data[c.name] for c in COLUMNS if c.name in data})

    def to_json(self) -> dict[str, Any]:
        """The JSON object of this row, keys in field order."""
        out = asdict(self)
        if self.samples is None:
            del out["samples"]
        return out


@dataclass(frozen=True)
class Column:
    """A field of ``Row`` as JSON sees it: its type, whether it may be null, whether every row has it."""

    name: str
    kind: type
    nullable: bool
    required: bool

    @property
    def kind_name(self) -> str:
        return "a number" if self.kind is float else self.kind.__name__

    def accepts(self, value: Any) -> bool:
        # A number written without a fraction (3) reads back as an int: a float field takes
        # both. isinstance(True, int) holds in Python, but true is no count in JSON.
        if self.kind is bool or isinstance(value, bool):
            return self.kind is bool and isinstance(value, bool)
        return isinstance(value, (int, float) if self.kind is float else self.kind)


def _columns() -> tuple[Column, ...]:
    hints = typing.get_type_hints(Row)
    columns = []
    for field in fields(Row):
        hint = hints[field.name]
        kinds = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
        (kind,) = [k for k in kinds if k is not type(None)]
        columns.append(Column(field.name, kind, type(None) in kinds, field.default is MISSING))
    return tuple(columns)


COLUMNS = _columns()


def read_rows(out: str | Path) -> list[dict[str, Any]]:
    """All rows of a run directory as written (JSON objects), sorted by ``KEY`` (for comparisons)."""
    rows = []
    for path in sorted((Path(out) / "rows").glob("*.json")):
        rows.extend(json.loads(path.read_text())["rows"])
    return sorted(
        rows, key=lambda r: tuple(-1 if k == "frame" and r[k] is None else r[k] for k in KEY)
    )
