"""A suite's ``[[settings]]`` entries: their keys, and their expansion into settings (sweeps, templates, reuse)."""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from flashbench.errors import one_line
from flashbench.settings import Setting, settings, steppers, windowings
from flashbench.suite.schema import (
    Number,
    Registered,
    Table,
    Text,
    Where,
    plain,
    short,
    toml_key,
)

MAX_NAME = 64
# Setting names become file names (videos/<case>/<setting>__seed<k>.mp4, rows/<unit>.json): a
# leading letter or digit keeps them apart from the run's hidden temp files, "__" separates
# the parts of a unit name.
SETTING_NAME = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,{MAX_NAME - 1}}}")


@dataclass(frozen=True)
class Sweep:
    """``{"stepper.<param>" = [values], "windowing.<param>" = [values]}``: one setting per grid point."""

    table = Table('{ "stepper.interval" = [2, 5] }')

    def read(self, where: Where, key: str, value: Any) -> dict[str, list[Any]]:
        value = self.table.read(where, key, value)
        for param, values in value.items():
            target, _, arg = param.partition(".")
            if target not in ("stepper", "windowing") or not arg:
                raise where.error(
                    f"{key}.{param}",
                    'sweep keys are "stepper.<param>" or "windowing.<param>", e.g. "stepper.interval"',
                )
            if not isinstance(values, list) or not values:
                raise where.error(
                    f"{key}.{param}", f"must be a non-empty list of values, got {short(values)}"
                )
        return value

    def describe(self) -> str:
        return self.table.describe()


@dataclass(frozen=True)
class SettingEntry:
    """One ``[[settings]]`` table: a setting, or one per point of its sweep, possibly over a registered one."""

    use: str | None = toml_key(
        "settings.use",
        Registered(settings),
        "a registered setting to start from; the keys below rename or override it",
        default=None,
    )
    name: str | None = toml_key(
        "settings.name",
        Text(),
        "the setting's name; `{param}` takes a swept value, else `_<param><value>` is appended",
        default=None,
        default_doc="the used setting's",
    )
    stepper: str | None = toml_key(
        "settings.stepper",
        Registered(steppers),
        "how each step is taken",
        default=None,
        default_doc='the used setting\'s, else `"euler"`',
    )
    stepper_args: Mapping[str, Any] = toml_key(
        "settings.stepper_args",
        Table("{ interval = 5 }"),
        "the stepper's parameters, over the used setting's",
        default={},
    )
    windowing: str | None = toml_key(
        "settings.windowing",
        Registered(windowings),
        "how the video is split into windows",
        default=None,
        default_doc='the used setting\'s, else `"full"`',
    )
    windowing_args: Mapping[str, Any] = toml_key(
        "settings.windowing_args",
        Table("{ window = 8 }"),
        "the windowing's parameters, over the used setting's",
        default={},
    )
    guidance_scale: float | None = toml_key(
        "settings.guidance_scale",
        Number(),
        "emotion CFG scale, over `guidance.scale`",
        default=None,
        default_doc="`guidance.scale`",
    )
    model_args: Mapping[str, Any] | None = toml_key(
        "settings.model_args",
        Table('{ weights = "runs/nfeb/add/dit_small.pt" }'),
        "the model's parameters for this setting, over `suite.model_args` (model ablations)",
        default=None,
    )
    sweep: Mapping[str, list[Any]] = toml_key(
        "settings.sweep",
        Sweep(),
        "values per parameter; several keys make a grid",
        default={},
    )


def setting_dict(setting: Setting) -> dict[str, Any]:
    """``setting`` as plain data (the resolved suite's and the manifest's settings); None is left out."""
    values = {f.name: getattr(setting, f.name) for f in fields(setting)}
    return {name: plain(value) for name, value in values.items() if value is not None}


def expand_setting(
    where: Where, index: int, entry: SettingEntry, default_guidance: float | None
) -> list[Setting]:
    """The settings of entry ``index``: one per point of its sweep, each checked to build."""
    key = f"settings[{index}]"
    base = settings.get(entry.use) if entry.use is not None else Setting(name="")
    name = entry.name if entry.name is not None else base.name
    if not name:
        raise where.error(
            f"{key}.name",
            'is required: name the setting (name = "alp_k5") or reuse one (use = "baseline")',
        )
    stepper = entry.stepper if entry.stepper is not None else base.stepper
    windowing = entry.windowing if entry.windowing is not None else base.windowing
    stepper_args = {**base.stepper_args, **entry.stepper_args}
    windowing_args = {**base.windowing_args, **entry.windowing_args}
    guidance = entry.guidance_scale
    if guidance is None:
        guidance = base.guidance_scale if base.guidance_scale is not None else default_guidance
    axes = []
    for param, values in entry.sweep.items():
        target, _, arg = param.partition(".")
        axes.append([(target, arg, v) for v in values])
    out = []
    for combo in itertools.product(*axes) if axes else [()]:
        s_args, w_args = dict(stepper_args), dict(windowing_args)
        swept = {}
        for target, arg, value in combo:
            (s_args if target == "stepper" else w_args)[arg] = value
            swept[arg] = value
        try:
            setting_name = (
                name.format(**swept)
                if "{" in name
                else name + "".join(f"_{a}{_tag(v)}" for a, v in swept.items())
            )
        except (KeyError, IndexError, ValueError, AttributeError, TypeError) as err:
            raise where.error(
                f"{key}.name",
                f"template {name!r} names a parameter that is not swept ({err}); use {{param}} for swept params {sorted(swept)}",
            ) from err
        setting = Setting(setting_name, stepper, s_args, windowing, w_args, guidance)
        try:
            setting.build()
        except Exception as err:  # a stepper's own check, whatever it raises, becomes a keyed error
            raise where.error(
                key, f"setting {setting_name!r} does not build: {one_line(err)}"
            ) from err
        out.append(setting)
    return out


def check_setting_names(where: Where, expanded: list[Setting]) -> None:
    """Setting names are distinct and make file names."""
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


def _tag(value: Any) -> str:
    return str(value).replace(".", "p").replace("-", "m")
