"""Each face detector on the real samples in ../shared/data: faces found, speed, boxes.

    .venv/bin/python benchmarks/faces.py [--detectors hog,mtcnn,mmod] [--frames 8]

Per detector and set (FF++ c23 videos, the DFDC video, that video darkened to a dim
room's levels, the DFDC face crops): frames with a face / frames, frames per second of a
full-frame search on this machine, and the median IoU with dlib's HOG box where both find
the face (the detector's box redrawn as HOG draws them). Then, for `to_points`, how each
detector's box maps to the tight box of the 68 points (ground truth on the landmark
photos; dlib's points placed from HOG's box on the video frames): median offsets of
x0, y0, x1, y1 in units of the box's width and height.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from dffr.datasets.tracking import overlap
from dffr.datasets.video import read_frames
from dffr.images import read_image
from dffr.regions import get_backend
from dffr.regions.backends.given import annotated_faces
from dffr.regions.face_detection import FACE_DETECTORS, convert, get_face_detector
from dffr.regions.landmarks import landmark_box
from dffr.transforms.perturbations import perturb

DATA = Path(__file__).resolve().parents[2] / "shared/data"
DIM, GRAIN = 0.85, 3.0  # light lost and sensor noise: HOG's limit on the DFDC video


def darken(frame: np.ndarray, seed: int = 0) -> np.ndarray:
    """A frame as a dim room's camera gives it: 85% of the light lost, grain added."""
    return perturb(perturb(frame, "dim", DIM), "noise", GRAIN, seed=seed)


def video_frames(paths: list[Path], n: int) -> list[np.ndarray]:
    return [f for p in paths for _, f in read_frames(p, n)]


def sets(n: int) -> dict[str, list[np.ndarray]]:
    ffpp = sorted((DATA / "ffpp").rglob("*.mp4"))
    dfdc = sorted((DATA / "dfdc").rglob("*.mp4"))
    dfdc_frames = video_frames(dfdc, n)
    return {
        "FF++ c23": video_frames(ffpp, n),
        "DFDC": dfdc_frames,
        "DFDC dark": [darken(f, i) for i, f in enumerate(dfdc_frames)],
        "DFDC crops": [read_image(p) for p in sorted((DATA / "dfdc_face_crops").rglob("*.png"))],
    }


def offsets(box: np.ndarray, points_box: np.ndarray) -> np.ndarray:
    w, h = box[2] - box[0], box[3] - box[1]
    return (points_box - box) / np.array([w, h, w, h])


def matched(found, target: np.ndarray):
    best = max(found, key=lambda f: overlap(f[0], target), default=None)
    return best if best is not None and overlap(best[0], target) > 0.3 else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--detectors", default=",".join(FACE_DETECTORS.names()))
    ap.add_argument("--frames", type=int, default=8, help="sampled frames per video")
    args = ap.parse_args()
    data = sets(args.frames)
    annotated = [(read_image(p), pts) for p, pts in annotated_faces(DATA / "landmarks")]
    hog = get_face_detector("hog")
    dlib = get_backend("dlib")
    hog_boxes = {k: [hog(f) for f in frames] for k, frames in data.items()}
    # reference points on the video frames: dlib's, from HOG's largest box
    ref = [
        (frame, dlib.landmarks(frame, [max(found, key=lambda f: f[0][2] - f[0][0])[0]])[0])
        for frame, found in zip(
            data["FF++ c23"] + data["DFDC"], hog_boxes["FF++ c23"] + hog_boxes["DFDC"], strict=True
        )
        if found
    ]
    print(f"{'detector':10} {'set':11} {'found':>9} {'fps':>7} {'IoU vs hog':>10}")
    fitted = {}
    for name in (d.strip() for d in args.detectors.split(",")):
        try:
            det = get_face_detector(name)
        except Exception as e:
            print(f"{name:10} unavailable: {e}")
            continue
        for key, frames in data.items():
            t = time.perf_counter()
            found = [det(f) for f in frames]
            fps = len(frames) / (time.perf_counter() - t)
            ious = [
                max(overlap(convert(b, name, "hog"), h[0]) for b, _ in f)
                for f, hs in zip(found, hog_boxes[key], strict=True)
                for h in hs[:1]
                if f
            ]
            hit = sum(bool(f) for f in found)
            iou = f"{np.median(ious):.2f}" if ious else "-"
            print(f"{name:10} {key:11} {hit:>4}/{len(frames):<4} {fps:7.2f} {iou:>10}")
        rows = []
        for image, pts in annotated + ref:
            f = matched(det(image), landmark_box(pts))
            if f is not None:
                rows.append(offsets(f[0], landmark_box(pts)))
        if rows:
            fitted[name] = np.median(rows, axis=0)
            print(
                f"{name:10} to_points from {len(rows)} faces: "
                + ", ".join(f"{v:+.3f}" for v in fitted[name])
            )
    for name, v in fitted.items():
        print(f"{name}: to_points = ({', '.join(f'{x:.3f}' for x in v)})")


if __name__ == "__main__":
    main()
