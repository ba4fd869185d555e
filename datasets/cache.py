"""The face cache: aligned crops, their landmarks, and the index that lists them.

    CACHE/settings.json                                what it is made with (database,
                                                       its options, frames, size, ...)
    CACHE/faces/<video>/<frame:06d>.png                face crops (`_<n>` for face n>0)
    CACHE/parts/<video>.json                           one per finished video: its rows
                                                       and failures (the commit marker)
    CACHE/index.parquet                                one row per kept face and frame
    CACHE/videos.parquet                               one row per video: label, split,
                                                       identities, frames without a face
    CACHE/failures.csv                                 video, frame, reason

The index is rebuilt from the parts, streamed in row groups, so memory stays flat as
the database grows, and any set of runs or shards that wrote parts into one cache (or
into several, merged) yields the same index.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dffr.atomic import TMP_PREFIX, replaced
from dffr.atomic import write_bytes as atomic_write_bytes
from dffr.errors import DffrError
from dffr.locks import locked
from dffr.regions.masks import cut_regions
from dffr.tables import iter_table, read_table

log = logging.getLogger(__name__)

INDEX = "index.parquet"
FAILURES = "failures.csv"
SETTINGS = "settings.json"
VIDEOS = "videos.parquet"
LOCK = ".dffr.lock"  # held by whoever writes the cache (see dffr.locks)
SCHEMA = pa.schema(
    [
        ("ddbb", pa.string()),
        ("video", pa.string()),
        ("frame", pa.int64()),
        ("label", pa.int8()),  # the face's label (see preprocess: label_source)
        ("split", pa.string()),
        ("method", pa.string()),
        ("face", pa.string()),
        ("landmarks", pa.list_(pa.float32(), 136)),
        ("matrix", pa.list_(pa.float64(), 6)),
        ("face_size", pa.float32()),
        ("track", pa.int32()),  # which face of the video (0: the first tracked)
        ("video_label", pa.int8()),
        ("label_source", pa.string()),
        ("diff", pa.float32()),  # mean difference from the original's face, if compared
    ]
)
COLUMNS = SCHEMA.names
ROW_DEFAULTS = {"track": 0, "label_source": "video", "diff": None}  # caches before them
VIDEO_SCHEMA = pa.schema(
    [
        ("ddbb", pa.string()),
        ("video", pa.string()),
        ("label", pa.int8()),
        ("split", pa.string()),
        ("method", pa.string()),
        ("identities", pa.list_(pa.string())),
        ("original", pa.string()),
        ("sampled", pa.int32()),  # frames sampled
        ("frames", pa.int32()),  # frames with at least one face kept
        ("faces", pa.int32()),  # face crops kept
        ("no_face", pa.list_(pa.int64())),  # sampled frames that gave no face crop
        ("error", pa.string()),  # why the video gave nothing (missing, corrupt), or ""
    ]
)
# settings that define a cache's content; the root may move, the dffr version change
COMPARED = (
    "ddbb",
    "options",
    "frames",
    "size",
    "scale",
    "backend",
    "min_face",
    "faces",
    "face_detector",
    "diff_threshold",
)


class CacheSettingsError(DffrError):
    """A cache made with other settings than the ones a run asks for."""


def check_settings(cache: str | Path, settings: dict, root: str | Path | None = None) -> dict:
    """Record `settings` in a cache, or check them against what its videos were made with.

    A key either side lacks, or records as unknown (None), is not compared (the database
    options, when the caller did not say which database: see `preprocess`). A cache
    without any finished video takes the new settings. A cache made by an older dffr
    (parts but no settings.json) is adopted with what its parts record and the defaults
    of its time (one face per video, database options unknown). Raises
    CacheSettingsError naming every difference."""
    from dffr import __version__

    cache = Path(cache)
    path = cache / SETTINGS
    want = json.loads(json.dumps(settings))
    started = next(_parts(cache), None) is not None
    recorded = None
    if started:
        recorded = json.loads(path.read_text()) if path.is_file() else _legacy_settings(cache)
    if recorded is not None:
        diff = [
            f"{k}: {recorded[k]!r} in the cache, {want[k]!r} now"
            for k in COMPARED
            if k in want and recorded.get(k) is not None and recorded[k] != want[k]
        ]
        if diff:
            raise CacheSettingsError(
                f"{cache} was made with other settings ({'; '.join(diff)}): preprocess into "
                "another --out, or repeat the cache's settings"
            )
    if not path.is_file() or not started:
        record = dict(want)
        if recorded is not None:  # an older cache: what it was made with, as far as known
            record.update(recorded)
        record.update(root=str(Path(root).resolve()) if root else None, dffr=__version__)
        atomic_write_bytes(path, json.dumps(record, indent=2).encode())
    return want


def _legacy_settings(cache: Path) -> dict:
    """What a cache made before settings.json was made with: its first part's settings,
    one face per video (all dffr did then), database and options unknown (None)."""
    first = next(_parts(cache))
    old = {k: v for k, v in first.get("settings", {}).items() if k in COMPARED}
    return {"ddbb": first["item"]["ddbb"], "options": None, "faces": "largest", **old}


def read_settings(cache: str | Path) -> dict | None:
    """The cache's settings.json, or None for a cache made before it existed."""
    path = Path(cache) / SETTINGS
    return json.loads(path.read_text()) if path.is_file() else None


