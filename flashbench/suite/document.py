"""Suite files: declarative experiments in TOML, validated with errors that name the file, the key and the fix.

A suite names its cases (identities, driving seeds, self- or cross-reenactment, lengths,
resolution), its settings (windowing x stepper x parameters, with sweeps), guidance, metrics
and their backends, sampling seeds and the baseline setting. Every key is declared once, as a
field of a record (``schema.toml_key``): ``[suite]`` and ``[guidance]`` are ``Suite``'s
own, ``[cases]`` is ``cases.Cases``, ``[metrics]`` ``metrics.Metrics``, ``[[settings]]``
``settings.SettingEntry`` (all in ``flashbench/suite/``). Parsing, the resolved suite.toml and the key table of
docs/suites.md come from those fields. ``load_suite`` parses and validates; every malformed
suite raises ``ValueError``, never another exception.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flashbench.guidance import CFG, parse_rule
from flashbench.models.registry import check_model_args, model_params, models
from flashbench.sampling import Guidance
from flashbench.schedule import MAX_STEPS
from flashbench.settings import Setting
from flashbench.suite.cases import SEED, Cases
from flashbench.suite.catalog import METRICS, MIN_POOLED_VIDEOS
from flashbench.suite.metrics import Metrics, check_metrics
from flashbench.suite.schema import (
    Boolean,
    Integer,
    ListOf,
    Number,
    Registered,
    Table,
    Text,
    Where,
    keys_table,
    read_section,
    section_keys,
    toml_key,
    write_section,
)
from flashbench.suite.settings import (
    SettingEntry,
    check_setting_names,
    expand_setting,
    setting_dict,
)

SUITES_DIR = Path(__file__).resolve().parents[2] / "suites"


# ---- checks of this schema's own kinds of value -------------------------------------------


@dataclass(frozen=True)
class RuleText:
    """A guidance rule, ``NAME[:KEY=VALUE,...]`` as ``flashbench.guidance.parse_rule`` reads it."""

    def read(self, where: Where, key: str, value: Any) -> str:
        text = Text().read(where, key, value)
        try:
            parse_rule(text)
        except ValueError as err:
            raise where.error(key, str(err)) from None
        return text

    def describe(self) -> str:
        return "guidance rule (`cfg`, `cfg_zero_star`, `apg`, with options)"


@dataclass(frozen=True)
class SuiteName:
    def read(self, where: Where, key: str, value: Any) -> str:
        name = Text().read(where, key, value)
        if not name or not name.replace("_", "").replace("-", "").isalnum():
            raise where.error(key, f"={name!r} must be letters, digits, '-' or '_'")
        return name

    def describe(self) -> str:
        return "letters, digits, `-`, `_`"


@dataclass(frozen=True)
class Version:
    """A string; an integer is read as its digits (``version = 2``)."""

    def read(self, where: Where, key: str, value: Any) -> str:
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return Text().read(where, key, value)

    def describe(self) -> str:
        return "string (or integer)"


# ---- records: the schema ------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Suite:
    """A validated suite: what to run, resolved, with its source and content hash."""

    name: str = toml_key(
        "suite.name", SuiteName(), "the suite's name", default_doc="the file's name"
    )
    version: str = toml_key(
        "suite.version",
        Version(),
        'e.g. version = "1"; bump it whenever results change meaning',
    )
    path: str
    sha256: str
    description: str = toml_key(
        "suite.description", Text(), "one line for `flashbench ls`", default=""
    )
    protocol: str | None = toml_key(
        "suite.protocol",
        Text(),
        'leaderboard protocol id (`""`: none)',
        default=None,
        none_as="",
    )
    model: str = toml_key("suite.model", Registered(models), "the model sampled", default="toy")
    model_args: Mapping[str, Any] = toml_key(
        "suite.model_args",
        Table("{ dim = 64 }"),
        "the model's parameters (`flashbench ls models`)",
        default={},
    )
    # Per-setting model parameters (e.g. one checkpoint per NFEB variant), over model_args.
    setting_model_args: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    steps: int = toml_key(
        "suite.steps",
        Integer(1, MAX_STEPS),
        "sampling steps of the flow-matching schedule",
        default=30,
    )
    shift: float = toml_key(
        "suite.shift", Number(positive=True), "schedule shift (Wan, FlashPortrait: 5)", default=5.0
    )
    baseline: str = toml_key(
        "suite.baseline",
        Text(),
        "the setting the `baseline` references compare with",
        default_doc="the first setting",
    )
    seeds: tuple[int, ...] = toml_key(
        "suite.seeds",
        ListOf(SEED),
        "sampling seeds; the noise is shared by every setting of a case and seed",
        default=(0,),
    )
    save_latents: bool = toml_key(
        "suite.save_latents", Boolean(), "also write `latents/<unit>.pt`", default=False
    )
    cases: Cases = field(default_factory=Cases)
    settings: tuple[Setting, ...] = ()
    # [guidance]: drop before scale, the order the resolved suite.toml has always had.
    guidance_drop: tuple[str, ...] = toml_key(
        "guidance.drop",
        ListOf(Text()),
        "conditioning entries dropped in the unguided branch",
        default=("expression",),
    )
    guidance_scale: float | None = toml_key(
        "guidance.scale",
        Number(),
        "emotion CFG scale of every setting (a setting may override it)",
        default=None,
        default_doc="none: unguided",
    )
    guidance_rule: str | None = toml_key(
        "guidance.rule",
        RuleText(),
        "how the branches combine: `NAME[:KEY=VALUE,...]` of `flashbench.guidance.RULES`, "
        "e.g. `apg:eta=0` or `cfg_zero_star`",
        default=None,
        default_doc="plain CFG, the paper's",
    )
    guidance_keep: tuple[str, ...] | None = toml_key(
        "guidance.keep",
        ListOf(Text()),
        'parts of the dropped conditioning the unguided branch keeps (e.g. `["pose"]`; the '
        "model must be trained with part dropout)",
        default=None,
        default_doc="none: the whole entry is dropped, as the paper does",
    )
    metrics: Metrics = field(default_factory=Metrics)

    def guidance_of(self, setting: Setting) -> Guidance | None:
        """The guidance a setting samples with: its scale, this suite's drop, keep and rule; None unguided."""
        if setting.guidance_scale is None:
            return None
        rule = CFG() if self.guidance_rule is None else parse_rule(self.guidance_rule)
        return Guidance(
            setting.guidance_scale, self.guidance_drop, rule=rule, keep=self.guidance_keep or ()
        )

    def setting(self, name: str) -> Setting:
        for s in self.settings:
            if s.name == name:
                return s
        raise ValueError(
            f"setting {name!r} is not in suite {self.name!r}; use one of {[s.name for s in self.settings]}"
        )

    def model_args_for(self, setting: str) -> dict[str, Any]:
        """The model parameters of ``setting``: the suite's, overridden by the setting's own."""
        return {**self.model_args, **self.setting_model_args.get(setting, {})}

    def resolved(self) -> dict[str, Any]:
        """The suite as plain data, with defaults filled and sweeps expanded (written as suite.toml)."""
        return {
            "suite": write_section(self, "suite"),
            "cases": write_section(self.cases, "cases"),
            "guidance": write_section(self, "guidance"),
            "metrics": write_section(self.metrics, "metrics"),
            "settings": [
                setting_dict(s)
                | (
                    {"model_args": dict(self.setting_model_args[s.name])}
                    if s.name in self.setting_model_args
                    else {}
                )
                for s in self.settings
            ],
        }


