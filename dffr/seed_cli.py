"""The seed system's two command lines, kept: score images with one region model.

    python deepfakes_facial_regions.py --detector DSP-FWA --region eyes --ddbb CelebDF \
        --image face.jpg [--models models/] [--save fig.png] [--json] [--pre-segmented]
    python deepfakes_facial_regions_xception.py --region mouth --ddbb DFDC --image a.png

Each image (a frame or a face photo, segmented here; or, with --pre-segmented, a region
image already cut) is scored with models/<DB>/<Detector>_<DB>_<region>.<ext> and printed
as the seed printed it: `Prediction (0 - Real, 1 - Fake): 0.87`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from dffr.datasets.base import DATASETS
from dffr.errors import DffrError
from dffr.experiments.plots import save_figure
from dffr.regions.masks import REGIONS


def parser(detectors: tuple[str, ...], prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    if len(detectors) > 1:
        p.add_argument("--detector", required=True, choices=detectors)
    p.add_argument("--region", required=True, choices=REGIONS)
    p.add_argument(
        "--ddbb",
        required=True,
        choices=DATASETS.names(),  # the registry's: a database plugin is one here too
        help="database the model was trained on",
    )
    p.add_argument(
        "--image",
        nargs="+",
        type=Path,
        default=None,
        help="images to score (default: a real photograph shipped with scikit-image)",
    )
    p.add_argument("--models", type=Path, default=Path("models"))
    p.add_argument(
        "--save", type=Path, default=None, help="save a figure of the result (.png, .pdf, ...)"
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument(
        "--pre-segmented",
        action="store_true",
        help="the images are region images already (no face detection)",
    )
    p.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N")
    return p


def _default_image() -> Path:
    from skimage import data

    from dffr.images import write_image

    path = Path(tempfile.mkdtemp(prefix="dffr-")) / "astronaut.png"
    write_image(path, data.astronaut())
    return path


def _save_problem(path: Path) -> str | None:
    """Why a figure cannot be written to `path` (None: it can), found before any image is
    scored, so that a typo or a read-only folder does not lose a finished run's figure."""
    import matplotlib
    from matplotlib.backend_bases import FigureCanvasBase

    formats = sorted(FigureCanvasBase.get_supported_filetypes())
    ext = path.suffix.lower().lstrip(".")
    if ext not in formats:
        what = f"unknown figure format {path.suffix!r}" if ext else "no extension"
        return f"{path}: {what}; end the name in one of .{', .'.join(formats)}"
    if ext == "pgf" and not shutil.which(matplotlib.rcParams["pgf.texsystem"]):
        return f"{path}: .pgf needs {matplotlib.rcParams['pgf.texsystem']}, which is not installed"
    if path.is_dir():
        return f"{path}: is a folder; give a file name"
    folder = path.parent  # made when missing: the nearest existing one must allow it
    while not os.path.exists(folder):
        folder = folder.parent
    if not folder.is_dir():
        return f"{path}: cannot make its folder: {folder} is a file"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"{path}: folder {folder} is not writable"
    if path.exists() and not os.access(path, os.W_OK):
        return f"{path}: exists and is not writable"
    return None


def _named(path: Path, e: Exception) -> str:
    """The error's message with the image it concerns in front, unless it names it."""
    msg = str(e)
    return msg if str(path) in msg else f"{path}: {msg}"


def _figure(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(3.2 * len(results), 3.6), squeeze=False)
    for ax, r in zip(axes[0], results, strict=True):
        ax.imshow(r["_region"])
        ax.set_title(
            f"{r['detector']} / {r['ddbb']} / {r['region']}\nP(fake) = {r['score']:.2f}", fontsize=9
        )
        ax.axis("off")
    save_figure(fig, path, dpi=120)


def main(argv: list[str] | None, detectors: tuple[str, ...], prog: str) -> int:
    ap = parser(detectors, prog)
    args = ap.parse_args(argv)
    if args.save and (problem := _save_problem(args.save)):
        ap.error(f"argument --save: {problem}")
    detector = getattr(args, "detector", detectors[0])
    from dffr.detectors.model_files import load_detector, model_path

    weights = model_path(args.models, detector, args.ddbb, args.region)
    if not weights.is_file():
        print(
            f"error: model not found: {weights}\n"
            f"  train it:  dffr train --detector {detector} --region {args.region} "
            f"--ddbb {args.ddbb} --cache <preprocessed {args.ddbb} cache> "
            f"--out {args.models}\n"
            f"  or put the seed system's released {weights.name} there",
            file=sys.stderr,
        )
        return 1
    try:
        model = load_detector(weights, args.device)
    except DffrError as e:
        print(f"error: {_named(weights, e)}", file=sys.stderr)
        return 1
    from dffr.images import read_image
    from dffr.regions import segment_image

    images = args.image or [_default_image()]
    results, failed = [], 0
    for path in images:
        try:
            img = read_image(path)
            if args.pre_segmented:
                region = img
            else:
                region = segment_image(img, source=path)[0].regions[args.region]
            score = float(model.predict(region[None])[0])
        except DffrError as e:  # said with its name; the other images are still scored
            print(f"error: {_named(path, e)}", file=sys.stderr)
            failed += 1
            continue
        results.append(
            {
                "image": str(path),
                "detector": detector,
                "ddbb": args.ddbb,
                "region": args.region,
                "score": round(score, 4),
                "_region": region,
            }
        )
        if not args.json:
            prefix = f"{path}: " if len(images) > 1 else ""
            print(f"{prefix}Prediction (0 - Real, 1 - Fake): {score:.2f}")
    if args.json:
        print(json.dumps([{k: v for k, v in r.items() if k != "_region"} for r in results]))
    if args.save and results:
        try:
            _figure(results, args.save)
        except (OSError, RuntimeError) as e:  # checked at the start; the disk may still fill
            print(f"error: {args.save}: cannot save the figure ({e})", file=sys.stderr)
            return 1
    return 1 if failed else 0


def seed_main(detectors: tuple[str, ...]) -> None:
    """Entry point of the two top-level scripts."""
    sys.exit(main(None, detectors, Path(sys.argv[0]).name))
