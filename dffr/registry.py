"""A name -> object registry, one per extension point.

Adding a landmark backend, dataset, detector or fusion rule means adding one file with
one decorator; the registry imports every module of its package the first time it is
asked for a name, so nothing else has to be edited.

An installed package adds one through an entry point of the registry's group
(`dffr.detectors`, `dffr.datasets`, `dffr.fusion`, `dffr.landmarks`,
`dffr.face_detectors`): a module, whose
decorators register what it defines, or an object, registered under the entry point's
name. Every command-line choice comes from the registries, so a plugin appears in every
command at once. A plugin that fails to import is named in a warning, with its error.
"""

from __future__ import annotations

import importlib
import pkgutil
import types
import warnings
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Objects registered under case-insensitive names."""

    def __init__(self, kind: str, package: str | None = None, group: str | None = None) -> None:
        self.kind = kind
        self.package = package
        self.group = group  # entry-point group of installed plugins
        self._items: dict[str, T] = {}
        self._names: dict[str, str] = {}
        self._loaded = package is None and group is None

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: `@REGISTRY.register("name")` above a class or function."""

        def add(obj: T) -> T:
            key = name.lower()
            if key in self._items and self._items[key] is not obj:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[key] = obj
            self._names[key] = name
            return obj

        return add

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        if self.package:
            pkg = importlib.import_module(self.package)
            for mod in pkgutil.iter_modules(pkg.__path__):
                if not mod.name.startswith("_"):
                    importlib.import_module(f"{self.package}.{mod.name}")
        for ep in entry_points(group=self.group) if self.group else ():
            try:
                obj = ep.load()
            except Exception as e:
                warnings.warn(
                    f"{self.kind} plugin {ep.name!r} ({ep.value}) cannot be imported: "
                    f"{type(e).__name__}: {e}",
                    stacklevel=3,
                )
                continue
            if not isinstance(obj, types.ModuleType) and ep.name.lower() not in self._items:
                self.register(ep.name)(obj)

    def get(self, name: str) -> T:
        """The object registered as `name`; a KeyError lists the valid names."""
        self._load()
        try:
            return self._items[name.lower()]
        except KeyError:
            raise KeyError(
                f"unknown {self.kind} {name!r}; choose one of: {', '.join(self.names())}"
            ) from None

    def canonical(self, name: str) -> str:
        """The registered spelling of `name` (KeyError listing the valid names)."""
        self.get(name)
        return self._names[name.lower()]

    def names(self) -> list[str]:
        self._load()
        return [self._names[k] for k in sorted(self._items)]

    def __contains__(self, name: str) -> bool:
        self._load()
        return name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def unknown_options(owner: str, given, options: type) -> str | None:
    """What is wrong with `given` option names for an entry whose options are the
    dataclass `options` (None: nothing): "X has no option 'y' (its options: ...)"."""
    from dataclasses import fields

    names = [f.name for f in fields(options)]
    unknown = [k for k in given if k not in names]
    if not unknown:
        return None
    have = ", ".join(names) if names else "none"
    return f"{owner} has no option {', '.join(map(repr, unknown))} (its options: {have})"
