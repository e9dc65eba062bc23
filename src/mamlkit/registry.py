"""Name -> object registries (algorithms, datasets, models) that refuse duplicate names, and the
plug-ins that add to them.

A registry is how the CLI, configs and tests find things by name; tests iterate over every entry,
so anything registered is covered by them. Besides its own entries a registry finds:

* **entry points** of installed packages, in the group it names (``mamlkit.models``,
  ``mamlkit.datasets``, ``mamlkit.algorithms``): an entry point ``tiny = mypkg.models:TinyNet``
  makes ``--model tiny`` work in every process where the package is installed; it is imported
  only when it is used;
* **references** ``package.module:attribute``, imported on use (the current folder is searched
  after the installed packages, as for ``python -m``), so ``--model mymodels:TinyNet`` works
  without installing anything.
"""

from __future__ import annotations

import difflib
import importlib
import os
import re
import sys
import warnings
from collections.abc import Callable, Iterator
from importlib import metadata
from typing import Generic, TypeVar

T = TypeVar("T")

#: ``package.module:attribute`` (dotted names of Python identifiers on both sides).
REFERENCE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


class UnknownNameError(KeyError, ValueError):
    """An unknown registry name; its message lists close matches and every known name."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class PluginError(ValueError):
    """A plug-in (an entry point or a ``module:attribute`` reference) that cannot be loaded;
    the message names it and says why."""


def import_reference(reference: str, kind: str) -> object:
    """The object ``package.module:attribute`` names, imported now.

    The current folder is searched after the installed packages (a module ``mymodels.py`` in the
    folder you run from is found). Every failure is a :class:`PluginError` naming the reference.

    >>> from mamlkit.registry import import_reference
    >>> import_reference("mamlkit.models:Conv4", "model").__name__
    'Conv4'
    >>> import_reference("mamlkit.models:Conv5", "model")
    Traceback (most recent call last):
        ...
    mamlkit.registry.PluginError: model 'mamlkit.models:Conv5': module mamlkit.models has no
    attribute 'Conv5'
    """
    if not REFERENCE.match(reference):
        raise PluginError(
            f"{kind} {reference!r} is not a name nor a reference 'package.module:attribute'"
        )
    module_name, _, attribute = reference.partition(":")
    here = os.getcwd()
    if here not in sys.path and "" not in sys.path:
        sys.path.append(here)
    try:
        obj: object = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name and module_name.startswith(error.name):
            raise PluginError(
                f"{kind} {reference!r}: no module named {error.name!r}; install the package that "
                f"provides it, or run from the folder that holds {error.name.split('.')[0]}.py"
            ) from None
        raise PluginError(
            f"{kind} {reference!r}: importing {module_name} failed: {error}"
        ) from None
    except Exception as error:  # the user's module failed while importing: say which one
        raise PluginError(
            f"{kind} {reference!r}: importing {module_name} failed: {type(error).__name__}: {error}"
        ) from error
    for part in attribute.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise PluginError(
                f"{kind} {reference!r}: module {module_name} has no attribute {attribute!r}"
            ) from None
    return obj


class Registry(Generic[T]):
    """A mapping from a unique name to an object, with "did you mean" on unknown names.

    :data:`mamlkit.ALGORITHMS`, :data:`mamlkit.MODELS` and :data:`mamlkit.data.DATASETS` are
    registries. Names are non-empty and lower case, and a name can be registered only once, so a
    plug-in cannot silently replace a built-in entry. Iterating gives the names in sorted order.

    Args:
        kind: what the entries are (``"model"``), used in error messages.
        entry_points: the entry point group whose entries it also holds (see the module
            docstring); ``None``: none.
        check: called as ``check(name, obj)`` on every plug-in object (an entry point's or a
            reference's) and returns the object to use; raises when the object is unusable.

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
    >>> widgets.get("math:pi")  # a reference: imported, not registered
    3.141592653589793
    """

    def __init__(
        self,
        kind: str,
        *,
        entry_points: str | None = None,
        check: Callable[[str, object], T] | None = None,
    ) -> None:
        self.kind = kind
        self.entry_point_group = entry_points
        self._check = check
        self._entries: dict[str, T] = {}
        self._plugins: dict[str, metadata.EntryPoint] | None = None
        self._loaded: dict[str, T] = {}

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
        """Look ``name`` up: a registered entry, an installed plug-in's entry point, or a
        ``module:attribute`` reference; an unknown name raises :class:`UnknownNameError` with
        close matches."""
        if name in self._entries:
            return self._entries[name]
        if name in self._loaded:
            return self._loaded[name]
        if isinstance(name, str) and ":" in name:
            return self._remember(name, import_reference(name, self.kind))
        plugin = self.plugins().get(name)
        if plugin is None:
            raise UnknownNameError(self.unknown_message(name))
        try:
            obj = plugin.load()
        except Exception as error:
            where = f" (package {plugin.dist.name})" if plugin.dist is not None else ""
            raise PluginError(
                f"{self.kind} {name!r} from the entry point {plugin.value}{where} failed to "
                f"load: {type(error).__name__}: {error}"
            ) from error
        return self._remember(name, obj)

    def _remember(self, name: str, obj: object) -> T:
        checked = self._check(name, obj) if self._check is not None else obj
        self._loaded[name] = checked  # type: ignore[assignment]
        return checked  # type: ignore[return-value]

    def plugins(self) -> dict[str, metadata.EntryPoint]:
        """The entry points of installed packages in this registry's group, by name (found once,
        not imported). One that takes a built-in name is ignored with a warning."""
        if self._plugins is None:
            found: dict[str, metadata.EntryPoint] = {}
            if self.entry_point_group is not None:
                for point in metadata.entry_points(group=self.entry_point_group):
                    if point.name in self._entries:
                        warnings.warn(
                            f"ignoring the {self.kind} entry point {point.name!r} "
                            f"({point.value}): a built-in {self.kind} has that name",
                            stacklevel=2,
                        )
                        continue
                    found.setdefault(point.name, point)
            self._plugins = found
        return self._plugins

    def unknown_message(self, name: str) -> str:
        """The error message for an unknown ``name``: the closest known name and all of them."""
        close = difflib.get_close_matches(str(name), self.names(), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"unknown {self.kind} {name!r}{hint} (known: {', '.join(self.names())})"

    def names(self) -> list[str]:
        """Every registered name and every installed plug-in's, sorted."""
        return sorted({*self._entries, *self.plugins()})

    def __contains__(self, name: object) -> bool:
        return name in self._entries or name in self.plugins()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"
