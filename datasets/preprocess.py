"""`dffr preprocess`: videos -> face crops + landmarks + index, resumable and shardable.

Each video is decoded once; N frames evenly spaced over its length are kept; faces are
detected in the first and tracked in the others (the largest face, or every face for a
database whose videos show several people); each face's 68 landmarks are computed and
its crop written. A video's rows and failures are committed in one atomic write after
its crops, so a run killed at any moment and started again redoes at most the videos it
was in the middle of, and ends with the same index.

Labels are the video's, except where every face is tracked and a fake's original is on
disk: then a face is fake only if its crop differs from the same crop of the original
(the mean absolute difference inside the face, median over the track's frames, above
`diff_threshold` grey levels), as DFDC solutions label faces; an untouched bystander in
a fake video is a real face. `label_source` says which rule labelled each row.
"""

from __future__ import annotations

import contextlib
import io
import json
import multiprocessing as mp
import zlib
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from dffr.datasets.base import DATASETS, Dataset, Item
from dffr.datasets.cache import (
    LOCK,
    atomic_write_bytes,
    build_index,
    check_settings,
    face_path,
    follow_metadata,
    part_path,
)
from dffr.datasets.tracking import FaceTracker
from dffr.datasets.video import VideoError, frame_indices, read_frames
from dffr.errors import DffrError, disk_error
from dffr.locks import locked
from dffr.regions.crop import face_crop
from dffr.regions.face_detection import FACE_DETECTORS
from dffr.regions.landmarks import BACKENDS, get_backend
from dffr.regions.masks import region_masks

FACE_MODES = ("largest", "all")
DIFF_THRESHOLD = 4.0  # grey levels; re-encoding the DFDC sample moves its face by 2.4-2.9


@dataclass(frozen=True)
class Settings:
    """What a cache is made with; recorded in CACHE/settings.json and checked on reuse."""

    frames: int = 20
    size: int = 200
    scale: float = 1.3
    backend: str = "dlib"
    min_face: int = 24
    faces: str | None = None  # largest | all; None: the database's own (DFDC: all)
    face_detector: str = "hog"  # regions.face_detection's registry
    diff_threshold: float = DIFF_THRESHOLD

    def __post_init__(self) -> None:
        if self.faces is not None and self.faces not in FACE_MODES:
            raise ValueError(f"faces must be one of {FACE_MODES}, not {self.faces!r}")


@dataclass
class Summary:
    videos: int = 0
    skipped: int = 0  # finished by an earlier run
    frames: int = 0
    failures: int = 0
    index_rows: int | None = None
    # cached videos the metadata no longer lists / now labels otherwise / splits otherwise
    dropped: int = 0
    redone: int = 0
    updated: int = 0


def in_shard(video: str, shard: tuple[int, int]) -> bool:
    """Whether `video` belongs to shard i of n (stable: by a checksum of its path)."""
    i, n = shard
    return zlib.crc32(video.encode()) % n == i


def _png(rgb) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def face_difference(crop, landmarks: np.ndarray, original: np.ndarray, settings) -> float:
    """Mean absolute grey-level difference inside the face between a crop and the crop
    cut the same way (same landmarks, window and resampling) from the original frame."""
    other = face_crop(original, landmarks, settings.scale, settings.size).image
    inside = region_masks(crop.landmarks, crop.image.shape)["entire"]
    diff = np.abs(crop.image.astype(np.int16) - other.astype(np.int16)).mean(axis=2)
    return float(diff[inside].mean()) if inside.any() else float("nan")


def _original_frames(item: Item, root: Path, indices: list[int], why: list[str]):
    """The original's frames at `indices` (None where there is none: not on disk, not
    decodable, shorter), forever; `why` collects the reason."""
    path = Path(root) / item.original
    if not path.is_file():
        why.append(f"original {item.original} not on disk")
    else:
        try:
            for _, frame in read_frames(path, indices=indices):
                yield frame
        except VideoError as e:
            why.append(f"original: {e}")
    while True:
        yield None


