"""`dffr models pack` and `dffr models pull`: model sets to share (see `sharing`)."""

from __future__ import annotations

from pathlib import Path

import click

from dffr.detectors.sharing import CARD, MANIFEST, pack, pull


@click.group("models")
def models_cmd():
    """Share trained models: pack a set with its model card, pull one hash-checked."""


@models_cmd.command("pack")
@click.argument("models", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--ddbb", required=True, help="the training database whose models to pack")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="a new folder")
@click.option("--licence", default="unspecified", show_default=True, help="for the model card")
def pack_cmd(models, ddbb, out, licence):
    """Write MODELS/<DB>'s models, their sidecars, a model card and a sha256 manifest."""
    manifest = pack(models, ddbb, out, licence)
    n = sum(1 for f in manifest["files"] if f.endswith(".json"))
    click.echo(f"{out}: {n} model(s) of {ddbb}, {out / CARD}, {out / MANIFEST}", err=True)


@models_cmd.command("pull")
@click.argument("source")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="models folder")
def pull_cmd(source, out):
    """Fetch a packed set (a URL, hf://owner/name[@revision] or a folder), every file's
    sha256 checked before any is used, into OUT/<DB>/."""
    manifest = pull(source, out)
    n = sum(1 for f in manifest["files"] if f.endswith(".json"))
    click.echo(
        f"{out / manifest['ddbb']}: {n} model(s) of {manifest['ddbb']}, every file's sha256 "
        f"checked (use --models {out} --train-ddbb {manifest['ddbb']})",
        err=True,
    )
