"""The `dffr` command: a thin layer over the stages' Python functions."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from dffr.clickutil import Commands
from dffr.datasets.commands import merge_cache_cmd, preprocess_cmd, regions_cmd
from dffr.detect_commands import detect_cmd, serve_cmd
from dffr.detectors.commands import train_cmd
from dffr.detectors.models_commands import models_cmd
from dffr.detectors.weights_commands import weights_cmd
from dffr.device import resolve_device
from dffr.errors import DffrError
from dffr.experiments.commands import evaluate_cmd, experiment_cmd
from dffr.experiments.explain_commands import explain_cmd, explain_summary_cmd
from dffr.experiments.robustness_commands import robustness_cmd
from dffr.fusion.commands import fuse_cmd
from dffr.regions.commands import landmarks, segment
from dffr.scoring.commands import score_cmd


@click.group(cls=Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--device",
    default=None,
    help="auto (CUDA when present, else CPU), cpu, cuda or cuda:N; default: $DFFR_DEVICE, "
    "else auto",
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
        hint = "--device" if device is not None else "$DFFR_DEVICE"
        raise click.BadParameter(str(e), param_hint=hint) from None


@main.command()
@click.option("--out", default="demo_out", show_default=True, type=click.Path(path_type=Path))
@click.option(
    "--faces",
    type=click.Path(path_type=Path, exists=True, file_okay=False),
    default=None,
    help="a folder of your own real face photographs to add",
)
@click.option(
    "--quick", is_flag=True, help="entire, eyes and mouth only (about three fifths of the time)"
)
@click.pass_context
def demo(ctx: click.Context, out: Path, faces: Path | None, quick: bool) -> None:
    """The main job on embedded data: a small demo database, studied end to end."""
    import time
    import warnings

    from skimage import data

    from dffr.datasets import get_dataset
    from dffr.datasets.preprocess import Settings, preprocess
    from dffr.experiments.demo import MIN_FACE, build_database, demo_experiment
    from dffr.experiments.runner import Experiment, run
    from dffr.images import write_image

    start = time.time()
    photo = out / "astronaut.png"
    write_image(photo, data.astronaut())
    ctx.invoke(segment, images=(photo,), out=out / "regions", masks=False)
    db, cache = out / "db", out / "cache"
    shared = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    if not (db / "test").is_dir():
        counts = build_database(db, faces, shared if shared.is_dir() else None)
        fakes = ", ".join(f"{k} {v}" for k, v in counts.items() if k not in ("real", "sources"))
        click.echo(
            f"demo database: {counts['real']} real images from {counts['sources']} "
            f"faces; fakes: {fakes}",
            err=True,
        )
    ds = get_dataset("folder", db)
    preprocess(ds.items(), db, cache, Settings(frames=1, size=200, min_face=MIN_FACE), database=ds)
    # one note per distinct warning (e.g. no ImageNet weights), not one per model trained
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        try:
            written = run(
                Experiment.load(demo_experiment(out, cache, quick)),
                out / "results",
                device=(ctx.obj or {}).get("device"),
            )
        except DffrError as e:
            raise click.ClickException(str(e)) from None
    for note in dict.fromkeys(str(w.message) for w in caught):
        click.echo(f"note: {note}", err=True)
    click.echo(written["intra"].read_text())
    if "methods" in written:
        click.echo(written["methods"].read_text())
    click.echo(
        f"in {out / 'results'}: ROC curves (roc_demo_to_demo.png), AUC per manipulation "
        f"(methods_demo_to_demo.png), tables, metrics and scores; "
        f"{time.time() - start:.0f} s in all",
        err=True,
    )


for command in (
    segment,
    landmarks,
    preprocess_cmd,
    merge_cache_cmd,
    regions_cmd,
    train_cmd,
    weights_cmd,
    models_cmd,
    detect_cmd,
    serve_cmd,
    score_cmd,
    fuse_cmd,
    evaluate_cmd,
    experiment_cmd,
    explain_cmd,
    explain_summary_cmd,
    robustness_cmd,
):
    main.add_command(command)
