"""`dffr evaluate` and `dffr experiment`."""

from __future__ import annotations

from pathlib import Path

import click

from dffr.clickutil import workers_option
from dffr.errors import DffrError


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
    from dffr.experiments.tables import no_face_note
    from dffr.scoring import read_scores

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
