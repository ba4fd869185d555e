"""The face cache: aligned crops, their landmarks, and the index that lists them.

    CACHE/faces/<video without suffix>/<frame:06d>.png   face crops
    CACHE/parts/<video>.json                           one per finished video: its rows
                                                       and failures (the commit marker)
    CACHE/index.parquet                                one row per kept frame
    CACHE/failures.csv                                 video, frame, reason

The index is rebuilt from the parts, streamed in row groups, so memory stays flat as
the database grows, and any set of runs or shards that wrote parts into one cache (or
into several, merged) yields the same index.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from dffr.regions.masks import cut_regions

INDEX = "index.parquet"
FAILURES = "failures.csv"
COLUMNS = [
    "ddbb",
    "video",
    "frame",
    "label",
    "split",
    "method",
    "face",
    "landmarks",
    "matrix",
    "face_size",
]
SCHEMA = pa.schema(
    [
        ("ddbb", pa.string()),
        ("video", pa.string()),
        ("frame", pa.int64()),
        ("label", pa.int8()),
        ("split", pa.string()),
        ("method", pa.string()),
        ("face", pa.string()),
        ("landmarks", pa.list_(pa.float32(), 136)),
        ("matrix", pa.list_(pa.float64(), 6)),
        ("face_size", pa.float32()),
    ]
)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write a file so that it is either absent or complete, never half-written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def part_path(cache: Path, video: str) -> Path:
    return Path(cache) / "parts" / f"{video}.json"


def face_path(video: str, frame: int) -> str:
    """Crop path relative to the cache."""
    return f"faces/{Path(video).with_suffix('').as_posix()}/{frame:06d}.png"


def _parts(cache: Path) -> Iterator[dict]:
    root = Path(cache) / "parts"
    for p in sorted(root.rglob("*.json")) if root.is_dir() else []:
        yield json.loads(p.read_text())


def build_index(cache: str | Path, batch_rows: int = 20_000) -> tuple[int, int]:
    """Write index.parquet and failures.csv from every finished video's part.

    Returns (rows, failures)."""
    cache = Path(cache)
    tmp_index = cache / f".{INDEX}.tmp"
    tmp_fail = cache / f".{FAILURES}.tmp"
    n_rows = n_fail = 0
    buffer: list[dict] = []
    with pq.ParquetWriter(tmp_index, SCHEMA) as writer, tmp_fail.open("w", newline="") as ff:
        fails = csv.writer(ff)
        fails.writerow(["video", "frame", "reason"])

        def flush() -> None:
            if buffer:
                writer.write_table(pa.Table.from_pylist(buffer, schema=SCHEMA))
                buffer.clear()

        for part in _parts(cache):
            buffer.extend(part["rows"])
            n_rows += len(part["rows"])
            for f in part["failures"]:
                fails.writerow([f["video"], "" if f["frame"] is None else f["frame"], f["reason"]])
                n_fail += 1
            if len(buffer) >= batch_rows:
                flush()
        flush()
    os.replace(tmp_index, cache / INDEX)
    os.replace(tmp_fail, cache / FAILURES)
    return n_rows, n_fail


def merge_caches(out: str | Path, sources: list[str | Path]) -> tuple[int, int]:
    """Bring the faces and parts of other caches (shards) into `out`, then index it."""
    out = Path(out)
    for src in map(Path, sources):
        if src.resolve() == out.resolve():
            continue
        for sub in ("faces", "parts"):
            if (src / sub).is_dir():
                shutil.copytree(src / sub, out / sub, dirs_exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    return build_index(out)


def read_index(cache: str | Path, split: str | None = None) -> pd.DataFrame:
    """The cache's index as a DataFrame (landmarks as (68, 2) arrays)."""
    path = Path(cache) / INDEX
    if not path.is_file():
        from dffr.errors import DffrError

        raise DffrError(f"{path} not found: run `dffr preprocess` (or `dffr merge-cache`)")
    df = pd.read_parquet(path)
    if split:
        df = df[df["split"] == split].reset_index(drop=True)
    df["landmarks"] = [np.asarray(v, dtype=np.float64).reshape(68, 2) for v in df["landmarks"]]
    df["matrix"] = [np.asarray(v, dtype=np.float64).reshape(2, 3) for v in df["matrix"]]
    return df


def region_image(cache: str | Path, row, region: str) -> np.ndarray:
    """One cached face's region image, cut on the fly from its crop and landmarks."""
    from dffr.images import read_image

    crop = read_image(Path(cache) / row["face"])
    return cut_regions(crop, row["landmarks"], (region,))[region]


def iter_regions(cache: str | Path, region: str, split: str | None = None):
    """Yield (index row, region image) for every cached face: five regions, one crop."""
    for _, row in read_index(cache, split).iterrows():
        yield row, region_image(cache, row, region)
