"""`dffr fuse`."""

from __future__ import annotations

from pathlib import Path

import click

from dffr.errors import DffrError
from dffr.fusion.fuse import OVER, SCALERS
from dffr.fusion.rules import FUSION


@click.command("fuse")
@click.option("--scores", required=True, type=click.Path(path_type=Path, exists=True))
@click.option("--over", default="regions", show_default=True, type=click.Choice(OVER))
@click.option(
    "--rule",
    default="mean",
    show_default=True,
    help=f"{', '.join(FUSION.names())}, or path/to/rules.py:ATTR (a function or an "
    "estimator); hyper-parameters after a colon: logistic:C=0.5,max_iter=200",
)
@click.option(
    "--subset",
    default=None,
    help="comma list of inputs (default over regions: eyes,nose,mouth,rest)",
)
@click.option(
    "--norm",
    default="none",
    show_default=True,
    type=click.Choice(list(SCALERS)),
    help="score normalisation, fitted on the val split",
)
@click.option("--out", required=True, type=click.Path(path_type=Path))
def fuse_cmd(scores, over, rule, subset, norm, out):
    """Fuse scores over regions, detectors or both -> fused.parquet."""
    from dffr.fusion.fuse import fuse
    from dffr.scoring.scores import read_scores

    subset_list = [s.strip() for s in subset.split(",")] if subset else None
    try:
        fused = fuse(read_scores(scores), over=over, rule=rule, subset=subset_list, norm=norm)
    except DffrError as e:
        raise click.ClickException(str(e)) from None
    out.parent.mkdir(parents=True, exist_ok=True)
    fused.to_parquet(out, index=False)
    click.echo(
        f"{out}: {len(fused)} fused row(s) "
        f"({', '.join(sorted(set(fused['detector'] + ' / ' + fused['region'])))})",
        err=True,
    )
