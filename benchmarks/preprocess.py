"""Preprocessing speed and memory on real FF++ and DFDC videos.

    .venv/bin/python benchmarks/preprocess.py [--frames 20] [--shared ../shared]

(a) naive: for each sampled frame, seek and decode it, detect the face in the whole
    frame from scratch, then landmarks;
(b) dffr: decode the video once, detect in the first frame, track in the others.
Both keep the same evenly spaced frames. Prints sampled frames per second and the ratio
b/a per video, then the peak memory of `dffr preprocess` over 1x and 4x as many videos.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2

from dffr.datasets.base import Item
from dffr.datasets.preprocess import Settings, process_video
from dffr.datasets.video import sample_indices
from dffr.regions import get_backend
from dffr.regions.crop import face_crop


def naive(path: Path, frames: int, backend) -> int:
    cap = cv2.VideoCapture(str(path))
    kept = 0
    for t in sample_indices(int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), frames):
        cap.set(cv2.CAP_PROP_POS_FRAMES, t)
        ok, bgr = cap.read()
        if not ok:
            continue
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        faces = backend.find_faces(rgb)
        if faces:
            box = max(faces, key=lambda f: f[0][2] - f[0][0])[0]
            face_crop(rgb, backend.landmarks(rgb, [box])[0])
            kept += 1
    cap.release()
    return kept


_MEASURE = """
import resource, subprocess, sys
subprocess.run(sys.argv[1:], check=True, capture_output=True)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def peak_rss_mb(root: Path, frames: int) -> float:
    """Peak resident memory of one `dffr preprocess` run, measured in a fresh parent."""
    with tempfile.TemporaryDirectory() as cache:
        cmd = [
            sys.executable,
            "-m",
            "dffr",
            "preprocess",
            "--ddbb",
            "folder",
            "--root",
            str(root),
            "--out",
            cache,
            "--frames",
            str(frames),
        ]
        out = subprocess.run(
            [sys.executable, "-c", _MEASURE, *cmd], check=True, capture_output=True, text=True
        ).stdout
    return int(out.split()[-1]) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared")
    args = ap.parse_args()
    data = args.shared / "data"
    videos = sorted((data / "dfdc").rglob("*.mp4")) + sorted((data / "ffpp").rglob("*.mp4"))[:3]
    if not videos:
        raise SystemExit(f"no videos under {data}: pass --shared")
    backend = get_backend("dlib")
    settings = Settings(frames=args.frames)
    print(f"{'video':34s} {'size':>10s} {'naive fps':>10s} {'dffr fps':>9s} {'ratio':>6s}")
    totals = [0.0, 0.0, 0]
    with tempfile.TemporaryDirectory() as cache:
        for v in videos:
            cap = cv2.VideoCapture(str(v))
            size = f"{int(cap.get(3))}x{int(cap.get(4))}"
            cap.release()
            t = time.perf_counter()
            n_a = naive(v, args.frames, backend)
            t_a = time.perf_counter() - t
            item = Item("bench", v.name, 0, "test", "real")
            t = time.perf_counter()
            part = process_video(item, v.parent, Path(cache), settings, backend)
            t_b = time.perf_counter() - t
            n_b = len(part["rows"])
            print(
                f"{v.name:34s} {size:>10s} {n_a / t_a:10.2f} {n_b / t_b:9.2f} "
                f"{(n_b / t_b) / (n_a / t_a):5.2f}x"
            )
            totals[0] += t_a
            totals[1] += t_b
            totals[2] += n_b
    print(
        f"{'all':34s} {'':>10s} {totals[2] / totals[0]:10.2f} {totals[2] / totals[1]:9.2f} "
        f"{totals[0] / totals[1]:5.2f}x"
    )
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for copies in (1, 4):
            for c in range(copies):
                for k, v in enumerate(videos):
                    link = root / f"x{copies}" / "real" / f"{c}_{k}_{v.name}"
                    link.parent.mkdir(parents=True, exist_ok=True)
                    if not link.exists():
                        link.symlink_to(v.resolve())
        m1 = peak_rss_mb(root / "x1", 4)
        m4 = peak_rss_mb(root / "x4", 4)
    print(
        f"peak memory of dffr preprocess (4 frames/video): {len(videos)} videos {m1:.0f} MB, "
        f"{4 * len(videos)} videos {m4:.0f} MB (ratio {m4 / m1:.2f})"
    )


if __name__ == "__main__":
    main()
