"""`dffr preprocess`: videos -> face crops + landmarks + index, resumable and shardable.

Each video is decoded once; N frames evenly spaced over its length are kept; the face
is detected in the first and tracked in the others; each frame's 68 landmarks are
computed and its face crop written. A video's rows and failures are committed in one
atomic write after its crops, so a run killed at any moment and started again redoes at
most the videos it was in the middle of, and ends with the same index.
"""

from __future__ import annotations

import io
import json
import multiprocessing as mp
import zlib
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from dffr.datasets.base import Item
from dffr.datasets.cache import atomic_write_bytes, build_index, face_path, part_path
from dffr.datasets.tracking import FaceTracker
from dffr.datasets.video import VideoError, read_frames
from dffr.regions.crop import face_crop
from dffr.regions.landmarks import get_backend


@dataclass(frozen=True)
class Settings:
    frames: int = 20
    size: int = 200
    scale: float = 1.3
    backend: str = "dlib"
    min_face: int = 24


@dataclass
class Summary:
    videos: int = 0
    skipped: int = 0  # finished by an earlier run
    frames: int = 0
    failures: int = 0
    index_rows: int | None = None


def in_shard(video: str, shard: tuple[int, int]) -> bool:
    """Whether `video` belongs to shard i of n (stable: by a checksum of its path)."""
    i, n = shard
    return zlib.crc32(video.encode()) % n == i


def _png(rgb) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def process_video(item: Item, root: Path, cache: Path, settings: Settings, backend) -> dict:
    """Crops and landmarks of one video; returns (and commits) its part."""
    rows, failures = [], []

    def fail(frame: int | None, reason: str) -> None:
        failures.append({"video": item.video, "frame": frame, "reason": reason})

    path = item.path(root)
    if not path.exists():
        where = f"listed in {item.listed_in} but " if item.listed_in else ""
        fail(None, f"missing: {where}not found at {path}")
    else:
        tracker = FaceTracker(backend)
        try:
            for idx, frame in read_frames(path, settings.frames):
                if frame is None:
                    fail(idx, "frame could not be decoded (video shorter than its header says)")
                    continue
                face = tracker(frame)
                if face is None:
                    fail(idx, "no face found")
                    continue
                if face.size < settings.min_face:
                    fail(idx, f"face too small: {face.size:.0f} px, minimum {settings.min_face}")
                    continue
                crop = face_crop(frame, face.landmarks, settings.scale, settings.size)
                rel = face_path(item.video, idx)
                atomic_write_bytes(cache / rel, _png(crop.image))
                rows.append(
                    {
                        "ddbb": item.ddbb,
                        "video": item.video,
                        "frame": idx,
                        "label": item.label,
                        "split": item.split,
                        "method": item.method,
                        "face": rel,
                        "landmarks": [round(float(v), 3) for v in crop.landmarks.ravel()],
                        "matrix": [float(v) for v in crop.matrix.ravel()],
                        "face_size": round(face.size, 2),
                    }
                )
        except VideoError as e:
            fail(None, str(e))
    part = {"item": asdict(item), "settings": asdict(settings), "rows": rows, "failures": failures}
    atomic_write_bytes(part_path(cache, item.video), json.dumps(part).encode())
    return part


_WORKER: dict = {}


@lru_cache(maxsize=2)
def _backend(name: str, min_face: int):
    return get_backend(name, min_face=min_face)


def _init_worker(settings: Settings) -> None:
    import cv2

    cv2.setNumThreads(1)
    _WORKER["backend"] = _backend(settings.backend, settings.min_face)


def _work(args) -> tuple[int, int]:
    item, root, cache, settings = args
    part = process_video(item, root, cache, settings, _WORKER["backend"])
    return len(part["rows"]), len(part["failures"])


def preprocess(
    items: Iterable[Item],
    root: str | Path,
    cache: str | Path,
    settings: Settings = Settings(),
    workers: int = 1,
    shard: tuple[int, int] = (0, 1),
    progress: bool = True,
) -> Summary:
    """Process every item not yet in the cache; index the cache unless sharded."""
    root, cache = Path(root), Path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    mine = [it for it in items if in_shard(it.video, shard)]
    todo = [it for it in mine if not part_path(cache, it.video).is_file()]
    summary = Summary(videos=len(todo), skipped=len(mine) - len(todo))
    bar = tqdm(total=len(todo), desc="preprocess", unit="video", disable=not progress)
    jobs = [(it, root, cache, settings) for it in todo]
    if workers > 1 and len(todo) > 1:
        ctx = mp.get_context("spawn")
        with ctx.Pool(workers, initializer=_init_worker, initargs=(settings,)) as pool:
            results = pool.imap_unordered(_work, jobs)
            _consume(results, summary, bar)
    else:
        _init_worker(settings)
        _consume(map(_work, jobs), summary, bar)
    bar.close()
    if shard[1] == 1:
        summary.index_rows, _ = build_index(cache)
    return summary


def _consume(results, summary: Summary, bar) -> None:
    for n_rows, n_fail in results:
        summary.frames += n_rows
        summary.failures += n_fail
        bar.update(1)
        bar.set_postfix(frames=summary.frames, failures=summary.failures)
