"""Command-line helpers shared by the stages' commands."""

from __future__ import annotations

from pathlib import Path

import click

from dffr.errors import DffrError, disk_error
from dffr.registry import Registry


class Commands(click.Group):
    """The `dffr` group: a disk that is full or read-only, or a DffrError a command did
    not catch, ends the command with its message and exit status 1, never a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except DffrError as e:
            raise click.ClickException(str(e)) from None
        except OSError as e:
            said = disk_error(e)
            if said is None:
                raise
            raise click.ClickException(
                f"{said}. What was finished before is kept and complete; free some space "
                "(or write elsewhere) and run the command again to go on"
            ) from None


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


def workers_option(command):
    """`--workers N`: threads that read crops and cut regions while the networks run."""
    from dffr.feed import default_workers

    return click.option(
        "--workers",
        default=default_workers(),
        show_default="the cores available",
        type=click.IntRange(min=0),
        help="threads reading crops and cutting regions while the networks run (0: none); "
        "results are the same whatever the number",
    )(command)


def _csv(value: str | None, default: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip()) if value else default


def model_selection(ddbb: str):
    """The options that pick cached faces and trained models: --cache, --models, the
    models' training database (named `ddbb`), --detectors, --regions and --split."""
    options = [
        click.option("--cache", required=True, type=click.Path(path_type=Path, exists=True)),
        click.option(
            "--models", default="models", show_default=True, type=click.Path(path_type=Path)
        ),
        click.option(ddbb, required=True, help="database the models were trained on"),
        click.option("--detectors", default=None, help="comma list (default: the paper's three)"),
        click.option("--regions", default=None, help="comma list (default: all five)"),
        click.option(
            "--split",
            default="test",
            show_default=True,
            type=click.Choice(["train", "val", "test"]),
        ),
    ]

    def wrap(f):
        for option in reversed(options):
            f = option(f)
        return f

    return wrap


def selected(detectors: str | None, regions: str | None) -> tuple[tuple, tuple]:
    """The --detectors and --regions lists, checked (BadParameter naming the valid ones)."""
    from dffr.detectors.base import DETECTORS, PAPER_DETECTORS
    from dffr.regions.masks import REGIONS

    dets, regs = _csv(detectors, PAPER_DETECTORS), _csv(regions, REGIONS)
    for values, valid, hint in ((dets, DETECTORS, "--detectors"), (regs, REGIONS, "--regions")):
        for v in values:
            if v not in valid:
                raise click.BadParameter(f"{v!r}: choose from {list(valid)}", param_hint=hint)
    return dets, regs