def part_path(cache: Path, video: str) -> Path:
    return Path(cache) / "parts" / f"{_safe(video)}.json"


def face_path(video: str, frame: int, track: int = 0) -> str:
    """Crop path relative to the cache: one folder per video file, named with its
    suffix, so `clip.mp4` and `clip.avi` never share crops."""
    face = f"_{track}" if track else ""
    return f"faces/{_safe(video)}/{frame:06d}{face}.png"


def _safe(video: str) -> str:
    """A video id as a path inside the cache (ids come from the adapters, which keep
    them inside the database root; this refuses anything else outright)."""
    parts = Path(video).parts
    if not parts or Path(video).is_absolute() or any(p in ("..", "") for p in parts):
        raise DffrError(f"video id {video!r} is not a relative path inside the database")
    return Path(video).as_posix()


def _part_files(cache: Path) -> list[Path]:
    root = Path(cache) / "parts"
    found = sorted(root.rglob("*.json")) if root.is_dir() else []
    return [p for p in found if not p.name.startswith(TMP_PREFIX)]


def _parts(cache: Path) -> Iterator[dict]:
    """Every finished video's part. A part that does not parse (damaged on disk) is
    removed with a warning, so its video is done again by the next run."""
    for p in _part_files(cache):
        try:
            part = json.loads(p.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            log.warning("%s: unreadable (%s); removed, its video will be processed again", p, e)
            p.unlink(missing_ok=True)
            continue
        yield part


FOLLOWED = ("split", "method", "listed_in", "identities", "ddbb")  # rewritten in place


def follow_metadata(cache: Path, listed: dict[str, dict], mine=lambda video: True) -> dict:
    """Bring the cache's finished videos in line with the database's metadata as it is
    now (`listed`: video -> its item as a dict), for the videos `mine` accepts (a shard's):
    a video no longer listed loses its part and crops; one whose label, original or
    refusal changed is done again (its faces' labels depend on them); a new split or
    method is written into its part. Returns how many videos were dropped, redone and
    updated."""
    counts = {"dropped": 0, "redone": 0, "updated": 0}
    for p in _part_files(cache):
        try:
            part = json.loads(p.read_text())
            old, video = part["item"], part["item"]["video"]
        except (OSError, ValueError, KeyError, TypeError):
            continue  # a damaged part: `_parts` removes it
        if not mine(video):
            continue
        new = listed.get(video)
        if new is None or any(old.get(k) != new[k] for k in ("label", "original", "refused")):
            p.unlink()
            shutil.rmtree(Path(cache) / "faces" / _safe(video), ignore_errors=True)
            counts["dropped" if new is None else "redone"] += 1
        elif any(old.get(k) != new[k] for k in FOLLOWED):
            part["item"] = new
            for row in part["rows"]:
                row.update(split=new["split"], method=new["method"], ddbb=new["ddbb"])
            atomic_write_bytes(p, json.dumps(part).encode())
            counts["updated"] += 1
    return counts


def remove_leftovers(cache: Path) -> int:
    """Delete the temporary files a killed run left (parts, crops, index); returns how
    many. Only under the cache's lock, which no other run then holds."""
    cache = Path(cache)
    found = list(cache.glob(f"{TMP_PREFIX}*")) if cache.is_dir() else []
    for sub in ("parts", "faces"):
        found += list((cache / sub).rglob(f"{TMP_PREFIX}*")) if (cache / sub).is_dir() else []
    for p in found:
        p.unlink(missing_ok=True)
    return len(found)


def video_row(part: dict) -> dict:
    """videos.parquet's row for one finished video (parts of older caches included)."""
    item, rows, failures = part["item"], part["rows"], part["failures"]
    kept = {r["frame"] for r in rows}
    if "no_face" in part:
        no_face = part["no_face"]
    else:
        no_face = sorted(
            {
                f["frame"]
                for f in failures
                if f["frame"] is not None
                and f["reason"].startswith(("no face found", "face too small"))
            }
            - kept
        )
    errors = [f["reason"] for f in failures if f["frame"] is None]
    return {
        "ddbb": item["ddbb"],
        "video": item["video"],
        "label": item["label"],
        "split": item["split"],
        "method": item["method"],
        "identities": list(item.get("identities", ())),
        "original": item.get("original", ""),
        "sampled": len(part.get("sampled", kept | set(no_face))),
        "frames": len(kept),
        "faces": len(rows),
        "no_face": sorted(no_face),
        "error": "; ".join(errors),
    }


def _full(row: dict) -> dict:
    """An index row with the columns older caches lack."""
    out = {**ROW_DEFAULTS, **row}
    out.setdefault("video_label", row["label"])
    return out


def build_index(cache: str | Path, batch_rows: int = 20_000) -> tuple[int, int]:
    """Write index.parquet, videos.parquet and failures.csv from every finished video's
    part. Returns (rows, failures)."""
    cache = Path(cache)
    with locked(cache / LOCK, f"the cache {cache}"):
        if remove_leftovers(cache):
            log.info("%s: removed the temporary files of an interrupted run", cache)
        with contextlib.ExitStack() as files:  # the three replaced once all are written
            tmp_fail = files.enter_context(replaced(cache / FAILURES))
            tmp_index = files.enter_context(replaced(cache / INDEX))
            tmp_videos = files.enter_context(replaced(cache / VIDEOS))
            return _write_index(cache, tmp_index, tmp_fail, tmp_videos, batch_rows)


def _write_index(cache: Path, index: Path, failures: Path, videos: Path, batch_rows: int):
    n_rows = n_fail = 0
    buffer: list[dict] = []
    listed: list[dict] = []
    with pq.ParquetWriter(index, SCHEMA) as writer, failures.open("w", newline="") as ff:
        fails = csv.writer(ff)
        fails.writerow(["video", "frame", "reason"])

        def flush() -> None:
            if buffer:
                writer.write_table(pa.Table.from_pylist(buffer, schema=SCHEMA))
                buffer.clear()

        for part in _parts(cache):
            buffer.extend(_full(r) for r in part["rows"])
            listed.append(video_row(part))
            n_rows += len(part["rows"])
            for f in part["failures"]:
                fails.writerow([f["video"], "" if f["frame"] is None else f["frame"], f["reason"]])
                n_fail += 1
            if len(buffer) >= batch_rows:
                flush()
        flush()
    pq.write_table(pa.Table.from_pylist(listed, schema=VIDEO_SCHEMA), videos)
    return n_rows, n_fail


def _reindex_hint(cache) -> str:  # noqa: N802  (a message, named as the constant it nearly is)
    return f"re-index the cache with `dffr merge-cache {cache}`"


def read_videos(cache: str | Path, split: str | None = None) -> pd.DataFrame:
    """The cache's videos.parquet (every video processed, with or without faces)."""
    path = Path(cache) / VIDEOS
    if not path.is_file():
        raise DffrError(
            f"{path} not found (a cache indexed by an older dffr): re-index it with "
            f"`dffr merge-cache {cache}`"
        )
    df = read_table(
        path, ("video", "label", "split", "no_face"), "videos table", _reindex_hint(cache)
    )
    return df[df["split"] == split].reset_index(drop=True) if split else df


def merge_caches(out: str | Path, sources: list[str | Path]) -> tuple[int, int]:
    """Bring the faces and parts of other caches (shards) into `out`, then index it."""
    out = Path(out)
    absent = [str(s) for s in map(Path, sources) if not s.is_dir()]
    if absent:  # a mistyped shard folder must not leave a silently partial cache
        raise DffrError(f"no such cache folder: {', '.join(absent)}")
    with locked(out / LOCK, f"the cache {out}"):
        for src in map(Path, sources):
            theirs = read_settings(src)
            if theirs is not None:  # shards of one cache share its settings
                check_settings(
                    out, {k: v for k, v in theirs.items() if k in COMPARED}, theirs.get("root")
                )
            if src.resolve() == out.resolve():
                continue
            for sub in ("faces", "parts"):
                if (src / sub).is_dir():
                    shutil.copytree(src / sub, out / sub, dirs_exist_ok=True)
        out.mkdir(parents=True, exist_ok=True)
        return build_index(out)


INDEX_NEEDS = ("video", "frame", "label", "split", "face", "landmarks", "matrix")


def _index_path(cache: str | Path) -> Path:
    path = Path(cache) / INDEX
    if not path.is_file():
        raise DffrError(f"{path} not found: run `dffr preprocess` (or `dffr merge-cache`)")
    return path


def _index_rows(df: pd.DataFrame, split: str | None) -> pd.DataFrame:
    """Index rows of `split` as the stages use them: the columns of newer caches filled
    in for older ones, landmarks as (68, 2) and matrices as (2, 3) arrays."""
    if split:
        df = df[df["split"] == split].reset_index(drop=True)
    for column, value in ROW_DEFAULTS.items():  # an index written before these columns
        if column not in df:
            df[column] = value
    if "video_label" not in df:
        df["video_label"] = df["label"]
    df["landmarks"] = [np.asarray(v, dtype=np.float64).reshape(68, 2) for v in df["landmarks"]]
    df["matrix"] = [np.asarray(v, dtype=np.float64).reshape(2, 3) for v in df["matrix"]]
    return df


def read_index(cache: str | Path, split: str | None = None) -> pd.DataFrame:
    """The cache's index as a DataFrame (landmarks as (68, 2) arrays)."""
    path = _index_path(cache)
    return _index_rows(read_table(path, INDEX_NEEDS, "cache index", _reindex_hint(cache)), split)


def iter_index(
    cache: str | Path, split: str | None = None, rows: int = 4096
) -> Iterator[pd.DataFrame]:
    """The rows of `read_index`, in the index's order, a row group of at most `rows` at a
    time: a stage that goes through a database once holds one chunk, however large."""
    path = _index_path(cache)
    for part in iter_table(path, INDEX_NEEDS, "cache index", _reindex_hint(cache), rows=rows):
        chunk = _index_rows(part, split)
        if len(chunk):
            yield chunk


def count_index(cache: str | Path, split: str | None = None) -> int:
    """How many index rows `split` has, read from its `split` column alone."""
    path = _index_path(cache)
    try:
        column = pq.read_table(path, columns=["split"]).column("split")
    except Exception as e:
        hint = _reindex_hint(cache)
        raise DffrError(f"{path}: not a readable cache index ({e}); {hint}") from None
    return len(column) if not split else int(pc.sum(pc.equal(column, split)).as_py() or 0)


class _Crops:
    """Decoded face crops kept in memory, up to `budget` bytes, so that training's epochs
    and the models of a study decode each crop once. Crops are kept in the order they are
    first read until the budget is spent (with shuffled epochs an evicting cache would
    only churn); a file changed on disk since it was read is read again. The arrays are
    read-only: they are shared."""

    def __init__(self, budget: int) -> None:
        self.budget, self.used = budget, 0
        self.kept: dict[tuple, np.ndarray] = {}
        self.lock = threading.Lock()

    def read(self, path: Path) -> np.ndarray:
        from dffr.images import read_image

        try:
            st = path.stat()
            key = (str(path), st.st_mtime_ns, st.st_size)
        except OSError:
            key = None  # not there: read_image says so
        crop = self.kept.get(key)
        if crop is None:
            crop = read_image(path)
            crop.flags.writeable = False
            with self.lock:
                if key is not None and self.used + crop.nbytes <= self.budget:
                    self.kept[key] = crop
                    self.used += crop.nbytes
        return crop


_CROPS = _Crops(int(float(os.environ.get("DFFR_CROP_CACHE_MB", "1024")) * 2**20))


def read_crop(path: str | Path) -> np.ndarray:
    """A cached face crop (read-only RGB uint8), decoded once per process while the
    crop memory budget lasts ($DFFR_CROP_CACHE_MB, default 1024; 0: never kept)."""
    return _CROPS.read(Path(path))


def region_image(cache: str | Path, row, region: str) -> np.ndarray:
    """One cached face's region image, cut on the fly from its crop and landmarks."""
    crop = read_crop(Path(cache) / row["face"])
    return cut_regions(crop, row["landmarks"], (region,))[region]


def iter_regions(cache: str | Path, region: str, split: str | None = None):
    """Yield (index row, region image) for every cached face: five regions, one crop."""
    for _, row in read_index(cache, split).iterrows():
        yield row, region_image(cache, row, region)
