"""Name -> object registries with lazy imports and "did you mean" errors (as lm-evaluation-harness)."""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Callable, Iterator
from typing import Any


class Registry:
    """Maps names to objects or to lazily imported ``"module:attr"`` targets."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Any] = {}
        self._docs: dict[str, str] = {}

    def register(self, name: str, target: Any, doc: str = "") -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered; choose another name")
        self._entries[name] = target
        self._docs[name] = doc

    def get(self, name: str) -> Any:
        if name not in self._entries:
            close = difflib.get_close_matches(name, list(self._entries), n=3, cutoff=0.5)
            hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
            raise ValueError(
                f"unknown {self.kind} {name!r}{hint} Known: {', '.join(sorted(self._entries))}"
            )
        target = self._entries[name]
        if isinstance(target, str):
            target = load_object(target)
            self._entries[name] = target
        return target

    def doc(self, name: str) -> str:
        if self._docs[name]:
            return self._docs[name]
        obj = self.get(name)
        return ((getattr(obj, "__doc__", None) or "").strip().splitlines() or [""])[0]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def names(self) -> list[str]:
        return sorted(self._entries)

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
            return factory(**kwargs)
        except TypeError as err:
            raise ValueError(f"bad parameters for {self.kind} {name!r}: {err}") from err


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
