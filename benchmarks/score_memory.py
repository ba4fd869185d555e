"""`dffr score`'s peak memory on a database and on the same database 8 times over.

    .venv/bin/python benchmarks/score_memory.py [--faces 4000] [--times 8]

The faces of the FF++ cache that benchmarks/score.py makes (the c23 videos in
../shared/data) are listed over and over, as new videos, to `--faces` index rows and
to `--times` as many; each database is scored by a fresh process with five models (a
one-layer network, one per region, so that the networks' own memory and time do not
hide the rest), and the process's peak resident memory is printed for each, with the
ratio. Memory that grows with the database (the index, the score rows) shows as a
ratio above 1.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import torch.nn as nn
import torch.nn.functional as F

from dffr.detectors.base import DETECTORS, DetectorConfig, build_detector
from dffr.detectors.model_files import model_path
from dffr.detectors.torch_detector import TorchDetector
from dffr.detectors.training import save_model
from dffr.regions.masks import REGIONS

SOURCE = Path("/tmp/dffr-bench-score/cache-10")  # benchmarks/score.py's cache


@DETECTORS.register("OneLayer")
class OneLayer(TorchDetector):
    name = "OneLayer"
    min_input_size = 16

    def build(self) -> nn.Module:
        return nn.Sequential(
            nn.Conv2d(3, 4, 3, stride=2), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)
        )

    def probabilities(self, outputs):
        return F.softmax(outputs.float(), dim=1)

    def loss(self, outputs, targets):
        return F.cross_entropy(outputs.float(), targets)


def grown(source: Path, out: Path, faces: int) -> Path:
    """A cache listing `source`'s faces over and over as new videos, to `faces` rows."""
    index = pd.read_parquet(source / "index.parquet")
    videos = pd.read_parquet(source / "videos.parquet")
    copies = -(-faces // len(index))
    rows, listed = [], []
    for k in range(copies):
        rows.append(index.assign(video=index["video"] + f"#{k}", split="test"))
        listed.append(videos.assign(video=videos["video"] + f"#{k}", split="test"))
    out.mkdir(parents=True, exist_ok=True)
    pd.concat(rows, ignore_index=True).iloc[:faces].to_parquet(out / "index.parquet")
    pd.concat(listed, ignore_index=True).to_parquet(out / "videos.parquet")
    shutil.copy(source / "settings.json", out / "settings.json")
    if not (out / "faces").exists():
        (out / "faces").symlink_to((source / "faces").resolve())
    return out


def child(cache: Path, models: Path, out: Path) -> None:
    from dffr.scoring.scores import score

    t = time.perf_counter()
    rep = score(cache, models, "bench", out, ["OneLayer"], REGIONS, progress=False, workers=2)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps({"rows": rep.rows, "peak_mb": peak, "s": time.perf_counter() - t}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--faces", type=int, default=4000, help="index rows of the smaller one")
    ap.add_argument("--times", type=int, default=8)
    ap.add_argument("--work", type=Path, default=Path("/tmp/dffr-bench-memory"))
    ap.add_argument("--child", nargs=3, type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(*args.child)
    if not (SOURCE / "index.parquet").is_file():
        sys.exit(f"{SOURCE} not found: run benchmarks/score.py once (it makes that cache)")
    models = args.work / "models"
    for region in REGIONS:
        cfg = DetectorConfig("OneLayer", region=region, input_size=16, pretrained=False)
        meta = {"config": {**cfg.to_dict(), "ddbb": "bench"}}
        path = model_path(models, "OneLayer", "bench", region)
        save_model(build_detector(cfg, "cpu"), path, meta)
    figures = []
    for n in (args.faces, args.faces * args.times):
        cache = grown(SOURCE, args.work / f"cache-{n}", n)
        out = args.work / f"scores-{n}.parquet"
        out.unlink(missing_ok=True)
        cmd = [sys.executable, __file__, "--child", str(cache), str(models), str(out)]
        got = json.loads(subprocess.run(cmd, check=True, capture_output=True).stdout)
        figures.append(got["peak_mb"])
        print(
            f"{n:7d} faces: {got['rows']:8d} score rows in {got['s']:6.1f} s, "
            f"peak memory {got['peak_mb']:7.1f} MB"
        )
    print(f"peak memory, {args.times}x the faces / 1x: {figures[1] / figures[0]:.3f}")


if __name__ == "__main__":
    main()
