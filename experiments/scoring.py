"""`dffr score`: every (detector, region) model over a cached database's frames.

All models are loaded once; each frame's crop is read once and cut into the regions the
models need, and each region's batch goes through its model. The result is one row per
(frame, detector, region): video, frame, label, split, method, test_ddbb, train_ddbb,
detector, region, score = P(fake). Re-running skips combinations already in the file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from dffr.datasets.cache import read_index
from dffr.detectors.base import Detector, load_detector, model_path
from dffr.errors import DffrError
from dffr.images import read_image
from dffr.regions.masks import REGIONS, cut_regions

SCORE_COLUMNS = [
    "video",
    "frame",
    "label",
    "split",
    "method",
    "test_ddbb",
    "train_ddbb",
    "detector",
    "region",
    "score",
]
KEY = ["test_ddbb", "train_ddbb", "detector", "region", "split"]


@dataclass
class ScoreReport:
    scored: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # already in the file
    missing: list[str] = field(default_factory=list)  # models not found
    rows: int = 0


def _region_batches(cache: Path, rows: pd.DataFrame, regions: set[str]):
    """{region: uint8 batch} for a block of index rows: one read, one mask set a frame."""
    out = {r: [] for r in regions}
    for _, row in rows.iterrows():
        for r, image in cut_regions(
            read_image(cache / row["face"]), row["landmarks"], regions
        ).items():
            out[r].append(image)
    return {r: np.stack(v) for r, v in out.items()}


def score(
    cache: str | Path,
    models: str | Path,
    train_ddbb: str,
    out: str | Path,
    detectors=("Xception", "Capsule", "DSP-FWA"),
    regions=REGIONS,
    split: str = "test",
    device: str | None = None,
    batch: int = 32,
    progress: bool = True,
    test_ddbb: str | None = None,
) -> ScoreReport:
    """Score the `split` frames of a cache with the models trained on `train_ddbb`.

    `test_ddbb` names the cached database in the rows (default: the cache's own)."""
    cache, out = Path(cache), Path(out)
    index = read_index(cache, split)
    if index.empty:
        raise DffrError(f"{cache}: no rows in split {split!r} to score")
    test_ddbb = test_ddbb or str(index["ddbb"].iloc[0])
    previous = pd.read_parquet(out) if out.is_file() else pd.DataFrame(columns=SCORE_COLUMNS)
    done = set(map(tuple, previous[KEY].drop_duplicates().to_numpy())) if len(previous) else set()
    report = ScoreReport()
    loaded: dict[tuple[str, str], Detector] = {}
    for det in detectors:
        for region in regions:
            if (test_ddbb, train_ddbb, det, region, split) in done:
                report.skipped.append((det, region))
                continue
            path = model_path(models, det, train_ddbb, region)
            if not path.is_file():
                report.missing.append(str(path))
                continue
            loaded[(det, region)] = load_detector(path, device)
    if not loaded:
        return report
    needed = {r for _, r in loaded}
    parts: dict[tuple[str, str], list[np.ndarray]] = {k: [] for k in loaded}
    blocks = range(0, len(index), batch)
    for start in tqdm(
        blocks, desc=f"score {test_ddbb} {split}", unit="batch", disable=not progress
    ):
        images = _region_batches(cache, index.iloc[start : start + batch], needed)
        for (det, region), model in loaded.items():
            parts[(det, region)].append(model.predict(images[region], batch=batch))
    base = index[["video", "frame", "label", "split", "method"]].copy()
    base["test_ddbb"], base["train_ddbb"] = test_ddbb, train_ddbb
    new = []
    for (det, region), chunks in parts.items():
        frame = base.copy()
        frame["detector"], frame["region"] = det, region
        frame["score"] = np.concatenate(chunks).astype(np.float64)
        new.append(frame)
        report.scored.append((det, region))
    merged = pd.concat([previous, *new] if len(previous) else new, ignore_index=True)
    merged = merged[SCORE_COLUMNS]
    merged["label"] = merged["label"].astype(np.int64)
    merged["frame"] = merged["frame"].astype(np.int64)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    merged.to_parquet(tmp, index=False)
    os.replace(tmp, out)
    report.rows = len(merged)
    return report
