"""`dffr segment` and `dffr landmarks`: many images in, one bad file never stops the rest."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np
from tqdm import tqdm

from dffr.clickutil import RegistryChoice
from dffr.errors import DffrError
from dffr.images import read_image, write_image
from dffr.regions.face_detection import FACE_DETECTORS
from dffr.regions.landmarks import BACKENDS, LandmarkBackend, get_backend
from dffr.regions.overlay import draw_overlay
from dffr.regions.segment import MIN_FACE, detect_faces, segment_face


@dataclass
class FileResult:
    """What happened to one input: the files written, or why it failed."""

    path: Path
    written: list[Path]
    error: str | None = None


def segment_file(
    path: Path,
    out: Path,
    backend: LandmarkBackend,
    size: int = 200,
    scale: float = 1.3,
    all_faces: bool = False,
    masks: bool = False,
    min_face: int = MIN_FACE,
) -> FileResult:
    """Write `<stem>_<region>.png` (+ overlay, + input-grid masks) for one image."""
    try:
        image = read_image(path)
        faces = detect_faces(image, backend, all_faces=all_faces, min_face=min_face, source=path)
    except DffrError as e:
        return FileResult(path, [], str(e))
    segs = [segment_face(image, f, size=size, scale=scale) for f in faces]
    written = []

    def save(name: str, array: np.ndarray) -> None:
        target = out / f"{name}.png"
        write_image(target, array)
        written.append(target)

    for i, seg in enumerate(segs, start=1):
        stem = f"{path.stem}_face{i}" if all_faces else path.stem
        for region, img in seg.regions.items():
            save(f"{stem}_{region}", img)
        if masks:
            for region, m in seg.input_masks(image.shape).items():
                save(f"{stem}_{region}_mask", m.astype(np.uint8) * 255)
    save(f"{path.stem}_overlay", draw_overlay(image, segs))
    return FileResult(path, written)


def _report(failures: list[FileResult], total: int) -> None:
    for f in failures:
        click.echo(f"error: {f.error}", err=True)
    if failures:
        click.echo(f"{len(failures)} of {total} file(s) failed", err=True)
        sys.exit(1)


backend_option = click.option(
    "--backend",
    default="dlib",
    show_default=True,
    type=RegistryChoice(BACKENDS),
    help="landmark backend",
)
face_detector_option = click.option(
    "--face-detector",
    default="hog",
    show_default=True,
    type=RegistryChoice(FACE_DETECTORS),
    help="face detector the landmarks start from (see benchmarks/faces.py)",
)
min_face_option = click.option(
    "--min-face", default=MIN_FACE, show_default=True, help="smallest face width, pixels"
)


def _backend(ctx: click.Context, name: str, min_face: int, face_detector: str) -> LandmarkBackend:
    try:
        return get_backend(
            name,
            min_face=min_face,
            device=(ctx.obj or {}).get("device"),
            face_detector=face_detector,
        )
    except DffrError as e:
        raise click.ClickException(str(e)) from None


@click.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), help="output folder")
@click.option("--size", default=200, show_default=True, help="face crop side, pixels")
@click.option("--scale", default=1.3, show_default=True, help="crop enlargement of the face box")
@backend_option
@click.option("--all-faces", is_flag=True, help="every face, not only the largest")
@click.option("--masks", is_flag=True, help="also write 0/255 masks in the input's pixel grid")
@min_face_option
@face_detector_option
@click.pass_context
def segment(ctx, images, out, size, scale, backend, all_faces, masks, min_face, face_detector):
    """Cut each face into entire / eyes / nose / mouth / rest region images."""
    be = _backend(ctx, backend, min_face, face_detector)
    results = [
        segment_file(p, out, be, size, scale, all_faces, masks, min_face)
        for p in tqdm(images, desc="segment", unit="img", disable=len(images) < 2)
    ]
    done = sum(1 for r in results if r.error is None)
    click.echo(f"segmented {done} of {len(images)} image(s) into {out}", err=True)
    _report([r for r in results if r.error], len(images))


@click.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@backend_option
@click.option("--json", "as_json", is_flag=True, help="one JSON object per image (JSON Lines)")
@min_face_option
@face_detector_option
@click.pass_context
def landmarks(ctx, images, backend, as_json, min_face, face_detector):
    """Print every face's box and 68 landmarks, per image."""
    be = _backend(ctx, backend, min_face, face_detector)
    failures = []
    for p in images:
        try:
            image = read_image(p)
            faces = detect_faces(image, be, all_faces=True, min_face=min_face, source=p)
        except DffrError as e:
            failures.append(FileResult(p, [], str(e)))
            if as_json:
                click.echo(json.dumps({"image": str(p), "error": str(e)}))
            continue
        h, w = image.shape[:2]
        if as_json:
            record = {
                "image": str(p),
                "width": w,
                "height": h,
                "faces": [f.to_dict() for f in faces],
            }
            click.echo(json.dumps(record))
            continue
        click.echo(f"{p}: {len(faces)} face(s) in {w}x{h}")
        for i, f in enumerate(faces, start=1):
            box = ", ".join(f"{v:.1f}" for v in f.box)
            pts = " ".join(f"{x:.1f},{y:.1f}" for x, y in f.landmarks)
            click.echo(f"  face {i}: box ({box})\n    {pts}")
    _report(failures, len(images))


__all__ = ["FileResult", "landmarks", "segment", "segment_file"]
