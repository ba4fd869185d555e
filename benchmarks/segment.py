"""Frames per second of detect + landmarks + five regions on a real 1080p DFDC video.

    .venv/bin/python benchmarks/segment.py [VIDEO] [--frames 30]

Prints the time per stage, each stage's share, and the resulting frames per second,
first detecting in every frame (what `dffr segment` does on single images), then
detecting once and reusing the box for landmarks on the following frames (what a
tracker makes possible).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np

from dffr.regions import Face, get_backend
from dffr.regions.segment import segment_face

DEFAULT = Path(__file__).resolve().parents[2] / "shared/data/dfdc/dfdc_train_part_0/brtujopkby.mp4"


def decode(path: Path, n: int) -> tuple[list[np.ndarray], float]:
    cap = cv2.VideoCapture(str(path))
    frames, t = [], time.perf_counter()
    while len(frames) < n:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()
    return frames, time.perf_counter() - t


def run(frames: list[np.ndarray], detect_every_frame: bool) -> dict[str, float]:
    be = get_backend("dlib")
    times = {"detect": 0.0, "landmarks": 0.0, "regions": 0.0}
    box = None
    for frame in frames:
        t0 = time.perf_counter()
        if detect_every_frame or box is None:
            found = be.find_faces(frame)
            box = max(found, key=lambda b: b[0][2] - b[0][0])[0]
        t1 = time.perf_counter()
        lm = be.landmarks(frame, [box])[0]
        t2 = time.perf_counter()
        seg = segment_face(frame, Face(box, lm), size=200)
        _ = seg.regions
        t3 = time.perf_counter()
        times["detect"] += t1 - t0
        times["landmarks"] += t2 - t1
        times["regions"] += t3 - t2
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("video", nargs="?", type=Path, default=DEFAULT)
    ap.add_argument("--frames", type=int, default=30)
    args = ap.parse_args()
    if not args.video.is_file():
        raise SystemExit(
            f"video not found: {args.video} (pass one, or put ../shared beside the repo)"
        )
    frames, t_decode = decode(args.video, args.frames)
    h, w = frames[0].shape[:2]
    print(
        f"{args.video.name}: {len(frames)} frames of {w}x{h}, "
        f"decode {len(frames) / t_decode:.1f} fps"
    )
    results = {}
    for label, every in [("detect every frame", True), ("detect once, reuse box", False)]:
        times = run(frames, every)
        total = sum(times.values())
        results[label] = len(frames) / total
        shares = ", ".join(
            f"{k} {v / len(frames) * 1000:.1f} ms ({v / total:.0%})" for k, v in times.items()
        )
        print(f"{label:24s} {len(frames) / total:6.2f} fps | {shares}")
    a, b = results.values()
    print(f"ratio reuse/every-frame: {b / a:.2f}x")


if __name__ == "__main__":
    main()
