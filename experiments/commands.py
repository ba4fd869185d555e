"""`dffr score` and `dffr evaluate`."""

from __future__ import annotations

from pathlib import Path

import click

from dffr.clickutil import workers_option
from dffr.errors import DffrError
from dffr.regions.masks import REGIONS


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

    dets, regs = _csv(detectors, PAPER_DETECTORS), _csv(regions, REGIONS)
    for values, valid, hint in ((dets, DETECTORS, "--detectors"), (regs, REGIONS, "--regions")):
        for v in values:
            if v not in valid:
                raise click.BadParameter(f"{v!r}: choose from {list(valid)}", param_hint=hint)
    return dets, regs


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
    from dffr.experiments.scoring import parse_tta, score

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


@click.command("evaluate")
@click.option("--scores", required=True, type=click.Path(path_type=Path, exists=True))
@click.option("--level", default="frame", show_default=True, type=click.Choice(["frame", "video"]))
@click.option("--split", default="test", show_default=True)
@click.option(
    "--bootstrap",
    default=1000,
    show_default=True,
    type=click.IntRange(min=0),
    help="bootstrap resamples over videos for 95%% intervals (0: none)",
)
@click.option(
    "--no-face-score",
    default=0.5,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="video level: the score of a test video in which no face was found",
)
@click.option("--out", type=click.Path(path_type=Path), default=None, help="also write a CSV")
def evaluate_cmd(scores, level, split, bootstrap, no_face_score, out):
    """AUC, EER, AP and accuracy per (train, test, detector, region), with 95% CIs;
    test frames and videos without a face are counted."""
    from dffr.experiments.metrics import evaluate
    from dffr.experiments.scoring import read_scores
    from dffr.experiments.tables import no_face_note

    try:
        df = read_scores(scores)
    except DffrError as e:
        raise click.ClickException(str(e)) from None
    df = df[df["split"] == split]
    if df.empty:
        raise click.ClickException(f"{scores}: no rows in split {split!r}")
    table = evaluate(df, level=level, n_bootstrap=bootstrap, no_face_score=no_face_score)
    if out:
        table.to_csv(out, index=False)
    show = table[
        ["train_ddbb", "test_ddbb", "detector", "region", "n", "no_face_frames", "no_face_videos"]
    ].copy()
    for m in ("auc", "eer", "ap", "acc"):
        show[m] = table[m].map(lambda v: f"{v:.3f}")
        if f"{m}_lo" in table:
            show[m] += [
                f" [{lo:.3f}, {hi:.3f}]"
                for lo, hi in zip(table[f"{m}_lo"], table[f"{m}_hi"], strict=True)
            ]
    click.echo(show.to_string(index=False))
    note = no_face_note(table)
    click.echo(f"without a face: {note}" if note else "every sampled frame had a face", err=True)


@click.command("experiment")
@click.argument("spec", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--out", default="results", show_default=True, type=click.Path(path_type=Path))
@click.option(
    "--dry-run",
    is_flag=True,
    help="check everything and print the plan (data, models, ImageNet files, fusion, "
    "warnings) without training; exit status 1 when the run would stop",
)
@workers_option
@click.pass_context
def experiment_cmd(ctx, spec, out, dry_run, workers):
    """Run an experiment (YAML): train, score and fuse what is missing; write the tables."""
    from dffr.experiments.runner import Experiment, run

    try:
        exp = Experiment.load(spec)
        if dry_run:
            from dffr.experiments.plan import plan

            p = plan(exp)
            click.echo(p.text)
            if p.errors:
                raise SystemExit(1)
            return
        written = run(exp, out, device=(ctx.obj or {}).get("device"), workers=workers)
    except DffrError as e:
        raise click.ClickException(str(e)) from None
    for name in ("intra", "inter"):
        if name in written:
            click.echo(written[name].read_text())
    if "no_face" in written:
        click.echo(f"without a face: {written['no_face'].read_text().strip()}", err=True)
    click.echo(f"tables, metrics, ROC curves and other pictures in {out}", err=True)
