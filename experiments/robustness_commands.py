"""`dffr robustness`."""

from __future__ import annotations

from pathlib import Path

import click

from dffr.clickutil import workers_option
from dffr.errors import DffrError
from dffr.fusion.fuse import OVER, SCALERS
from dffr.transforms.perturbations import PERTURBATIONS


def _levels(values: tuple[str, ...]) -> dict[str, list[float]]:
    """`NAME=L1,L2,...` options -> {name: levels}."""
    out = {}
    for value in values:
        name, sep, levels = value.partition("=")
        try:
            parsed = [float(v) for v in levels.split(",") if v.strip()]
        except ValueError:
            parsed = []
        if not sep or not parsed:
            raise click.BadParameter(
                f"{value!r}: write NAME=L1,L2,... e.g. jpeg=0,20,40", param_hint="--levels"
            )
        out[name.strip()] = parsed
    return out


def _fusion(values: tuple[str, ...], subset: str | None, norm: str) -> list[dict]:
    """`OVER:RULE` options -> fusion specs as the experiment YAML writes them."""
    specs = []
    for value in values:
        over, _, rule = value.partition(":")
        if over not in OVER or not rule:
            raise click.BadParameter(
                f"{value!r}: write OVER:RULE with OVER one of {', '.join(OVER)}, "
                "e.g. regions:mean or regions:my_rules.py:geometric_mean",
                param_hint="--fusion",
            )
        spec = {"over": over, "rule": rule, "norm": norm}
        if subset:
            spec["subset"] = [s.strip() for s in subset.split(",") if s.strip()]
        specs.append(spec)
    return specs


@click.command("robustness")
@click.option(
    "--scores-from",
    required=True,
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="a scores file of `dffr score`: which models and which frames to re-score",
)
@click.option("--cache", required=True, type=click.Path(path_type=Path, exists=True))
@click.option("--models", default="models", show_default=True, type=click.Path(path_type=Path))
@click.option(
    "--perturb",
    default=",".join(PERTURBATIONS.names()),
    show_default=True,
    help="comma list of perturbations",
)
@click.option(
    "--levels",
    multiple=True,
    help="NAME=L1,L2,... levels of one perturbation (repeatable); 0 = unperturbed. "
    "Defaults: "
    + "; ".join(
        f"{n}={','.join(f'{v:g}' for v in PERTURBATIONS.get(n).levels)} "
        f"({PERTURBATIONS.get(n).unit})"
        for n in PERTURBATIONS.names()
    ),
)
@click.option(
    "--fusion",
    multiple=True,
    help="OVER:RULE fused results to follow too (repeatable), e.g. regions:mean or "
    "regions:logistic:C=0.5; "
    "learned rules are fitted on the scores file's unperturbed val rows",
)
@click.option("--subset", default=None, help="comma list of the fused inputs (as `dffr fuse`)")
@click.option(
    "--norm",
    default="none",
    show_default=True,
    type=click.Choice(list(SCALERS)),
    help="score normalisation before fusion, fitted on the unperturbed val rows",
)
@click.option("--test-ddbb", default=None, help="the cache's database, if the file holds several")
@click.option(
    "--split", default="test", show_default=True, type=click.Choice(["train", "val", "test"])
)
@click.option("--batch", default=32, show_default=True)
@click.option("--seed", default=0, show_default=True, help="seed of the noise")
@click.option("--video-level", is_flag=True, help="metrics per video (mean of its frames)")
@click.option("--bootstrap", default=0, show_default=True, help="resamples for 95% intervals")
@click.option("--out", required=True, type=click.Path(path_type=Path))
@workers_option
@click.pass_context
def robustness_cmd(
    ctx,
    workers,
    scores_from,
    cache,
    models,
    perturb,
    levels,
    fusion,
    subset,
    norm,
    test_ddbb,
    split,
    batch,
    seed,
    video_level,
    bootstrap,
    out,
):
    """AUC of scored models as their test faces are degraded (JPEG, blur, noise, ...)."""
    from dffr.experiments.robustness import robustness, sweep_levels

    try:
        sweep = sweep_levels(perturb.split(","), _levels(levels))
    except DffrError as e:
        raise click.BadParameter(str(e), param_hint="--perturb / --levels") from None
    try:
        rep = robustness(
            scores_from,
            cache,
            models,
            sweep,
            out,
            fusion=_fusion(fusion, subset, norm),
            split=split,
            test_ddbb=test_ddbb,
            device=(ctx.obj or {}).get("device"),
            batch=batch,
            seed=seed,
            video_level=video_level,
            bootstrap=bootstrap,
            workers=workers,
        )
    except DffrError as e:
        raise click.ClickException(str(e)) from None
    for path in rep.missing:
        click.echo(f"missing model: {path} (left out)", err=True)
    if "md" not in rep.written:
        raise click.ClickException("nothing was scored: no model of the scores file was found")
    click.echo(rep.written["md"].read_text())
    click.echo(
        f"{out}: {len(rep.scored)} (perturbation, level) scored, {len(rep.skipped)} already "
        "there; tables robustness.csv/.md, plots auc_<perturbation>.png",
        err=True,
    )
