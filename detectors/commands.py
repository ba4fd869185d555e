"""`dffr train`."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Annotated, Literal, get_args, get_origin, get_type_hints

import click

from dffr.clickutil import RegistryChoice, workers_option
from dffr.detectors.base import DETECTORS, DetectorConfig
from dffr.detectors.negatives import NEGATIVES
from dffr.device import PRECISIONS
from dffr.errors import DffrError
from dffr.regions.masks import REGIONS
from dffr.transforms.augment import AUGMENTATIONS, check_augment


def _option_type(annotation):
    """The click type of an option's annotation: a Literal's values as choices."""
    if get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    if get_origin(annotation) is Literal:
        values = get_args(annotation)
        return click.Choice([str(v) for v in values]), {str(v): v for v in values}
    return {int: click.INT, float: click.FLOAT, bool: click.BOOL}.get(annotation, click.STRING), {}


def detector_options(command):
    """A `--<option>` for every option a registered detector declares (a plugin's too),
    saying which detectors take it; given for a detector without it, it is refused."""
    takers: dict[str, list[str]] = {}
    found: dict[str, tuple] = {}
    for name in DETECTORS.names():
        options = DETECTORS.get(name).Options
        hints = get_type_hints(options, include_extras=True)
        for f in fields(options):
            takers.setdefault(f.name, []).append(name)
            found.setdefault(f.name, (f, hints[f.name]))
    for key, (f, annotation) in sorted(found.items(), reverse=True):
        kind, values = _option_type(annotation)
        said = f.metadata.get("help", "")
        command = click.option(
            f"--{key.replace('_', '-')}",
            key,
            type=kind,
            default=None,
            callback=(lambda ctx, p, v, values=values: values.get(v, v)) if values else None,
            help=f"{said} ({', '.join(takers[key])}; default: {f.default})",
        )(command)
    return command


@click.command("train")
@click.option("--detector", required=True, type=RegistryChoice(DETECTORS))
@click.option("--region", required=True, type=click.Choice(REGIONS))
@click.option("--cache", required=True, type=click.Path(path_type=Path, exists=True))
@click.option(
    "--ddbb", default="", help="database name for the model's file name (default: the cache's)"
)
@click.option("--epochs", default=20, show_default=True, type=click.IntRange(min=1))
@click.option("--batch", default=32, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--input-size",
    default=200,
    show_default=True,
    type=click.IntRange(min=8),
    help="network input side, px (each detector has its own minimum)",
)
@click.option(
    "--lr",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="learning rate (default: the detector's)",
)
@click.option(
    "--patience",
    default=5,
    show_default=True,
    type=click.IntRange(min=1),
    help="stop after this many epochs without a better val AUC",
)
@click.option(
    "--negatives",
    default="none",
    show_default=True,
    type=RegistryChoice(NEGATIVES, extra=("none",)),
    help="learn from real faces only: synthesise the fakes",
)
@click.option(
    "--from-scratch",
    is_flag=True,
    help="start from random weights instead of ImageNet (the paper fine-tunes from "
    "ImageNet; recorded in the model's sidecar)",
)
@click.option(
    "--imagenet",
    type=click.Path(path_type=Path),
    default=None,
    help="your own ImageNet weights file for the backbone (default: the published one, "
    "fetched into the framework's cache when absent; see `dffr weights list`)",
)
@click.option(
    "--augment",
    default="",
    help=f"comma list of training augmentations: {', '.join(AUGMENTATIONS)}",
)
@click.option(
    "--augment-p",
    default=0.5,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="probability of each augmentation, per training image",
)
@click.option(
    "--precision",
    type=click.Choice(PRECISIONS),
    default="auto",
    show_default=True,
    help="what the network computes in: auto is mixed float16 on a GPU and float32 on a "
    "CPU; bfloat16 (mixed) trains about 1.7x faster on a CPU with AVX512-BF16 or AMX "
    "(recorded in the model's sidecar; the model is scored in it too)",
)
@click.option("--seed", default=0, show_default=True)
@click.option("--out", default="models", show_default=True, type=click.Path(path_type=Path))
@click.option("--resume", is_flag=True, help="continue from the last checkpoint")
@click.option(
    "--checkpoint-minutes",
    default=0.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="write the resume checkpoint at most once per this many minutes (0: after "
    "every epoch); a resume may change it",
)
@click.option(
    "--keep-checkpoint",
    is_flag=True,
    help="keep the last checkpoint after training, so --resume can extend it "
    "with more epochs (removed by default: it is several times the model's size)",
)
@detector_options
@workers_option
@click.pass_context
def train_cmd(
    ctx,
    workers,
    detector,
    region,
    cache,
    ddbb,
    epochs,
    batch,
    input_size,
    lr,
    patience,
    negatives,
    from_scratch,
    imagenet,
    augment,
    augment_p,
    precision,
    seed,
    out,
    resume,
    checkpoint_minutes,
    keep_checkpoint,
    **options,
):
    """Train one detector on one facial region of a cached database."""
    from dffr.detectors.training import train

    try:
        augment = check_augment(augment, augment_p)
    except DffrError as e:
        raise click.BadParameter(str(e), param_hint="--augment") from None
    options = {k: v for k, v in options.items() if v is not None}
    try:
        DETECTORS.get(detector).parse_options(options)
    except DffrError as e:
        flags = " ".join(f"--{k.replace('_', '-')}" for k in options)
        raise click.BadParameter(str(e), param_hint=flags) from None
    config = DetectorConfig(
        detector,
        region=region,
        ddbb=ddbb,
        input_size=input_size,
        epochs=epochs,
        batch=batch,
        lr=lr,
        patience=patience,
        seed=seed,
        pretrained=not from_scratch,
        imagenet=str(imagenet) if imagenet else None,
        negatives=negatives,
        augment=augment,
        augment_p=augment_p,
        precision=precision,
        checkpoint_minutes=checkpoint_minutes,
        options=options,
    )
    try:
        result = train(
            config,
            cache,
            out,
            resume=resume,
            keep_checkpoint=keep_checkpoint,
            device=(ctx.obj or {}).get("device"),
            workers=workers,
        )
    except DffrError as e:
        raise click.ClickException(str(e)) from None
    auc = "n/a" if result.val_auc is None else f"{result.val_auc:.4f}"
    click.echo(f"{result.weights}: best val AUC {auc}", err=True)
