"""`dffr detect`: unlabelled images and videos in, a verdict per face and its reasons out."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from tqdm import tqdm

from dffr.errors import DffrError
from dffr.regions.commands import face_detector_option


def _csv(value: str | None):
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def _table(d) -> str:
    if d.error:
        return f"{d.path}: {d.error}"
    lines = [f"{d.path} ({d.kind}, {len(d.frames)} frame(s) sampled, fusion {d.fusion})"]
    for f in d.faces:
        lines.append(
            f"  face {f.track}: {f.verdict}  fused P(fake) {f.fused:.4f} vs threshold "
            f"{f.threshold:.4f} ({f.threshold_source}); seen in {len(f.frames)} frame(s)"
        )
        lines += [f"    {k:24s} {v:.4f}" for k, v in f.scores.items()]
    return "\n".join(lines)


def _load(ctx, models, ddbb, detectors, regions, fusion, threshold, face_detector):
    """The models, loaded once for every file (or a message naming what is missing)."""
    from dffr.detect import Models

    try:
        return Models(
            models,
            ddbb,
            detectors,
            regions,
            fusion,
            threshold,
            (ctx.obj or {}).get("device"),
            face_detector,
        )
    except (DffrError, KeyError) as e:
        raise click.ClickException(str(e).strip("'\"")) from None


@click.command("detect")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--models", default="models", show_default=True, type=click.Path(path_type=Path))
@click.option("--ddbb", required=True, help="the training database whose models to use")
@click.option("--detectors", default=None, help="comma list (default: every one found)")
@click.option("--regions", default=None, help="comma list (default: every one found)")
@click.option("--fusion", default="mean", show_default=True, help="a fixed fusion rule")
@click.option("--frames", default=20, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--threshold",
    default=None,
    type=click.FloatRange(0, 1),
    help="P(fake) at and above which a face is called fake (default: the models' own, "
    "chosen on their validation faces)",
)
@click.option("--json", "as_json", is_flag=True, help="one JSON object per input (JSON Lines)")
@click.option("--report", default=None, type=click.Path(path_type=Path), help="an HTML report")
@face_detector_option
@click.pass_context
def detect_cmd(
    ctx,
    inputs,
    models,
    ddbb,
    detectors,
    regions,
    fusion,
    frames,
    threshold,
    as_json,
    report,
    face_detector,
):
    """Is each face of these images / videos fake? Verdict, per-region scores, report."""
    from dffr.detect import inputs as expand

    loaded = _load(
        ctx, models, ddbb, _csv(detectors), _csv(regions), fusion, threshold, face_detector
    )
    files = expand(inputs)
    results = []
    for path in tqdm(files, desc="detect", unit="file", disable=len(files) < 2 or as_json):
        d = loaded(path, frames)
        results.append(d)
        click.echo(d.to_json() if as_json else _table(d))
    if report is not None:
        from dffr.detect_report import write_report

        click.echo(f"report: {write_report(report, loaded, results)}", err=True)
    failed = [d for d in results if d.error]
    if failed:
        click.echo(f"{len(failed)} of {len(results)} input(s) gave no verdict", err=True)
        sys.exit(1)


@click.command("serve")
@click.option("--models", default="models", show_default=True, type=click.Path(path_type=Path))
@click.option("--ddbb", required=True, help="the training database whose models to use")
@click.option("--fusion", default="mean", show_default=True, help="a fixed fusion rule")
@click.option("--threshold", default=None, type=click.FloatRange(0, 1))
@click.option("--frames", default=20, show_default=True, type=click.IntRange(min=1))
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--max-upload-mb", default=200.0, show_default=True, type=click.FloatRange(min=0.001))
@face_detector_option
@click.pass_context
def serve_cmd(
    ctx, models, ddbb, fusion, threshold, frames, host, port, max_upload_mb, face_detector
):
    """A local web page: drop an image or a video, see the verdict and its reasons."""
    import uvicorn

    from dffr.serve import make_app

    if host not in ("127.0.0.1", "localhost", "::1"):
        click.echo(
            f"warning: serving on {host}: anyone who can reach this machine can upload files "
            "to it and use its models",
            err=True,
        )
    loaded = _load(ctx, models, ddbb, None, None, fusion, threshold, face_detector)
    click.echo(f"dffr serve: http://{host}:{port}/ (models of {ddbb} loaded)", err=True)
    uvicorn.run(make_app(loaded, max_upload_mb, frames), host=host, port=port, log_level="warning")
