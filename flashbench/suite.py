"""Suite files: declarative experiments in TOML, validated with errors that name the file, the key and the fix.

A suite names its cases (identities, driving seeds, self- or cross-reenactment, lengths,
resolution), its settings (windowing x stepper x parameters, with sweeps), guidance, metrics
and their backends, sampling seeds and the baseline setting. ``load_suite`` parses and
validates; every malformed suite raises ``ValueError``, never another exception.
"""

from __future__ import annotations

import difflib
import hashlib
import itertools
import json
import math
import re
import reprlib
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from flashbench.cases import CaseSpec
from flashbench.measure import METRICS, MIN_POOLED_VIDEOS
from flashbench.models import check_model_args, model_params, models
from flashbench.schedule import MAX_STEPS
from flashbench.settings import Setting, settings, steppers, windowings

SUITES_DIR = Path(__file__).resolve().parent.parent / "suites"
REENACTMENTS = ("self", "cross")
# "reseeded": the baseline setting sampled again with another noise seed and measured like a
# setting (rows of the pseudo-setting "reseeded"): the seed floor of every figure.
REFERENCES = ("ground_truth", "baseline", "reseeded", "reference_image", "driving")
MAX_FRAMES = 100_000
MAX_SECONDS = 3_600
MAX_RESOLUTION = 4_096
MAX_NAME = 64
MAX_TIMING_REPEATS = 100
# Seeds and identity ids seed torch generators (64-bit); this bound leaves room for offsets.
MAX_SEED = 2**31 - 1
# Setting names become file names (videos/<case>/<setting>__seed<k>.mp4, rows/<unit>.json): a
# leading letter or digit keeps them apart from the run's hidden temp files, "__" separates
# the parts of a unit name.
SETTING_NAME = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,{MAX_NAME - 1}}}")

_SECTIONS: dict[str, tuple[str, ...]] = {
    "suite": (
        "name",
        "version",
        "description",
        "protocol",
        "model",
        "model_args",
        "steps",
        "shift",
        "baseline",
        "seeds",
        "save_latents",
    ),
    "cases": (
        "split",
        "identities",
        "identity_seed",
        "driving_seeds",
        "reenactment",
        "lengths",
        "resolution",
    ),
    "guidance": ("scale", "drop"),
    "metrics": ("names", "references", "per_frame", "backends", "timing_repeats"),
}
_SETTING_KEYS = (
    "name",
    "use",
    "stepper",
    "stepper_args",
    "windowing",
    "windowing_args",
    "guidance_scale",
    "model_args",
    "sweep",
)


# ---- records -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Cases:
    split: str = "test"
    identities: int | tuple[int, ...] = 2
    identity_seed: int = 0
    driving_seeds: tuple[int, ...] = (0,)
    reenactment: tuple[str, ...] = ("self",)
    lengths: tuple[int | str, ...] = ("2s",)
    resolution: int = 32

    def expand(self, splits: Mapping[str, range], fps: int) -> list[CaseSpec]:
        """The cases of the suite, given the model world's identity splits and frame rate."""
        if self.split not in splits:
            raise ValueError(
                f"cases.split={self.split!r} is not a split of this model; use one of {sorted(splits)}"
            )
        ids_range = splits[self.split]
        if isinstance(self.identities, int):
            if self.identities > len(ids_range):
                raise ValueError(
                    f"cases.identities={self.identities} exceeds the {len(ids_range)} identities of "
                    f"split {self.split!r}; use at most {len(ids_range)}"
                )
            order = torch.randperm(
                len(ids_range), generator=torch.Generator().manual_seed(self.identity_seed)
            )
            ids = [ids_range[int(i)] for i in order[: self.identities]]
        else:
            ids = list(self.identities)
        cases = []
        for mode, identity_index, driving_seed, length in itertools.product(
            self.reenactment, range(len(ids)), self.driving_seeds, self.lengths
        ):
            identity = ids[identity_index]
            if mode == "self":
                driver = identity
            elif len(ids) > 1:
                driver = ids[(identity_index + 1) % len(ids)]
            else:
                driver = (
                    ids_range[(ids_range.index(identity) + 1) % len(ids_range)]
                    if identity in ids_range
                    else identity + 1
                )
            frames, label = length_frames(length, fps)
            driver_tag = "" if mode == "self" else f"_by{driver}"
            case_id = f"{mode}_id{identity}{driver_tag}_drv{driving_seed}_{label}"
            cases.append(
                CaseSpec(case_id, mode, identity, driver, driving_seed, frames, self.resolution)
            )
        return cases


