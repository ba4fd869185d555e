"""`dffr explain` (one model, images in, heat-map figures out) and `dffr explain-summary`
(Grad-CAM over a cached database: heat shares per facial part and mean aligned maps)."""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np
from tqdm import tqdm

from dffr.clickutil import RegistryChoice, model_selection, selected
from dffr.detectors.base import DETECTORS
from dffr.detectors.explain import METHODS
from dffr.errors import DffrError
from dffr.experiments.plots import save_figure
from dffr.regions.commands import FileResult, _report
from dffr.regions.masks import REGIONS


def _gradient_rgb(gradients: np.ndarray) -> np.ndarray:
    """A signed (H, W, 3) gradient as an image: 0 is mid-grey, the largest |value| 0 / 1."""
    top = float(np.abs(gradients).max()) or 1.0
    return np.clip(0.5 + 0.5 * gradients / top, 0.0, 1.0)


def heat_figure(
    path: Path, title: str, image: np.ndarray, heat: np.ndarray, gradients=None
) -> Path:
    """The image, the heat map over it (more opaque where hotter) and, for the guided
    methods, the guided gradient."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = 2 if gradients is None else 3
    fig, axes = plt.subplots(1, panels, figsize=(3.4 * panels, 3.9))
    axes[0].imshow(image)
    axes[0].set_title("input", fontsize=8)
    axes[1].imshow(image)
    axes[1].imshow(heat, cmap="jet", vmin=0, vmax=1, alpha=np.clip(0.7 * heat, 0, 1))
    axes[1].set_title("heat", fontsize=8)
    if gradients is not None:
        axes[2].imshow(_gradient_rgb(gradients))
        axes[2].set_title("guided gradient", fontsize=8)
    for ax in axes:
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    return save_figure(fig, path, dpi=120)


def write_explanation(out: Path, stem: str, title: str, region_image, explanation, frame, crop):
    """<stem>_<method>_heat.png (the heat map, 8-bit grey, in the region image's grid),
    <stem>_<method>_region.png and, given the frame and its crop, <stem>_<method>_frame.png
    (the heat mapped back through the crop's affine)."""
    from dffr.detectors.explain import to_frame
    from dffr.images import write_image

    base = out / f"{stem}_{explanation.method}"
    heat = explanation.heat[0]
    grads = None if explanation.gradients is None else explanation.gradients[0]
    written = [base.with_name(base.name + "_heat.png")]
    write_image(written[0], np.round(heat * 255).astype(np.uint8))
    written.append(
        heat_figure(base.with_name(base.name + "_region.png"), title, region_image, heat, grads)
    )
    if crop is not None:
        on_frame = to_frame(heat, crop.matrix, frame.shape)
        written.append(
            heat_figure(base.with_name(base.name + "_frame.png"), title, frame, on_frame)
        )
    return written


@click.command("explain")
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--detector", required=True, type=RegistryChoice(DETECTORS))
@click.option("--region", required=True, type=click.Choice(REGIONS))
@click.option("--ddbb", required=True, help="database the model was trained on")
@click.option("--models", default="models", show_default=True, type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), help="output folder")
@click.option("--method", default="gradcam", show_default=True, type=click.Choice(METHODS))
@click.option(
    "--layer",
    default=None,
    help="module (PyTorch, e.g. resnet.resnet.layer4) or layer (Keras, e.g. "
    "block14_sepconv2_act) to explain; default: the last convolutional block",
)
@click.option(
    "--pre-segmented", is_flag=True, help="the images are region images already (no face detection)"
)
@click.pass_context
def explain_cmd(ctx, images, detector, region, ddbb, models, out, method, layer, pre_segmented):
    """Heat maps of what a region model's P(fake) rests on, over the region and the frame."""
    from dffr.detectors.explain import explainer
    from dffr.detectors.model_files import load_detector, model_path
    from dffr.images import read_image
    from dffr.regions import segment_image

    weights = model_path(models, detector, ddbb, region)
    if not weights.is_file():
        raise click.ClickException(
            f"model not found: {weights} (train it with `dffr train --detector {detector} "
            f"--region {region} --ddbb {ddbb} --out {models}`, or put the seed system's "
            f"released {weights.name} there)"
        )
    try:
        model = load_detector(weights, (ctx.obj or {}).get("device"))
    except DffrError as e:
        raise click.ClickException(str(e)) from None
    try:
        ex = explainer(model, layer)
    except DffrError as e:
        if layer:
            raise click.BadParameter(str(e), param_hint="--layer") from None
        raise click.ClickException(str(e)) from None
    failures = []
    for path in tqdm(images, desc="explain", unit="img", disable=len(images) < 2):
        try:
            frame = read_image(path)
            if pre_segmented:
                region_image, crop = frame, None
            else:
                seg = segment_image(frame, source=path)[0]
                region_image, crop = seg.regions[region], seg.crop
            explanation = ex.explain(region_image[None], method)
        except DffrError as e:
            failures.append(FileResult(path, [], str(e) if str(path) in str(e) else f"{path}: {e}"))
            continue
        score = float(explanation.scores[0])
        title = (
            f"{detector} / {ddbb} / {region}: P(fake) = {score:.2f}\n"
            f"{method} at {explanation.layer}"
        )
        write_explanation(out, path.stem, title, region_image, explanation, frame, crop)
        click.echo(f"{path}: P(fake) = {score:.2f}")
    click.echo(
        f"explained {len(images) - len(failures)} of {len(images)} image(s) into {out}", err=True
    )
    _report(failures, len(images))


@click.command("explain-summary")
@model_selection("--ddbb")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="a random N faces")
@click.option("--batch", default=16, show_default=True)
@click.option("--out", required=True, type=click.Path(path_type=Path), help="output folder")
@click.pass_context
def explain_summary_cmd(ctx, cache, models, ddbb, detectors, regions, split, limit, batch, out):
    """Grad-CAM over a cached split: heat shares per facial part and mean aligned maps,
    per detector, region, and real / fake x correct / wrong."""
    from dffr.experiments.explain_summary import explain_summary

    dets, regs = selected(detectors, regions)
    try:
        rep = explain_summary(
            cache,
            models,
            ddbb,
            out,
            dets,
            regs,
            split,
            limit=limit,
            device=(ctx.obj or {}).get("device"),
            batch=batch,
        )
    except DffrError as e:
        raise click.ClickException(str(e)) from None
    for path in rep.missing:
        click.echo(f"missing model: {path}", err=True)
    md = out / "shares.md"
    if md.is_file():
        click.echo(md.read_text())
    click.echo(
        f"{rep.faces} face(s) explained, {rep.failures} failure(s) (in {out / 'failures.csv'}); "
        f"tables and figures in {out}",
        err=True,
    )