def process_video(item: Item, root: Path, cache: Path, settings: Settings, backend) -> dict:
    """Crops and landmarks of one video; returns (and commits) its part."""
    rows, failures, no_face, sampled = [], [], [], []
    why: list[str] = []  # why a fake's faces could not be compared with its original

    def fail(frame: int | None, reason: str) -> None:
        failures.append(_failure(item, reason, frame))

    path = item.path(root)
    every_face = settings.faces == "all"
    compare = every_face and item.label == 1 and bool(item.original)
    if item.refused:  # a hostile or broken path in the metadata: never opened
        fail(None, item.refused)
    elif not path.exists():
        where = f"listed in {item.listed_in} but " if item.listed_in else ""
        fail(None, f"missing: {where}not found at {path}")
    else:
        tracker = FaceTracker(backend, all_faces=every_face)
        try:
            if compare:  # the fake's frames must be its original's: by index
                indices = frame_indices(path, settings.frames)
                originals = _original_frames(item, root, indices, why)
                frames = read_frames(path, indices=indices)
            else:  # from the frames that exist, whatever the header says
                originals, frames = None, read_frames(path, settings.frames)
            for idx, frame, faces in tracker.track(frames):
                sampled.append(idx)
                original = next(originals) if originals is not None else None
                if frame is None:
                    fail(idx, "frame could not be decoded (video shorter than its header says)")
                    no_face.append(idx)  # a sampled frame that gave no face crop
                    continue
                if original is not None and original.shape != frame.shape:
                    why.append(f"original {item.original} has another frame size")
                    original = None
                kept = 0
                if not faces:
                    fail(idx, "no face found")
                for track, face in faces:
                    if face.size < settings.min_face:
                        fail(
                            idx,
                            f"face too small: {face.size:.0f} px, minimum {settings.min_face}"
                            + (f" (face {track})" if every_face else ""),
                        )
                        continue
                    crop = face_crop(frame, face.landmarks, settings.scale, settings.size)
                    rel = face_path(item.video, idx, track)
                    atomic_write_bytes(cache / rel, _png(crop.image))
                    kept += 1
                    diff = (
                        face_difference(crop, face.landmarks, original, settings)
                        if original is not None
                        else float("nan")
                    )
                    rows.append(
                        {
                            "ddbb": item.ddbb,
                            "video": item.video,
                            "frame": idx,
                            "track": track,
                            "label": item.label,
                            "video_label": item.label,
                            "label_source": "video",
                            "split": item.split,
                            "method": item.method,
                            "face": rel,
                            "landmarks": [round(float(v), 3) for v in crop.landmarks.ravel()],
                            "matrix": [float(v) for v in crop.matrix.ravel()],
                            "face_size": round(face.size, 2),
                            "diff": None if np.isnan(diff) else round(diff, 3),
                        }
                    )
                if not kept:
                    no_face.append(idx)
        except VideoError as e:
            fail(None, str(e))
        if compare:
            _label_by_difference(rows, settings.diff_threshold, "; ".join(dict.fromkeys(why)))
    return write_part(cache, item, settings, rows, failures, sampled, no_face)


def write_part(
    cache: Path, item: Item, settings: Settings, rows=(), failures=(), sampled=(), no_face=()
) -> dict:
    """Commit one video's part (its rows, failures, sampled and faceless frames): once
    it is on disk the video is done, and a later run skips it."""
    part = {
        "item": asdict(item),
        "settings": asdict(settings),
        "rows": list(rows),
        "failures": list(failures),
        "sampled": list(sampled),
        "no_face": list(no_face),
    }
    atomic_write_bytes(part_path(cache, item.video), json.dumps(part).encode())
    return part


def _failure(item: Item, reason: str, frame: int | None = None) -> dict:
    return {"video": item.video, "frame": frame, "reason": reason}


def _len(part: dict) -> tuple[int, int]:
    return len(part["rows"]), len(part["failures"])


def _label_by_difference(rows: list[dict], threshold: float, note: str) -> None:
    """A fake's face tracks: fake where they differ from the original, real where not.
    Without a usable original every face keeps the video's label, and says why."""
    by_track: dict[int, list[float]] = {}
    for r in rows:
        if r["diff"] is not None:
            by_track.setdefault(r["track"], []).append(r["diff"])
    for r in rows:
        diffs = by_track.get(r["track"])
        if not diffs:
            r["label_source"] = f"video ({note or 'no frame of the original to compare'})"
            continue
        median = float(np.median(diffs))
        r["label"] = int(median > threshold)
        r["label_source"] = f"difference from original ({median:.1f} vs {threshold:g})"


_WORKER: dict = {}


@lru_cache(maxsize=2)
def _backend(name: str, min_face: int, face_detector: str):
    return get_backend(name, min_face=min_face, face_detector=face_detector)


def _init_worker(settings: Settings) -> None:
    import cv2

    cv2.setNumThreads(1)
    _WORKER["backend"] = _backend(settings.backend, settings.min_face, settings.face_detector)


def _work(args) -> tuple[int, int]:
    item, root, cache, settings = args
    try:
        return _len(process_video(item, root, cache, settings, _WORKER["backend"]))
    except DffrError as e:
        reason = str(e)
    except Exception as e:  # a library's own error on odd input: this video fails, not the run
        if isinstance(e, OSError) and disk_error(e):  # the cache's disk: the run stops
            raise
        reason = f"{type(e).__name__} while processing: {e}"
    return _len(write_part(cache, item, settings, failures=[_failure(item, reason)]))


def resolve_settings(settings: Settings, ddbb: str, database: Dataset | None) -> Settings:
    """The settings with the database's own face mode filled in (its adapter's, when
    only its name is known)."""
    if settings.faces is not None:
        return settings
    if database is None and ddbb in DATASETS:
        database = DATASETS.get(ddbb)
    return replace(settings, faces=database.faces if database is not None else "largest")


