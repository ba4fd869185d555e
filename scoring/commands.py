"""`dffr score`: the scoring stage from the command line."""

from __future__ import annotations

from pathlib import Path

import click

from dffr.clickutil import model_selection, selected, workers_option
from dffr.errors import DffrError


@click.command("score")
@model_selection("--train-ddbb")
@click.option("--batch", default=32, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--tta",
    default="",
    help="test-time augmentation: comma list of hflip, rotateN (+-N degrees); "
    "P(fake) is averaged over them and the image itself",
)
@click.option(
    "--test-ddbb",
    default=None,
    help="the name the scored database goes by in the rows (default: the cache's); "
    "fusion fits only on val rows whose name is the models' training database",
)
@click.option("--out", required=True, type=click.Path(path_type=Path))
@workers_option
@click.pass_context
def score_cmd(
    ctx, cache, models, train_ddbb, detectors, regions, split, batch, tta, test_ddbb, out, workers
):
    """Score every (detector, region) model on a cached split -> scores.parquet."""
    from dffr.scoring import score
    from dffr.transforms import parse_tta

    dets, regs = selected(detectors, regions)
    try:
        views = parse_tta(tta)
    except DffrError as e:
        raise click.BadParameter(str(e), param_hint="--tta") from None
    try:
        rep = score(
            cache,
            models,
            train_ddbb,
            out,
            dets,
            regs,
            split,
            device=(ctx.obj or {}).get("device"),
            batch=batch,
            tta=views,
            test_ddbb=test_ddbb,
            workers=workers,
        )
    except DffrError as e:
        raise click.ClickException(str(e)) from None
    for path in rep.missing:
        click.echo(
            f"missing model: {path} (train it with `dffr train`, or put the seed's "
            "released model there)",
            err=True,
        )
    for det, region in rep.rescored:
        click.echo(f"{det} {region}: its model file changed since it was scored; scored again")
    click.echo(
        f"{out}: scored {len(rep.scored)} model(s), {len(rep.skipped)} already there, "
        f"{len(rep.missing)} missing; {rep.rows} row(s)",
        err=True,
    )
    if not rep.scored and not rep.skipped:
        raise click.ClickException("no model to score with")
