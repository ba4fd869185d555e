"""The `dffr` command: a thin layer over the stages' Python functions."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from dffr.datasets.commands import merge_cache_cmd, preprocess_cmd, regions_cmd
from dffr.detectors.commands import train_cmd
from dffr.device import resolve_device
from dffr.errors import DffrError
from dffr.experiments.commands import evaluate_cmd, experiment_cmd, score_cmd
from dffr.fusion.commands import fuse_cmd
from dffr.regions.commands import landmarks, segment


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--device",
    default="auto",
    show_default=True,
    help="auto (CUDA when present, else CPU), cpu, cuda or cuda:N",
)
@click.option("-v", "--verbose", is_flag=True, help="log more")
@click.version_option(package_name="dffr")
@click.pass_context
def main(ctx: click.Context, device: str, verbose: bool) -> None:
    """DeepFakes detection by facial regions (Tolosana et al., EAAI 2022, and beyond)."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        ctx.obj = {"device": str(resolve_device(device))}
    except DffrError as e:
        raise click.BadParameter(str(e), param_hint="--device") from None


@main.command()
@click.option("--out", default="demo_out", show_default=True, type=click.Path(path_type=Path))
@click.pass_context
def demo(ctx: click.Context, out: Path) -> None:
    """The main job on embedded data: segment a real photograph shipped with scikit-image."""
    from skimage import data

    from dffr.images import write_image

    photo = out / "astronaut.png"
    write_image(photo, data.astronaut())
    ctx.invoke(segment, images=(photo,), out=out, masks=True)
    click.echo(f"wrote the five regions and {out / 'astronaut_overlay.png'}")


for command in (
    segment,
    landmarks,
    preprocess_cmd,
    merge_cache_cmd,
    regions_cmd,
    train_cmd,
    score_cmd,
    fuse_cmd,
    evaluate_cmd,
    experiment_cmd,
):
    main.add_command(command)
