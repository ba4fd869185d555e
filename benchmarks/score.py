"""`dffr score`'s frames per second beside the bare networks, and its input pipeline.

    .venv/bin/python benchmarks/score.py [--size 200] [--faces 2000] [--workers 0,1,2]

On a real cache (the FF++ c23 videos in ../shared/data, preprocessed once into
--work) with the paper's 15 models (3 detectors x 5 regions, random weights: speed does
not depend on them):
- the input pipeline alone (read each crop, cut the five regions): region images per
  second with each number of workers;
- scoring end to end (`predict_frames`, the models already loaded): frames per second;
- the bare networks: each model's forward on ready tensors of the same batch size,
  summed over the 15 models, as frames per second; and the ratio of the two.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np

from dffr.datasets.base import get_dataset
from dffr.datasets.cache import read_index
from dffr.datasets.preprocess import Settings, preprocess
from dffr.detectors.base import PAPER_DETECTORS, DetectorConfig, build_detector
from dffr.detectors.keras_detector import KerasDetector
from dffr.feed import feed
from dffr.regions.masks import REGIONS
from dffr.scoring.scores import _region_block, predict_frames

warnings.filterwarnings("ignore")
DATA = Path(__file__).resolve().parents[2] / "shared/data/ffpp"


def bare_seconds(det, images: np.ndarray) -> float:
    """Seconds of the network's forward on `images` already prepared as tensors."""
    x = det.prepare(images)
    if isinstance(det, KerasDetector):
        run = lambda: det.model(x, training=False)  # noqa: E731
    else:
        import torch

        xt = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous().to(det.device.torch)
        det.model.eval()

        def run():
            with torch.no_grad():
                det.probabilities(det.model(xt))

    run()  # warm-up
    times = []
    for _ in range(3):  # the fastest of three: the ratio errs against dffr
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=10, help="frames per video in the cache")
    ap.add_argument("--size", type=int, default=200, help="network input side")
    ap.add_argument("--faces", type=int, default=2000, help="faces through the pipeline alone")
    ap.add_argument("--scored", type=int, default=192, help="faces scored by the 15 models")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--workers", default="0,1,2", help="comma list of worker counts")
    ap.add_argument("--work", type=Path, default=Path("/tmp/dffr-bench-score"))
    args = ap.parse_args()
    counts = [int(w) for w in args.workers.split(",")]
    cache = args.work / f"cache-{args.frames}"
    if not (cache / "index.parquet").is_file():
        ds = get_dataset("FaceForensics", DATA)
        preprocess(ds.items(), DATA, cache, Settings(frames=args.frames), database=ds)
    faces = read_index(cache)
    # the cache's faces over and over, to --faces: a worker's start (~2 s) is then paid
    # once per thousands of faces, as on a real database
    rows = faces.iloc[np.resize(np.arange(len(faces)), args.faces)].reset_index(drop=True)
    print(
        f"cache: {cache}, {len(faces)} faces, read {len(rows)} times; batch {args.batch}, "
        f"input {args.size} px"
    )

    state = (cache, set(REGIONS), None)
    blocks = [rows.iloc[s : s + args.batch] for s in range(0, len(rows), args.batch)]
    print("input pipeline alone (read crop, cut 5 regions):")
    for w in counts:
        t = time.perf_counter()
        n = sum(len(b["entire"]) for _, b in feed(_region_block, state, blocks, w))
        dt = time.perf_counter() - t
        print(f"  {w} worker(s): {n / dt:7.1f} frames/s, {5 * n / dt:7.1f} region images/s")

    models = {}
    for det in PAPER_DETECTORS:
        for region in REGIONS:
            cfg = DetectorConfig(det, region=region, input_size=args.size, pretrained=False)
            models[(det, region)] = (build_detector(cfg, "cpu"), region)
    _, sample = next(feed(_region_block, state, blocks[:1], 0))
    bare = sum(bare_seconds(m, sample[r]) for m, r in models.values()) / len(sample["entire"])
    print(f"bare networks, {len(models)} models: {1 / bare:7.2f} frames/s")
    scored = rows.iloc[: args.scored]
    predict_frames(cache, scored.iloc[: args.batch], models, batch=args.batch, progress=False)
    for w in counts:
        t = time.perf_counter()
        predict_frames(cache, scored, models, batch=args.batch, progress=False, workers=w)
        fps = len(scored) / (time.perf_counter() - t)
        print(f"score, {w} worker(s): {fps:7.2f} frames/s, {fps * bare:.2f} of the bare networks")


if __name__ == "__main__":
    main()
