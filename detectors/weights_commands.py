"""`dffr weights list` and `dffr weights fetch`: the ImageNet files the detectors start
from (and the files of face detectors that download theirs), where they are looked for,
and fetching them ahead of time (on a cluster's login node, say, when the compute nodes
are offline)."""

from __future__ import annotations

import click

from dffr.detectors.base import DETECTORS, PAPER_DETECTORS, DetectorConfig
from dffr.detectors.imagenet import WeightsFile
from dffr.errors import DffrError
from dffr.regions.face_detection import FACE_DETECTORS


def _names(registry, asked: str | None, default: list[str], option: str) -> list[str]:
    """The registered names of a comma list ("all": every one, "none": none; not given:
    `default`)."""
    if not asked:
        return default
    if asked.strip().lower() in ("all", "none"):
        return registry.names() if asked.strip().lower() == "all" else []
    try:
        return [registry.canonical(v.strip()) for v in asked.split(",") if v.strip()]
    except KeyError as e:
        raise click.BadParameter(str(e).strip("'\""), param_hint=option) from None


def needed(
    detectors: str | None, face_detectors: str | None = None
) -> dict[WeightsFile, list[str]]:
    """{file: who needs it} for comma lists of detectors (default: the paper's three) and
    face detectors (default: none)."""
    files: dict[WeightsFile, list[str]] = {}
    for name in _names(DETECTORS, detectors, list(PAPER_DETECTORS), "--detectors"):
        spec = DETECTORS.get(name).imagenet_weights(DetectorConfig(name))
        if spec is not None:
            files.setdefault(spec, []).append(name)
    for name in _names(FACE_DETECTORS, face_detectors, [], "--face-detectors"):
        spec = FACE_DETECTORS.get(name).weights()
        if spec is not None:
            files.setdefault(spec, []).append(f"face detector {name}")
    return files


def status(spec: WeightsFile) -> tuple[str, str]:
    """("yes"/"no", "ok"/"FAILS"/"-"): present, and whether its hash checks."""
    if not spec.path.is_file():
        return "no", "-"
    return "yes", "ok" if spec.hash_ok() else "FAILS"


DETECTORS_OPTION = click.option(
    "--detectors",
    default=None,
    help="comma list, all or none (default: the paper's three)",
)
FACE_DETECTORS_OPTION = click.option(
    "--face-detectors",
    default=None,
    help="comma list, all or none (default): their files too (hog, mmod and mtcnn need none)",
)


@click.group("weights")
def weights_cmd():
    """The ImageNet weights files the detectors start from."""


@weights_cmd.command("list")
@DETECTORS_OPTION
@FACE_DETECTORS_OPTION
def list_cmd(detectors, face_detectors):
    """Each file: the detectors using it, where it is looked for, present, hash check."""
    from tabulate import tabulate

    rows = []
    for spec, users in needed(detectors, face_detectors).items():
        present, ok = status(spec)
        rows.append([", ".join(users), spec.name, str(spec.folder), present, ok])
    click.echo(tabulate(rows, ["detectors", "file", "looked for in", "present", "hash"]))


@weights_cmd.command("fetch")
@DETECTORS_OPTION
@FACE_DETECTORS_OPTION
def fetch_cmd(detectors, face_detectors):
    """Download every file the detectors need into the frameworks' caches (hash-checked)."""
    failed = []
    for spec, users in needed(detectors, face_detectors).items():
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