# The tables of a suite file, each with the record whose fields are its keys.
SECTIONS: dict[str, type] = {
    "suite": Suite,
    "cases": Cases,
    "guidance": Suite,
    "metrics": Metrics,
    "settings": SettingEntry,
}


def suite_keys_table() -> str:
    """The Markdown table of every suite key (docs/suites.md holds it; a test keeps it current)."""
    return keys_table(SECTIONS)


# ---- parsing ------------------------------------------------------------------------------


def parse_suite(
    text: str, path: str = "<suite>", model_args: Mapping[str, Any] | None = None
) -> Suite:
    """Parse and validate suite TOML text; raises ValueError naming ``path``, the key and the fix.

    ``model_args`` (``flashbench run --model-args``) updates the suite's ``model_args``: the same
    suite on another model configuration (testbed v2: ``{"world": "v2"}``). The suite's sha256
    then covers the update, so a run directory never mixes rows of the two.
    """
    try:
        return _parse_suite(text, path, dict(model_args or {}))
    except RecursionError as err:  # tomllib and repr recurse once per level of nesting
        raise ValueError(
            f"{path}: values are nested too deeply (arrays or tables inside each other); "
            "a suite needs at most a few levels"
        ) from err


def _parse_suite(text: str, path: str, model_args: dict[str, Any]) -> Suite:
    where = Where(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{path}: not valid TOML: {err}; fix the syntax at that line") from err
    digest = hashlib.sha256(text.encode())
    if model_args and isinstance(data.get("suite"), dict):
        own = data["suite"].get("model_args", {})
        merged = {**own, **model_args} if isinstance(own, dict) else model_args
        if merged != own:
            data["suite"]["model_args"] = merged
            digest.update(b"\n# --model-args " + json.dumps(model_args, sort_keys=True).encode())
    for name in data:
        if name in section_keys(Suite, "suite") and "suite" not in data:
            raise where.error(
                name,
                "is outside any table: the [suite] table is missing; start the file with [suite] "
                "above name, version, model, ...",
            )
        if name not in SECTIONS:
            raise where.unknown(name, name, list(SECTIONS), "section")
    if "suite" not in data:
        raise where.error(
            "suite", 'the [suite] table is missing; start the file with [suite] and version = "1"'
        )
    head = read_section(where, Suite, "suite", data["suite"])
    if "name" not in head:
        head["name"] = SuiteName().read(where, "suite.name", Path(path).stem)
    guidance = read_section(where, Suite, "guidance", data.get("guidance", {}))
    cases = Cases(**read_section(where, Cases, "cases", data.get("cases", {})))
    metrics = Metrics(**read_section(where, Metrics, "metrics", data.get("metrics", {})))
    check_metrics(where, metrics)
    raw_settings = data.get("settings")
    if not isinstance(raw_settings, list) or not raw_settings:
        raise where.error(
            "settings", 'needs at least one [[settings]] entry, e.g. [[settings]] use = "baseline"'
        )
    entries = [
        SettingEntry(**read_section(where, SettingEntry, "settings", entry, at=f"settings[{i}]"))
        for i, entry in enumerate(raw_settings)
    ]
    expanded: list[Setting] = []
    setting_model_args: dict[str, dict[str, Any]] = {}
    # Each setting's model_args, by the key errors about them name.
    args_key: dict[str, str] = {}
    for index, entry in enumerate(entries):
        entry_settings = expand_setting(where, index, entry, guidance.get("guidance_scale"))
        if entry.model_args is not None:
            for s in entry_settings:
                setting_model_args[s.name] = entry.model_args
                args_key[s.name] = f"settings[{index}].model_args"
        expanded.extend(entry_settings)
    check_setting_names(where, expanded)
    baseline = head.pop("baseline", expanded[0].name)
    suite = Suite(
        **head,
        **guidance,
        path=path,
        sha256=digest.hexdigest(),
        baseline=baseline,
        settings=tuple(expanded),
        setting_model_args=setting_model_args,
        cases=cases,
        metrics=metrics,
    )
    # An unknown drop key leaves the unguided branch conditioned: guidance silently does nothing.
    guided = "guidance_drop" in guidance or any(s.guidance_scale is not None for s in expanded)
    _check_model(where, suite, args_key, guided)
    names = [s.name for s in expanded]
    if baseline not in names:
        raise where.unknown("suite.baseline", baseline, names, "setting")
    if "reseeded" in metrics.references and "reseeded" in names:
        raise where.error(
            "settings",
            'a setting is named "reseeded", the name of the re-seeded baseline that '
            "metrics.references asks for; rename the setting",
        )
    return suite


def _check_model(where: Where, suite: Suite, args_key: dict[str, str], guided: bool) -> None:
    """Refuse model parameters the model cannot take, and what every unit would fail on (``guided``: its guidance too)."""
    params = model_params(suite.model)
    own_args = [("suite.model_args", suite.model_args)] + [
        (args_key[name], args) for name, args in suite.setting_model_args.items()
    ]
    for args_at, args in own_args:
        for name in args:
            if name not in params:
                raise where.unknown(
                    f"{args_at}.{name}", name, params, f"parameter of model {suite.model!r}"
                )
    checked: set[str] = set()
    for s in suite.settings:
        args = suite.model_args_for(s.name)
        fingerprint = json.dumps(args, sort_keys=True, default=str)
        if fingerprint in checked:
            continue
        checked.add(fingerprint)
        try:
            spec = check_model_args(suite.model, args)
        except ValueError as err:
            raise where.error(args_key.get(s.name, "suite.model_args"), str(err)) from err
        if spec is not None:
            _check_against_model(where, suite, spec, guided)


def _check_against_model(where: Where, suite: Suite, spec: Any, guided: bool) -> None:
    """Refuse what every unit would fail on: a resolution, drop key, kept part or case list the model cannot serve."""
    cases, metrics = suite.cases, suite.metrics
    drop = suite.guidance_drop if guided else ()
    keep = (suite.guidance_keep or ()) if guided else ()
    problem = spec.resolution_error(cases.resolution)
    if problem is not None:
        raise where.error("cases.resolution", problem)
    for i, entry in enumerate(drop):
        if entry not in spec.cond_keys:
            raise where.unknown(
                f"guidance.drop[{i}]", entry, list(spec.cond_keys), "conditioning entry"
            )
    for i, part in enumerate(keep):
        if part not in spec.cond_parts:
            if not spec.cond_parts:
                raise where.error(
                    f"guidance.keep[{i}]",
                    f"{part!r}: model {suite.model!r} cannot keep parts in the unguided branch "
                    "(that needs weights trained with part dropout); remove keep to drop whole entries",
                )
            raise where.unknown(f"guidance.keep[{i}]", part, list(spec.cond_parts), "part")
    try:
        expanded = cases.expand(spec.splits, spec.fps)
    except ValueError as err:
        raise ValueError(f"{where.path}: {err}") from err
    for i, name in enumerate(metrics.names):
        if name not in METRICS or spec.provides is None:
            continue
        backend = metrics.backends.get(name, METRICS[name].backends[0])
        lacking = [m for m in METRICS[name].model_methods(backend) if m not in spec.provides]
        if lacking:
            raise where.error(
                f"metrics.names[{i}]",
                f"{name!r} needs the model's {lacking[0].replace('_', ' ')}, which model {suite.model!r} "
                f"does not provide; drop {name!r} or use another model",
            )
    pooled = [name for name in metrics.names if name in METRICS and METRICS[name].pooled]
    if pooled and len(expanded) < MIN_POOLED_VIDEOS:
        raise where.error(
            "metrics.names",
            f"{pooled[0]!r} pools each setting's videos over cases, but the suite has {len(expanded)} "
            f"case(s); use at least {MIN_POOLED_VIDEOS} (more identities, driving seeds or lengths) "
            f"or drop {pooled[0]!r}",
        )


# ---- finding and loading ------------------------------------------------------------------


def find_suite(name_or_path: str | Path) -> Path:
    """A suite file by path, or by name among the shipped suites (``quick`` -> suites/quick.toml)."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise ValueError(
                f"suite file {str(path)!r} does not exist; pass a path to a .toml file or a shipped suite name"
            )
        return path
    shipped = {p.stem: p for p in SUITES_DIR.glob("*.toml")}
    if str(name_or_path) not in shipped:
        close = difflib.get_close_matches(str(name_or_path), list(shipped), n=3, cutoff=0.5)
        hint = f"did you mean {' or '.join(map(repr, close))}? " if close else ""
        raise ValueError(
            f"unknown suite {str(name_or_path)!r}; {hint}shipped: {', '.join(sorted(shipped))}, or pass a .toml path"
        )
    return shipped[str(name_or_path)]


def load_suite(name_or_path: str | Path, model_args: Mapping[str, Any] | None = None) -> Suite:
    """Load and validate a suite by shipped name or path (``model_args``: see ``parse_suite``)."""
    path = find_suite(name_or_path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text ({err}); save the suite as UTF-8") from err
    return parse_suite(text, str(path), model_args)


def shipped_suites() -> list[str]:
    return sorted(p.stem for p in SUITES_DIR.glob("*.toml"))
