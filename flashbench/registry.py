"""Name -> object registries with lazy imports and "did you mean" errors (as lm-evaluation-harness).

A registry holds its built-in entries and, when it has an entry-point ``group``, the entries
that installed packages declare there (``[project.entry-points."flashbench.steppers"]``,
docs/plugins.md). Both are ``"module:object"`` targets imported when first used. A plugin that
cannot be used (it fails to import, names the wrong kind of object, or takes a built-in's
name) is a ValueError naming its package when that entry is used or listed; the other entries
never see it.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import inspect
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

BUILT_IN = "built-in"

# What is wrong with an object a registry holds (None: nothing), given its name: e.g. "is not
# callable". A registry checks what an entry names (``check``) and what ``build`` returns.
Check = Callable[[str, Any], str | None]


@dataclass(frozen=True)
class Plugin:
    """An entry an installed distribution declares through an entry point."""

    entry_point: importlib.metadata.EntryPoint
    distribution: str
    version: str

    @property
    def origin(self) -> str:
        return f"{self.distribution} {self.version}"

    def describe(self) -> str:
        ep = self.entry_point
        return f"entry point '{ep.name} = {ep.value}' of package {self.origin} (group {ep.group})"


class Registry:
    """Maps names to objects or to lazily imported ``"module:attr"`` targets, built-in or from plugins."""

    def __init__(
        self,
        kind: str,
        group: str | None = None,
        check: Check | None = None,
        check_built: Check | None = None,
    ) -> None:
        self.kind = kind
        self.group = group
        self.check = check
        self.check_built = check_built
        self._entries: dict[str, Any] = {}
        self._docs: dict[str, str] = {}
        # name -> the plugins declaring it, found on first use (``discover``).
        self._plugins: dict[str, list[Plugin]] | None = None
        self._loaded: dict[str, Any] = {}

    def register(self, name: str, target: Any, doc: str = "") -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered; choose another name")
        self._entries[name] = target
        self._docs[name] = doc

    # ---- plugins --------------------------------------------------------------------------

    def discover(self) -> None:
        """Scan the installed packages' entry points of ``group`` (done on first use; call it
        again after installing a plugin into a running process)."""
        self._plugins = entry_point_plugins(self.group) if self.group else {}
        self._loaded = {}
        for name in self._plugins:
            problem = self.problem(name)
            if problem is not None:
                log.warning(problem)

    def plugins(self) -> dict[str, list[Plugin]]:
        """name -> the installed plugins that declare it (normally one)."""
        if self._plugins is None:
            self.discover()
        assert self._plugins is not None
        return self._plugins

    def origin(self, name: str) -> str:
        """Where entry ``name`` comes from: ``"built-in"``, or its package's name and version."""
        if name in self._entries:
            return BUILT_IN
        return ", ".join(p.origin for p in self.plugins()[name])

    def problem(self, name: str) -> str | None:
        """Why the plugins declaring ``name`` cannot be used, found without importing them; None if none."""
        plugins = self.plugins().get(name, [])
        if plugins and name in self._entries:
            packages = " and ".join(p.distribution for p in plugins)
            return (
                f"{self.kind} {name!r} of {', '.join(p.describe() for p in plugins)} clashes with the "
                f"built-in {self.kind} {name!r}, which is used instead; rename the entry point in "
                f'{packages}\'s [project.entry-points."{self.group}"]'
            )
        if len(plugins) > 1:
            return (
                f"{self.kind} {name!r} is declared by several packages "
                f"({'; '.join(p.describe() for p in plugins)}); uninstall all but one of "
                f"{' and '.join(p.distribution for p in plugins)} (pip uninstall NAME) or rename "
                "the entry point in one of them"
            )
        return None

    def _load_plugin(self, name: str) -> Any:
        if name in self._loaded:
            return self._loaded[name]
        problem = self.problem(name)
        if problem is not None:
            raise ValueError(problem)
        (plugin,) = self.plugins()[name]
        try:
            obj = plugin.entry_point.load()
        except Exception as err:  # whatever a third-party import raises stays this entry's error
            raise ValueError(
                f"{self.kind} {name!r} cannot be loaded from {plugin.describe()}: "
                f"{type(err).__name__}: {err}; fix or upgrade {plugin.distribution}, or uninstall it "
                f"(pip uninstall {plugin.distribution})"
            ) from err
        wrong = self.check(name, obj) if self.check is not None else None
        if wrong is not None:
            raise ValueError(
                f"{self.kind} {name!r} of {plugin.describe()} {wrong}; point the entry point at "
                f"the right object or uninstall {plugin.distribution}"
            )
        self._loaded[name] = obj
        return obj

    # ---- lookup ---------------------------------------------------------------------------

    def get(self, name: str) -> Any:
        if name not in self._entries:
            if name in self.plugins():
                return self._load_plugin(name)
            known = self.names()
            close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
            hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
            raise ValueError(f"unknown {self.kind} {name!r}{hint} Known: {', '.join(known)}")
        target = self._entries[name]
        if isinstance(target, str):
            target = load_object(target)
            wrong = self.check(name, target) if self.check is not None else None
            if wrong is not None:
                raise ValueError(f"built-in {self.kind} {name!r} {wrong}")
            self._entries[name] = target
        return target

    def __getitem__(self, name: str) -> Any:
        return self.get(name)

    def doc(self, name: str) -> str:
        if self._docs.get(name):
            return self._docs[name]
        obj = self.get(name)
        return ((getattr(obj, "__doc__", None) or "").strip().splitlines() or [""])[0]

    def __contains__(self, name: object) -> bool:
        return name in self._entries or name in self.plugins()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def names(self) -> list[str]:
        return sorted({*self._entries, *self.plugins()})

    def items(self) -> list[tuple[str, Any]]:
        """Every (name, object), importing each; a broken plugin raises its ValueError."""
        return [(name, self.get(name)) for name in self.names()]

    def values(self) -> list[Any]:
        return [obj for _, obj in self.items()]

    def build(self, name: str, **kwargs: Any) -> Any:
        factory: Callable[..., Any] = self.get(name)
        known = parameters(factory)
        for key in kwargs:
            if known is not None and key not in known:
                close = difflib.get_close_matches(key, known, n=3, cutoff=0.5)
                hint = f"did you mean {' or '.join(map(repr, close))}? " if close else ""
                raise ValueError(
                    f"unknown parameter {key!r} of {self.kind} {name!r}; {hint}known: "
                    f"{', '.join(sorted(known)) or 'none'}"
                )
        try:
            built = factory(**kwargs)
        except TypeError as err:
            raise ValueError(f"bad parameters for {self.kind} {name!r}: {err}") from err
        wrong = self.check_built(name, built) if self.check_built is not None else None
        if wrong is not None:
            origin = self.origin(name)
            where = "" if origin == BUILT_IN else f" (from package {origin})"
            raise ValueError(
                f"{self.kind} {name!r}{where} built {type(built).__name__!r}, which {wrong}; "
                f"its factory must return one (docs/plugins.md)"
            )
        return built


