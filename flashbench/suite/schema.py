"""The suite schema's machinery: each key is declared once, as a dataclass field, and read, written and documented from there.

A suite record declares a key with ``toml_key("suite.steps", Integer(1, 10_000), "sampling steps",
default=30)``: its TOML address, the check that reads the TOML value (raising an error that
names the file, the key, the value and the fix), a one-line doc and the default. Reading a
table (``read_section``), the resolved TOML (``write_section``, ``dumps_toml``) and the docs
table (``keys_table``) all come from those fields, so a new key is one field.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import reprlib
from collections.abc import Mapping
from dataclasses import MISSING, dataclass
from typing import Any, Protocol

import tomli_w

# Values quoted in errors are cut short: a suite may hold a megabyte string or 5000 nested lists.
_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother = 3, 60, 60


def short(value: Any) -> str:
    """``value`` quoted for an error message, cut short."""
    return _REPR.repr(value)


class Where:
    """Builds error messages that name the file and the key."""

    def __init__(self, path: str) -> None:
        self.path = path

    def error(self, key: str, message: str) -> ValueError:
        # Keys come from the file: one with a newline or a megabyte of text is quoted short.
        key = key if key.isprintable() and len(key) <= 80 else short(key)
        return ValueError(f"{self.path}: {key}: {message}")

    def unknown(self, key: str, name: str, known: list[str], what: str) -> ValueError:
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f"did you mean {' or '.join(map(repr, close))}? " if close else ""
        return self.error(key, f"unknown {what} {name!r}; {hint}known: {', '.join(sorted(known))}")


# ---- checks: a TOML value in, the field's value out -----------------------------------------


class Check(Protocol):
    def read(self, where: Where, key: str, value: Any) -> Any:
        """The field's value for TOML ``value`` at ``key``; ``where.error`` if it is not one."""
        ...

    def describe(self) -> str:
        """What the key takes, for the docs table."""
        ...


