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
import sys
import tempfile
from pathlib import Path

from dffr.errors import DffrError
from dffr.experiments.plots import save_figure
from dffr.regions.masks import REGIONS

DATABASES = ("UADFV", "FaceForensics", "CelebDF", "DFDC")


def parser(detectors: tuple[str, ...], prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    if len(detectors) > 1:
        p.add_argument("--detector", required=True, choices=detectors)
    p.add_argument("--region", required=True, choices=REGIONS)
    p.add_argument(
        "--ddbb", required=True, choices=DATABASES, help="database the model was trained on"
    )
    p.add_argument(
        "--image",
        nargs="+",
        type=Path,
        default=None,
        help="images to score (default: a real photograph shipped with scikit-image)",
    )
    p.add_argument("--models", type=Path, default=Path("models"))
    p.add_argument("--save", type=Path, default=None, help="save a figure of the result")
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
    args = parser(detectors, prog).parse_args(argv)
    detector = getattr(args, "detector", detectors[0])
    from dffr.detectors.base import load_detector, model_path

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
        print(f"error: {e}", file=sys.stderr)
        return 1
    from dffr.images import read_image
    from dffr.regions import segment_image

    images = args.image or [_default_image()]
    results, failed = [], 0
    for path in images:
        try:
            img = read_image(path)
            region = img if args.pre_segmented else segment_image(img)[0].regions[args.region]
        except DffrError as e:
            print(f"error: {e}", file=sys.stderr)
            failed += 1
            continue
        score = float(model.predict(region[None])[0])
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
        _figure(results, args.save)
    return 1 if failed else 0


def seed_main(detectors: tuple[str, ...]) -> None:
    """Entry point of the two top-level scripts."""
    sys.exit(main(None, detectors, Path(sys.argv[0]).name))