def entry_point_plugins(group: str) -> dict[str, list[Plugin]]:
    """name -> the plugins declaring it in entry-point ``group``, over the installed distributions.

    A distribution found twice on ``sys.path`` counts once, the first (as importlib.metadata);
    one whose metadata cannot be read is logged and skipped, so it cannot hide the others.
    """
    found: dict[str, list[Plugin]] = {}
    seen: set[str] = set()
    for dist in importlib.metadata.distributions():
        try:
            distribution = dist.metadata["Name"]
            if not distribution:
                continue
            key = re.sub(r"[-_.]+", "-", distribution).lower()
            if key in seen:
                continue
            seen.add(key)
            entry_points = list(dist.entry_points.select(group=group))
            version = dist.version
        except Exception as err:  # a malformed dist-info is that package's problem alone
            log.warning(
                "skipping the %s entry points of an unreadable distribution %s: %s",
                group,
                dist,
                err,
            )
            continue
        for entry_point in entry_points:
            found.setdefault(entry_point.name, []).append(
                Plugin(entry_point, distribution, version)
            )
    return {name: sorted(plugins, key=lambda p: p.distribution) for name, plugins in found.items()}


def load_object(target: str) -> Any:
    """The object a ``"module:object"`` name points to, importing its module."""
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)


def parameters(factory: Callable[..., Any]) -> list[str] | None:
    """The keyword parameters ``factory`` takes, or None when it takes any (``**kwargs``)."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return None
    names = []
    for parameter in signature.parameters.values():
        if parameter.kind is parameter.VAR_KEYWORD:
            return None
        if parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY):
            names.append(parameter.name)
    return names
