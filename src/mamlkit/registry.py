"""Name -> object registries (algorithms, datasets, models) that refuse duplicate names.

A registry is how the CLI, configs and tests find things by name; tests iterate over every entry,
so anything registered is covered by them.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError, ValueError):
    """An unknown registry name; its message lists close matches and every known name."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class Registry(Generic[T]):
    """A mapping from a unique name to an object, with "did you mean" on unknown names.

    :data:`mamlkit.ALGORITHMS`, :data:`mamlkit.MODELS` and :data:`mamlkit.data.DATASETS` are
    registries. Names are non-empty and lower case, and a name can be registered only once, so a
    plug-in cannot silently replace a built-in entry. Iterating gives the names in sorted order.

    Args:
        kind: what the entries are (``"model"``), used in error messages.

    >>> from mamlkit.registry import Registry
    >>> widgets = Registry("widget")
    >>> widgets.add("small", 1)
    1
    >>> @widgets.register("large")
    ... def large():
    ...     return 100
    >>> widgets.names(), "small" in widgets, len(widgets)
    (['large', 'small'], True, 2)
    >>> widgets.add("small", 2)
    Traceback (most recent call last):
        ...
    ValueError: widget 'small' is already registered; pick another name
    >>> widgets.get("smal")
    Traceback (most recent call last):
        ...
    mamlkit.registry.UnknownNameError: unknown widget 'smal'; did you mean 'small'? ...
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def add(self, name: str, obj: T) -> T:
        """Register ``obj`` under ``name``; a name already taken is a ``ValueError``."""
        if not name or name != name.strip() or name.lower() != name:
            raise ValueError(f"{self.kind} name must be non-empty lower case, got {name!r}")
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered; pick another name")
        self._entries[name] = obj
        return obj

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form of :meth:`add`."""

        def decorator(obj: T) -> T:
            return self.add(name, obj)

        return decorator

    def get(self, name: str) -> T:
        """Look ``name`` up; an unknown name raises :class:`UnknownNameError` with close matches."""
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        """The error message for an unknown ``name``: the closest known name and all of them."""
        close = difflib.get_close_matches(str(name), self._entries, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"unknown {self.kind} {name!r}{hint} (known: {', '.join(self.names())})"

    def names(self) -> list[str]:
        """Every registered name, sorted."""
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"