def preprocess(
    items: Iterable[Item],
    root: str | Path,
    cache: str | Path,
    settings: Settings = Settings(),
    workers: int = 1,
    shard: tuple[int, int] = (0, 1),
    progress: bool = True,
    database: Dataset | None = None,
    listed: Iterable[Item] | None = None,
) -> Summary:
    """Process every item not yet in the cache; index the cache unless sharded.

    The settings (and `database`'s name and options) are recorded in the cache; adding
    to a cache made otherwise raises CacheSettingsError naming the difference. The
    cache follows the metadata: `listed` (default: `items`) is every video the database
    lists now; cached videos it no longer lists are dropped, and labels, splits and
    methods are taken from it (see `follow_metadata`)."""
    root, cache = Path(root), Path(cache)
    if not BACKENDS.get(settings.backend).locates:
        raise DffrError(
            f"landmark backend {settings.backend!r} does not find faces itself, and videos "
            "are tracked: use one that does (dlib, face-alignment, ...)"
        )
    try:
        settings = replace(settings, face_detector=FACE_DETECTORS.canonical(settings.face_detector))
    except KeyError as e:
        raise DffrError(str(e).strip("\"'")) from None
    items = list(items)
    ddbb = database.name if database is not None else (items[0].ddbb if items else "")
    settings = resolve_settings(settings, ddbb, database)
    made = {"ddbb": ddbb, **asdict(settings)}
    if database is not None:  # without it, its options are unknown: not recorded
        made["options"] = database.options()
    with _cache_lock(cache, shard):
        if items:
            check_settings(cache, made, root)
        now = {it.video: json.loads(json.dumps(asdict(it))) for it in listed or items}
        changed = (  # a listing of nothing is no reason to empty a cache
            follow_metadata(cache, now, lambda video: in_shard(video, shard)) if now else {}
        )
        mine = [it for it in items if in_shard(it.video, shard)]
        todo = [it for it in mine if not part_path(cache, it.video).is_file()]
        summary = Summary(videos=len(todo), skipped=len(mine) - len(todo), **changed)
        bar = tqdm(total=len(todo), desc="preprocess", unit="video", disable=not progress)
        jobs = [(it, root, cache, settings) for it in todo]
        if jobs:  # weights missing: said once here, not as every video's failure
            _backend(settings.backend, settings.min_face, settings.face_detector)
        if workers > 1 and len(todo) > 1:
            _in_workers(jobs, workers, settings, lambda r: _count(r, summary, bar))
        else:
            _init_worker(settings)
            for job in jobs:
                _count(_work(job), summary, bar)
        bar.close()
        if shard[1] == 1:
            summary.index_rows, _ = build_index(cache)
        return summary


@contextlib.contextmanager
def _cache_lock(cache: Path, shard: tuple[int, int]):
    """A whole run holds its cache alone; shards of one cache share it, each holding its
    own shard alone: two runs never process the same videos at once."""
    with contextlib.ExitStack() as stack:
        whole = shard[1] == 1
        stack.enter_context(locked(cache / LOCK, f"the cache {cache}", shared=not whole))
        if not whole:
            i, n = shard
            what = f"shard {i}/{n} of the cache {cache}"
            stack.enter_context(locked(cache / f".dffr-shard-{i}-of-{n}.lock", what))
        yield


def _count(result: tuple[int, int], summary: Summary, bar) -> None:
    n_rows, n_fail = result
    summary.frames += n_rows
    summary.failures += n_fail
    bar.update(1)
    bar.set_postfix(frames=summary.frames, failures=summary.failures)


def _in_workers(jobs: list, workers: int, settings: Settings, done) -> None:
    """The jobs across `workers` processes, never more in flight than workers, so that
    when one dies (the OOM killer, a crash in a decoder) the videos it may have held are
    known. Each of those is tried again alone; one whose worker dies again is recorded
    as failed with that reason, and the others go on."""
    queue = list(reversed(jobs))
    while queue:
        for job in _pool_pass(queue, workers, settings, done):
            if _pool_pass([job], 1, settings, done):
                item, _, cache, _ = job
                reason = (
                    "the worker process died while processing this video, twice (killed by "
                    "the system, e.g. out of memory, or crashed in a decoder)"
                )
                done(_len(write_part(cache, item, settings, failures=[_failure(item, reason)])))


def _pool_pass(queue: list, workers: int, settings: Settings, done) -> list:
    """Run jobs from `queue` (popped from its end) until it is empty or a worker dies;
    returns the jobs in flight when one died (none: all done)."""
    ctx = mp.get_context("spawn")
    with ProcessPoolExecutor(workers, ctx, _init_worker, (settings,)) as pool:
        running: dict = {}
        while queue or running:
            while queue and len(running) < workers:
                job = queue.pop()
                running[pool.submit(_work, job)] = job
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            lost = []
            for future in finished:
                job = running.pop(future)
                try:
                    done(future.result())
                except BrokenProcessPool:
                    lost.append(job)
            if lost:
                return lost + list(running.values())
    return []
