"""Command-line helpers shared by the stages' commands."""

from __future__ import annotations

import click

from dffr.registry import Registry


class RegistryChoice(click.ParamType):
    """A choice among a registry's names, resolved only when used, so that `dffr
    segment` does not import PyTorch just to list the detectors."""

    name = "choice"

    def __init__(self, registry: Registry, extra: tuple[str, ...] = ()) -> None:
        self.registry = registry
        self.extra = extra

    def get_metavar(self, *args, **kwargs) -> str:
        return "[" + "|".join([*self.extra, *self.registry.names()]) + "]"

    def convert(self, value, param, ctx):
        if value in self.extra:
            return value
        try:
            return self.registry.canonical(value)
        except KeyError as e:
            self.fail(str(e).strip("'\""), param, ctx)
