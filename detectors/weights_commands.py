"""`dffr weights list` and `dffr weights fetch`: the ImageNet files the detectors start
from, where they are looked for, and fetching them ahead of time (on a cluster's login
node, say, when the compute nodes are offline)."""

from __future__ import annotations

import click

from dffr.detectors.base import DETECTORS, PAPER_DETECTORS, DetectorConfig
from dffr.detectors.imagenet import WeightsFile
from dffr.errors import DffrError


def needed(detectors: str | None) -> dict[WeightsFile, list[str]]:
    """{file: the detectors that start from it} for a comma list ("all": every one)."""
    if not detectors:
        names = list(PAPER_DETECTORS)
    elif detectors.strip().lower() == "all":
        names = DETECTORS.names()
    else:
        names = []
        for d in (v.strip() for v in detectors.split(",") if v.strip()):
            try:
                names.append(DETECTORS.canonical(d))
            except KeyError as e:
                raise click.BadParameter(str(e).strip("'\""), param_hint="--detectors") from None
    files: dict[WeightsFile, list[str]] = {}
    for name in names:
        spec = DETECTORS.get(name).imagenet_weights(DetectorConfig(name))
        if spec is not None:
            files.setdefault(spec, []).append(name)
    return files


def status(spec: WeightsFile) -> tuple[str, str]:
    """("yes"/"no", "ok"/"FAILS"/"-"): present, and whether its hash checks."""
    if not spec.path.is_file():
        return "no", "-"
    return "yes", "ok" if spec.hash_ok() else "FAILS"


DETECTORS_OPTION = click.option(
    "--detectors",
    default=None,
    help="comma list, or all (default: the paper's three)",
)


@click.group("weights")
def weights_cmd():
    """The ImageNet weights files the detectors start from."""


@weights_cmd.command("list")
@DETECTORS_OPTION
def list_cmd(detectors):
    """Each file: the detectors using it, where it is looked for, present, hash check."""
    from tabulate import tabulate

    rows = []
    for spec, users in needed(detectors).items():
        present, ok = status(spec)
        rows.append([", ".join(users), spec.name, str(spec.folder), present, ok])
    click.echo(tabulate(rows, ["detectors", "file", "looked for in", "present", "hash"]))


@weights_cmd.command("fetch")
@DETECTORS_OPTION
def fetch_cmd(detectors):
    """Download every file the detectors need into the frameworks' caches (hash-checked)."""
    failed = []
    for spec, users in needed(detectors).items():
        had = spec.path.is_file() and spec.hash_ok()
        try:
            path = spec.fetch()
        except DffrError as e:
            failed.append(spec.name)
            click.echo(f"FAILED {', '.join(users)}: {e}", err=True)
            continue
        click.echo(f"{'present' if had else 'fetched'}: {path} ({', '.join(users)})", err=True)
    if failed:
        raise click.ClickException(f"{len(failed)} file(s) could not be fetched")