@dataclass(frozen=True)
class Metrics:
    names: tuple[str, ...] = ("psnr", "speed")
    references: tuple[str, ...] = ("ground_truth", "baseline")
    per_frame: tuple[str, ...] = ()
    backends: Mapping[str, str] = field(default_factory=dict)
    # Timed sampling passes per unit after the one that makes its video (which warms up):
    # wall_seconds is their median, wall_seconds_iqr their spread.
    timing_repeats: int = 3


@dataclass(frozen=True)
class Suite:
    """A validated suite: what to run, resolved, with its source and content hash."""

    name: str
    version: str
    path: str
    sha256: str
    description: str = ""
    protocol: str | None = None
    model: str = "toy"
    model_args: Mapping[str, Any] = field(default_factory=dict)
    # Per-setting model parameters (e.g. one checkpoint per NFEB variant), over model_args.
    setting_model_args: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    steps: int = 30
    shift: float = 5.0
    baseline: str = "baseline"
    seeds: tuple[int, ...] = (0,)
    save_latents: bool = False
    cases: Cases = field(default_factory=Cases)
    settings: tuple[Setting, ...] = ()
    guidance_scale: float | None = None
    guidance_drop: tuple[str, ...] = ("expression",)
    metrics: Metrics = field(default_factory=Metrics)

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
            "suite": {
                "name": self.name,
                "version": self.version,
                "description": self.description,
                "protocol": self.protocol or "",
                "model": self.model,
                "model_args": dict(self.model_args),
                "steps": self.steps,
                "shift": self.shift,
                "baseline": self.baseline,
                "seeds": list(self.seeds),
                "save_latents": self.save_latents,
            },
            "cases": {
                "split": self.cases.split,
                "identities": self.cases.identities
                if isinstance(self.cases.identities, int)
                else list(self.cases.identities),
                "identity_seed": self.cases.identity_seed,
                "driving_seeds": list(self.cases.driving_seeds),
                "reenactment": list(self.cases.reenactment),
                "lengths": list(self.cases.lengths),
                "resolution": self.cases.resolution,
            },
            "guidance": {"drop": list(self.guidance_drop)}
            | ({} if self.guidance_scale is None else {"scale": self.guidance_scale}),
            "metrics": {
                "names": list(self.metrics.names),
                "references": list(self.metrics.references),
                "per_frame": list(self.metrics.per_frame),
                "backends": dict(self.metrics.backends),
                "timing_repeats": self.metrics.timing_repeats,
            },
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


def setting_dict(setting: Setting) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": setting.name,
        "stepper": setting.stepper,
        "stepper_args": dict(setting.stepper_args),
        "windowing": setting.windowing,
        "windowing_args": dict(setting.windowing_args),
    }
    if setting.guidance_scale is not None:
        out["guidance_scale"] = setting.guidance_scale
    return out


def length_frames(length: int | str, fps: int) -> tuple[int, str]:
    """Frames and a label of a length given as frames (``16``, ``"16f"``) or seconds (``"2s"``)."""
    if isinstance(length, int):
        return length, f"{length}f"
    if length.endswith("f"):
        return int(length[:-1]), length
    seconds = float(length[:-1])
    return max(1, round(seconds * fps)), length


# ---- validation ---------------------------------------------------------------------------

# Values quoted in errors are cut short: a suite may hold a megabyte string or 5000 nested lists.
_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother = 3, 60, 60


def _short(value: Any) -> str:
    return _REPR.repr(value)


class _Where:
    """Builds error messages that name the file and the key."""

    def __init__(self, path: str) -> None:
        self.path = path

    def error(self, key: str, message: str) -> ValueError:
        # Keys come from the file: one with a newline or a megabyte of text is quoted short.
        key = key if key.isprintable() and len(key) <= 80 else _short(key)
        return ValueError(f"{self.path}: {key}: {message}")

    def unknown(self, key: str, name: str, known: list[str], what: str) -> ValueError:
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f"did you mean {' or '.join(map(repr, close))}? " if close else ""
        return self.error(key, f"unknown {what} {name!r}; {hint}known: {', '.join(sorted(known))}")


