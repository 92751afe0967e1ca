"""Named kinds of a role (scenarios, launchers): the core's own, plus any a package registers under an entry-point
group. Each is a class with a ``name``; one instance is made on first use."""
from __future__ import annotations

import importlib.metadata as md
from typing import Any, Generic, TypeVar

from harness.errors import HarnessError, near, one_line

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str, group: str, base: type[T], builtin: dict[str, str]) -> None:
        self.kind, self.group, self.base, self.builtin = kind, group, base, builtin
        self._loaded: dict[str, T] = {}

    def entry_points(self) -> dict[str, str]:
        found = dict(self.builtin)
        for ep in md.entry_points(group=self.group):
            found.setdefault(ep.name, ep.value)
        return found

    def names(self) -> tuple[str, ...]:
        return tuple(self.entry_points())

    def get(self, name: str) -> T:
        """The one instance of ``name``; a one-line error with the nearest name otherwise."""
        if name not in self._loaded:
            eps = self.entry_points()
            if name not in eps:
                raise HarnessError(f"unknown {self.kind} '{name}'{near(name, eps)} (available: {', '.join(eps)})")
            try:
                cls: Any = md.EntryPoint(name=name, value=eps[name], group=self.group).load()
            except Exception as exc:  # noqa: BLE001 - whatever a plugin raises on import is one line
                raise HarnessError(f"{self.kind} '{name}' ({eps[name]}) cannot be imported: {type(exc).__name__}: "
                                   f"{one_line(str(exc))}") from None
            if not (isinstance(cls, type) and issubclass(cls, self.base)) or getattr(cls, "name", None) != name:
                raise HarnessError(f"{self.kind} '{name}' ({eps[name]}) is not a {self.base.__module__}."
                                   f"{self.base.__name__} subclass named '{name}'")
            self._loaded[name] = cls()
        return self._loaded[name]