@dataclass(frozen=True)
class Integer:
    minimum: int | None = None
    maximum: int | None = None

    def read(self, where: Where, key: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise where.error(key, f"must be an integer, got {short(value)}")
        if self.minimum is not None and value < self.minimum:
            raise where.error(key, f"={value} must be >= {self.minimum}")
        if self.maximum is not None and value > self.maximum:
            raise where.error(key, f"={value} must be <= {self.maximum}")
        return value

    def describe(self) -> str:
        if self.maximum is None:
            return "integer" if self.minimum is None else f"integer >= {self.minimum}"
        return f"integer in [{self.minimum}, {self.maximum}]"


@dataclass(frozen=True)
class Number:
    positive: bool = False

    def read(self, where: Where, key: str, value: Any) -> float:
        finite = isinstance(value, int | float) and math.isfinite(value)
        if isinstance(value, bool) or not finite:
            raise where.error(key, f"must be a finite number, got {short(value)}")
        if self.positive and value <= 0:
            raise where.error(key, f"={value} must be > 0")
        return float(value)

    def describe(self) -> str:
        return "number > 0" if self.positive else "number"


@dataclass(frozen=True)
class Boolean:
    def read(self, where: Where, key: str, value: Any) -> bool:
        if not isinstance(value, bool):
            raise where.error(key, f"must be true or false, got {short(value)}")
        return value

    def describe(self) -> str:
        return "true or false"


@dataclass(frozen=True)
class Text:
    """A string, one of ``choices`` when given (documented as listed by ``listed_by`` when given)."""

    choices: tuple[str, ...] | None = None
    listed_by: str | None = None

    def read(self, where: Where, key: str, value: Any) -> str:
        if not isinstance(value, str):
            raise where.error(key, f"must be a string, got {short(value)}")
        if self.choices is not None and value not in self.choices:
            raise where.unknown(key, value, list(self.choices), "value")
        return value

    def describe(self) -> str:
        if self.listed_by is not None:
            return f"name (`{self.listed_by}`)"
        if self.choices is not None:
            return " \\| ".join(f'`"{choice}"`' for choice in self.choices)
        return "string"


class _Registry(Protocol):
    kind: str

    def __contains__(self, name: object) -> bool: ...

    def names(self) -> list[str]: ...


@dataclass(frozen=True)
class Registered:
    """The name of an entry of ``registry`` (``flashbench.registry.Registry``)."""

    registry: _Registry

    def read(self, where: Where, key: str, value: Any) -> str:
        name = Text().read(where, key, value)
        if name not in self.registry:
            raise where.unknown(key, name, self.registry.names(), self.registry.kind)
        return name

    def describe(self) -> str:
        return f"{self.registry.kind} name (`flashbench ls {self.registry.kind}s`)"


@dataclass(frozen=True)
class ListOf:
    """A list of distinct items; a single item stands for a list of one."""

    item: Check
    nonempty: bool = True

    def read(self, where: Where, key: str, value: Any) -> tuple[Any, ...]:
        if not isinstance(value, list):
            value = [value]
        if self.nonempty and not value:
            raise where.error(key, "must not be empty")
        items = tuple(self.item.read(where, f"{key}[{i}]", v) for i, v in enumerate(value))
        if len(set(map(repr, items))) != len(items):
            raise where.error(key, f"has duplicates: {list(items)}; list each value once")
        return items

    def describe(self) -> str:
        return f"list of {self.item.describe()}" + ("" if self.nonempty else " (may be empty)")


@dataclass(frozen=True)
class Table:
    """A table whose keys are checked elsewhere (parameters of a stepper, a model, ...)."""

    example: str

    def read(self, where: Where, key: str, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise where.error(key, f"must be a table, e.g. {self.example}, got {short(value)}")
        return dict(value)

    def describe(self) -> str:
        return f"table, e.g. `{self.example}`"


# ---- keys: dataclass fields that carry their check and doc ----------------------------------


@dataclass(frozen=True)
class Key:
    """How a dataclass field is written in a suite file; ``toml_key()`` makes the field."""

    address: str
    check: Check
    doc: str
    # Documents a default that depends on the rest of the suite (None: the field's own default).
    default_doc: str | None
    # The TOML value that stands for None (TOML has no null); a None without one is left out.
    none_as: Any

    @property
    def section(self) -> str:
        return self.address.partition(".")[0]

    @property
    def name(self) -> str:
        return self.address.partition(".")[2]


def toml_key(
    address: str,
    check: Check,
    doc: str,
    *,
    default: Any = MISSING,
    default_doc: str | None = None,
    none_as: Any = None,
) -> Any:
    """A dataclass field read from TOML ``address`` (``"section.key"``).

    A field with neither ``default`` nor ``default_doc`` is required.
    """
    spec = Key(address, check, doc, default_doc, none_as)
    if isinstance(default, dict | list):
        return dataclasses.field(
            default_factory=lambda: type(default)(default), metadata={"key": spec}
        )
    return dataclasses.field(default=default, metadata={"key": spec})


def section_keys(record: type, section: str) -> dict[str, tuple[dataclasses.Field, Key]]:
    """The keys of ``section`` that are fields of the dataclass ``record``, by key name, in field order."""
    out = {}
    for f in dataclasses.fields(record):
        spec = f.metadata.get("key")
        if spec is not None and spec.section == section:
            out[spec.name] = (f, spec)
    return out


def read_section(
    where: Where, record: type, section: str, data: Any, at: str | None = None
) -> dict[str, Any]:
    """The fields of ``record`` given in table ``data``, checked, by field name (absent: left out).

    ``at`` names the table in errors when it is not the section itself (``settings[2]``).
    """
    at = section if at is None else at
    keys = section_keys(record, section)
    if not isinstance(data, dict):
        raise where.error(
            at,
            f"must be a table, got {type(data).__name__} {short(data)}; write [{at}] with keys "
            f"{', '.join(keys)}",
        )
    for name in data:
        if name not in keys:
            raise where.unknown(f"{at}.{name}", name, list(keys), "key")
    out = {}
    for name, (f, spec) in keys.items():
        if name in data:
            value = data[name]
            if spec.none_as is not None and value == spec.none_as:
                out[f.name] = None
            else:
                out[f.name] = spec.check.read(where, f"{at}.{name}", value)
        elif _required(f, spec):
            raise where.error(f"{at}.{name}", f"is required: {spec.doc}")
    return out


def _required(f: dataclasses.Field, spec: Key) -> bool:
    no_default = f.default is MISSING and f.default_factory is MISSING
    return no_default and spec.default_doc is None


def write_section(record: Any, section: str) -> dict[str, Any]:
    """Section ``section`` of ``record`` as plain TOML data, every key written (defaults included)."""
    out = {}
    for name, (f, spec) in section_keys(type(record), section).items():
        value = getattr(record, f.name)
        value = spec.none_as if value is None else value
        if value is not None:
            out[name] = plain(value)
    return out


def plain(value: Any) -> Any:
    """``value`` with tuples as lists and mappings as dicts, as TOML holds them."""
    if isinstance(value, tuple | list):
        return [plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    return value


def keys_table(sections: Mapping[str, type]) -> str:
    """The Markdown table of every key of ``sections`` (section -> the record holding its keys)."""
    lines = ["| key | takes | default | meaning |", "|---|---|---|---|"]
    for section, record in sections.items():
        for f, spec in section_keys(record, section).values():
            if _required(f, spec):
                default = "required"
            elif spec.default_doc is not None:
                default = spec.default_doc
            else:
                value = f.default_factory() if f.default is MISSING else f.default
                value = spec.none_as if value is None else value
                default = "none" if value is None else f"`{_toml_value(plain(value))}`"
                # An empty table reads "{}" here; the resolved TOML keeps its own spelling.
                default = default.replace("{  }", "{}")
            lines.append(f"| `{spec.address}` | {spec.check.describe()} | {default} | {spec.doc} |")
    return "\n".join(lines) + "\n"


# ---- TOML output (the resolved suite; tomllib only reads) ----------------------------------
# The layout (a table per section, arrays and tables inline) is written here, so that suite.toml
# reads like the suite files; tomli_w writes each scalar and inline key. Not json.dumps: it
# escapes characters outside the BMP (an emoji) as surrogate pairs, which tomllib rejects.


def _toml_scalar(value: Any) -> str:
    if not isinstance(value, bool | int | float | str):
        raise ValueError(f"cannot write {type(value).__name__} {value!r} as TOML")
    return tomli_w.dumps({"v": value}).removeprefix("v = ").removesuffix("\n")


def _toml_value(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return (
            "{ "
            + ", ".join(f"{_toml_scalar(str(k))} = {_toml_value(v)}" for k, v in value.items())
            + " }"
        )
    return _toml_scalar(value)


def dumps_toml(data: Mapping[str, Any]) -> str:
    """TOML text of a two-level mapping: tables of scalars, and arrays of tables."""
    lines: list[str] = []
    for section, body in data.items():
        entries = body if isinstance(body, list) else [body]
        for entry in entries:
            lines.append(f"[[{section}]]" if isinstance(body, list) else f"[{section}]")
            lines.extend(f"{key} = {_toml_value(value)}" for key, value in entry.items())
            lines.append("")
    return "\n".join(lines)