def _table(where: _Where, data: Any, key: str, allowed: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise where.error(
            key,
            f"must be a table, got {type(data).__name__} {_short(data)}; write [{key}] with keys {', '.join(allowed)}",
        )
    for k in data:
        if k not in allowed:
            raise where.unknown(f"{key}.{k}", k, list(allowed), "key")
    return data


def _int(
    where: _Where, key: str, value: Any, minimum: int | None = None, maximum: int | None = None
) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise where.error(key, f"must be an integer, got {_short(value)}")
    if minimum is not None and value < minimum:
        raise where.error(key, f"={value} must be >= {minimum}")
    if maximum is not None and value > maximum:
        raise where.error(key, f"={value} must be <= {maximum}")
    return value


def _float(where: _Where, key: str, value: Any, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise where.error(key, f"must be a finite number, got {_short(value)}")
    if positive and value <= 0:
        raise where.error(key, f"={value} must be > 0")
    return float(value)


def _str(where: _Where, key: str, value: Any, choices: tuple[str, ...] | None = None) -> str:
    if not isinstance(value, str):
        raise where.error(key, f"must be a string, got {_short(value)}")
    if choices is not None and value not in choices:
        raise where.unknown(key, value, list(choices), "value")
    return value


def _list(where: _Where, key: str, value: Any, item, nonempty: bool = True) -> tuple:
    if not isinstance(value, list):
        value = [value]
    if nonempty and not value:
        raise where.error(key, "must not be empty")
    items = tuple(item(f"{key}[{i}]", v) for i, v in enumerate(value))
    if len(set(map(repr, items))) != len(items):
        raise where.error(key, f"has duplicates: {list(items)}; list each value once")
    return items


def _length(where: _Where, key: str, value: Any) -> int | str:
    if isinstance(value, int) and not isinstance(value, bool):
        if value > MAX_FRAMES:
            raise where.error(
                key, f"={value} frames is more than {MAX_FRAMES}; use a shorter length"
            )
        return _int(where, key, value, 1)
    if isinstance(value, str) and len(value) > 1 and value[-1] in "sf":
        try:
            number = float(value[:-1]) if value[-1] == "s" else int(value[:-1])
        except ValueError:
            number = None
        limit = MAX_SECONDS if value[-1] == "s" else MAX_FRAMES
        if number is not None and math.isfinite(number) and 0 < number <= limit:
            return value
    raise where.error(key, f'={_short(value)} must be frames (16 or "16f") or seconds ("2s")')


def _resolution(where: _Where, value: Any) -> int:
    value = _int(where, "cases.resolution", value, 8)
    if value > MAX_RESOLUTION:
        raise where.error(
            "cases.resolution",
            f"={value} is more than {MAX_RESOLUTION} pixels; use a smaller resolution",
        )
    return value


def _args(where: _Where, key: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise where.error(
            key, f"must be a table of parameters, e.g. {{ window = 8 }}, got {_short(value)}"
        )
    return dict(value)


def _cases(where: _Where, data: Any) -> Cases:
    data = _table(where, data, "cases", _SECTIONS["cases"])
    identities = data.get("identities", 2)
    if isinstance(identities, list):
        identities = _list(
            where, "cases.identities", identities, lambda k, v: _int(where, k, v, 0, MAX_SEED)
        )
    else:
        identities = _int(where, "cases.identities", identities, 1)
    return Cases(
        split=_str(where, "cases.split", data.get("split", "test"), ("train", "val", "test")),
        identities=identities,
        identity_seed=_int(where, "cases.identity_seed", data.get("identity_seed", 0), 0, MAX_SEED),
        driving_seeds=_list(
            where,
            "cases.driving_seeds",
            data.get("driving_seeds", [0]),
            lambda k, v: _int(where, k, v, 0, MAX_SEED),
        ),
        reenactment=_list(
            where,
            "cases.reenactment",
            data.get("reenactment", ["self"]),
            lambda k, v: _str(where, k, v, REENACTMENTS),
        ),
        lengths=_list(
            where, "cases.lengths", data.get("lengths", ["2s"]), lambda k, v: _length(where, k, v)
        ),
        resolution=_resolution(where, data.get("resolution", 32)),
    )


def _metrics(where: _Where, data: Any) -> Metrics:
    data = _table(where, data, "metrics", _SECTIONS["metrics"])
    known = [*METRICS, "speed"]

    def metric(key: str, value: Any) -> str:
        return _str(where, key, value, tuple(known))

    names = _list(where, "metrics.names", data.get("names", ["psnr", "speed"]), metric)
    references = _list(
        where,
        "metrics.references",
        data.get("references", ["ground_truth", "baseline"]),
        lambda k, v: _str(where, k, v, REFERENCES),
    )
    per_frame = _list(where, "metrics.per_frame", data.get("per_frame", []), metric, nonempty=False)
    for i, name in enumerate(per_frame):
        if name not in names:
            raise where.error(
                f"metrics.per_frame[{i}]",
                f"{name!r} is not in metrics.names {list(names)}; add it there",
            )
        if name in METRICS and METRICS[name].pooled:
            raise where.error(
                f"metrics.per_frame[{i}]",
                f"{name!r} is pooled over a setting's videos (one row per setting); remove it from per_frame",
            )
    for i, name in enumerate(names):
        if (
            name != "speed"
            and "" not in METRICS[name].references
            and not set(METRICS[name].references) & set(references)
        ):
            raise where.error(
                f"metrics.names[{i}]",
                f"{name!r} compares against {list(METRICS[name].references)}; add one of them to metrics.references",
            )
    backends = data.get("backends", {})
    if not isinstance(backends, dict):
        raise where.error(
            "metrics.backends", f'must be a table {{metric = "backend"}}, got {_short(backends)}'
        )
    for name, backend in backends.items():
        if name not in names:
            raise where.unknown(
                f"metrics.backends.{name}", name, list(names), "metric (not in metrics.names)"
            )
        choices = METRICS[name].backends if name in METRICS else ("timer",)
        _str(where, f"metrics.backends.{name}", backend, choices)
    repeats = _int(
        where, "metrics.timing_repeats", data.get("timing_repeats", 3), 1, MAX_TIMING_REPEATS
    )
    return Metrics(names, references, per_frame, dict(backends), repeats)


def _model_args(where: _Where, key: str, value: Any, model: str) -> dict[str, Any]:
    """A model_args table whose keys are parameters of ``model`` (values are checked with the model's own check)."""
    if not isinstance(value, dict):
        raise where.error(
            key,
            f'must be a table of model parameters, e.g. {{ weights = "runs/nfeb/add/dit_small.pt" }}, got {_short(value)}',
        )
    params = model_params(model)
    for name in value:
        if name not in params:
            raise where.unknown(f"{key}.{name}", name, params, f"parameter of model {model!r}")
    return dict(value)


def _expand_setting(
    where: _Where, index: int, data: Any, default_guidance: float | None
) -> list[Setting]:
    key = f"settings[{index}]"
    data = _table(where, data, key, _SETTING_KEYS)
    if "use" in data:
        base_name = _str(where, f"{key}.use", data["use"])
        if base_name not in settings:
            raise where.unknown(f"{key}.use", base_name, settings.names(), "setting")
        base: Setting = settings.get(base_name)
    else:
        base = Setting(name="")
    name = _str(where, f"{key}.name", data.get("name", base.name))
    if not name:
        raise where.error(
            f"{key}.name",
            'is required: name the setting (name = "alp_k5") or reuse one (use = "baseline")',
        )
    stepper = _str(where, f"{key}.stepper", data.get("stepper", base.stepper))
    if stepper not in steppers:
        raise where.unknown(f"{key}.stepper", stepper, steppers.names(), "stepper")
    windowing = _str(where, f"{key}.windowing", data.get("windowing", base.windowing))
    if windowing not in windowings:
        raise where.unknown(f"{key}.windowing", windowing, windowings.names(), "windowing")
    stepper_args = {
        **base.stepper_args,
        **_args(where, f"{key}.stepper_args", data.get("stepper_args", {})),
    }
    windowing_args = {
        **base.windowing_args,
        **_args(where, f"{key}.windowing_args", data.get("windowing_args", {})),
    }
    guidance = data.get(
        "guidance_scale",
        base.guidance_scale if base.guidance_scale is not None else default_guidance,
    )
    if guidance is not None:
        guidance = _float(where, f"{key}.guidance_scale", guidance)
    sweep = data.get("sweep", {})
    if not isinstance(sweep, dict):
        raise where.error(
            f"{key}.sweep", f'must be a table {{"stepper.interval" = [2, 5]}}, got {_short(sweep)}'
        )
    axes = []
    for param, values in sweep.items():
        target, _, arg = param.partition(".")
        if target not in ("stepper", "windowing") or not arg:
            raise where.error(
                f"{key}.sweep.{param}",
                'sweep keys are "stepper.<param>" or "windowing.<param>", e.g. "stepper.interval"',
            )
        if not isinstance(values, list) or not values:
            raise where.error(
                f"{key}.sweep.{param}", f"must be a non-empty list of values, got {_short(values)}"
            )
        axes.append([(target, arg, v) for v in values])
    out = []
    for combo in itertools.product(*axes) if axes else [()]:
        s_args, w_args = dict(stepper_args), dict(windowing_args)
        fields = {}
        for target, arg, value in combo:
            (s_args if target == "stepper" else w_args)[arg] = value
            fields[arg] = value
        try:
            setting_name = (
                name.format(**fields)
                if "{" in name
                else name + "".join(f"_{a}{_tag(v)}" for a, v in fields.items())
            )
        except (KeyError, IndexError, ValueError, AttributeError, TypeError) as err:
            raise where.error(
                f"{key}.name",
                f"template {name!r} names a parameter that is not swept ({err}); use {{param}} for swept params {sorted(fields)}",
            ) from err
        setting = Setting(setting_name, stepper, s_args, windowing, w_args, guidance)
        try:
            setting.build()
        except Exception as err:  # a stepper's own check, whatever it raises, becomes a keyed error
            raise where.error(
                key, f"setting {setting_name!r} does not build: {_one_line(err)}"
            ) from err
        out.append(setting)
    return out


def _tag(value: Any) -> str:
    return str(value).replace(".", "p").replace("-", "m")


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"


def parse_suite(text: str, path: str = "<suite>") -> Suite:
    """Parse and validate suite TOML text; raises ValueError naming ``path``, the key and the fix."""
    try:
        return _parse_suite(text, path)
    except RecursionError as err:  # tomllib and repr recurse once per level of nesting
        raise ValueError(
            f"{path}: values are nested too deeply (arrays or tables inside each other); "
            "a suite needs at most a few levels"
        ) from err


def _parse_suite(text: str, path: str) -> Suite:
    where = _Where(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{path}: not valid TOML: {err}; fix the syntax at that line") from err
    for key in data:
        if key in _SECTIONS["suite"] and "suite" not in data:
            raise where.error(
                key,
                "is outside any table: the [suite] table is missing; start the file with [suite] "
                "above name, version, model, ...",
            )
        if key not in (*_SECTIONS, "settings"):
            raise where.unknown(key, key, [*_SECTIONS, "settings"], "section")
    if "suite" not in data:
        raise where.error(
            "suite", 'the [suite] table is missing; start the file with [suite] and version = "1"'
        )
    head = _table(where, data["suite"], "suite", _SECTIONS["suite"])
    name = _str(where, "suite.name", head.get("name", Path(path).stem))
    if not name or not name.replace("_", "").replace("-", "").isalnum():
        raise where.error("suite.name", f"={name!r} must be letters, digits, '-' or '_'")
    version = head.get("version")
    if version is None:
        raise where.error(
            "suite.version",
            'is required (e.g. version = "1"); bump it whenever results change meaning',
        )
    version = str(
        _str(where, "suite.version", version)
        if not isinstance(version, int) or isinstance(version, bool)
        else version
    )
    model = _str(where, "suite.model", head.get("model", "toy"))
    if model not in models:
        raise where.unknown("suite.model", model, models.names(), "model")
    guidance = _table(where, data.get("guidance", {}), "guidance", _SECTIONS["guidance"])
    scale = guidance.get("scale")
    scale = None if scale is None else _float(where, "guidance.scale", scale)
    drop = _list(
        where, "guidance.drop", guidance.get("drop", ["expression"]), lambda k, v: _str(where, k, v)
    )
    raw_settings = data.get("settings")
    if not isinstance(raw_settings, list) or not raw_settings:
        raise where.error(
            "settings", 'needs at least one [[settings]] entry, e.g. [[settings]] use = "baseline"'
        )
    model_args = _model_args(where, "suite.model_args", head.get("model_args", {}), model)
    expanded: list[Setting] = []
    setting_model_args: dict[str, dict[str, Any]] = {}
    args_key: dict[str, str] = {}
    for index, entry in enumerate(raw_settings):
        entry_settings = _expand_setting(where, index, entry, scale)
        if isinstance(entry, dict) and "model_args" in entry:
            own = _model_args(where, f"settings[{index}].model_args", entry["model_args"], model)
            for s in entry_settings:
                setting_model_args[s.name] = own
                args_key[s.name] = f"settings[{index}].model_args"
        expanded.extend(entry_settings)
    names = [s.name for s in expanded]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise where.error(
            "settings", f"duplicate setting names {duplicates}; give each a distinct name"
        )
    for s in expanded:
        if not SETTING_NAME.fullmatch(s.name) or "__" in s.name:
            raise where.error(
                "settings",
                f"setting name {s.name!r} must start with a letter or digit and hold only ASCII letters, "
                f"digits, '-', '.' and single '_', at most {MAX_NAME} characters (it names files); "
                'e.g. "alp_k5"',
            )
    checked: set[str] = set()
    specs = []
    for s in expanded:
        args = {**model_args, **setting_model_args.get(s.name, {})}
        fingerprint = json.dumps(args, sort_keys=True, default=str)
        if fingerprint in checked:
            continue
        checked.add(fingerprint)
        key = args_key.get(s.name, "suite.model_args")
        try:
            spec = check_model_args(model, args)
        except ValueError as err:
            raise where.error(key, str(err)) from err
        if spec is not None:
            specs.append(spec)
    cases = _cases(where, data.get("cases", {}))
    metrics = _metrics(where, data.get("metrics", {}))
    # An unknown drop key leaves the unguided branch conditioned: guidance silently does nothing.
    check_drop = "drop" in guidance or any(s.guidance_scale is not None for s in expanded)
    for spec in specs:
        _check_against_model(where, model, spec, cases, metrics, drop if check_drop else ())
    baseline = _str(where, "suite.baseline", head.get("baseline", names[0]))
    if baseline not in names:
        raise where.unknown("suite.baseline", baseline, names, "setting")
    if "reseeded" in metrics.references and "reseeded" in names:
        raise where.error(
            "settings",
            'a setting is named "reseeded", the name of the re-seeded baseline that '
            "metrics.references asks for; rename the setting",
        )
    protocol = head.get("protocol")
    protocol = None if protocol in (None, "") else _str(where, "suite.protocol", protocol)
    save_latents = head.get("save_latents", False)
    if not isinstance(save_latents, bool):
        raise where.error(
            "suite.save_latents", f"must be true or false, got {_short(save_latents)}"
        )
    return Suite(
        name=name,
        version=version,
        path=path,
        sha256=hashlib.sha256(text.encode()).hexdigest(),
        description=_str(where, "suite.description", head.get("description", "")),
        protocol=protocol,
        model=model,
        model_args=model_args,
        setting_model_args=setting_model_args,
        steps=_int(where, "suite.steps", head.get("steps", 30), 1, MAX_STEPS),
        shift=_float(where, "suite.shift", head.get("shift", 5.0), positive=True),
        baseline=baseline,
        seeds=_list(
            where,
            "suite.seeds",
            head.get("seeds", [0]),
            lambda k, v: _int(where, k, v, 0, MAX_SEED),
        ),
        save_latents=save_latents,
        cases=cases,
        settings=tuple(expanded),
        guidance_scale=scale,
        guidance_drop=drop,
        metrics=metrics,
    )


def _check_against_model(
    where: _Where, model: str, spec: Any, cases: Cases, metrics: Metrics, drop: tuple[str, ...]
) -> None:
    """Refuse what every unit would fail on: a resolution, drop key or case list the model cannot serve."""
    problem = spec.resolution_error(cases.resolution)
    if problem is not None:
        raise where.error("cases.resolution", problem)
    for i, key in enumerate(drop):
        if key not in spec.cond_keys:
            raise where.unknown(
                f"guidance.drop[{i}]", key, list(spec.cond_keys), "conditioning entry"
            )
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
                f"{name!r} needs the model's {lacking[0].replace('_', ' ')}, which model {model!r} "
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


def load_suite(name_or_path: str | Path) -> Suite:
    """Load and validate a suite by shipped name or path."""
    path = find_suite(name_or_path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text ({err}); save the suite as UTF-8") from err
    return parse_suite(text, str(path))


def shipped_suites() -> list[str]:
    return sorted(p.stem for p in SUITES_DIR.glob("*.toml"))


# ---- TOML output (the resolved suite; tomllib only reads) ---------------------------------


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return (
            repr(value)
            if math.isfinite(value)
            else ("nan" if value != value else ("inf" if value > 0 else "-inf"))
        )
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return (
            "{ "
            + ", ".join(f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in value.items())
            + " }"
        )
    raise ValueError(f"cannot write {type(value).__name__} {value!r} as TOML")


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
