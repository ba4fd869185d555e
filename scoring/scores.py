"""The scoring stage, `dffr score`: every (detector, region) model over a cached database's frames.

All models are loaded once; each frame's crop is read once and cut into the regions the
models need, and each region's batch goes through its model; rows are written as they
are scored, a row group at a time. The result is one row per
(frame, face, detector, region): video, frame, track (which face of the video), label
(the face's), video_label, split, method, test_ddbb, train_ddbb, detector, region,
score = P(fake), tta, cache (the cache's path) and model (its file's sha256 prefix).
Re-running skips combinations already in the file, unless their model file has changed
since (a model trained again is scored again). A file names each database after one
cache only: a second cache of the same name must be given another with `test_ddbb`.

Every sampled frame of the split has rows: a frame in which no face was found gets one
row per model with track -1 and score NaN, so no test video disappears from the tables
(see `dffr.experiments.metrics`: faceless frames are counted, and at video level a
video without any face gets a stated fallback score).

Test-time augmentation (`tta`): `hflip` and `rotateN` (+N and -N degrees) views of each
region image are scored too and P(fake) is averaged over them and the image itself. The
`tta` column records the views; a file holds one setting only, so no table mixes scores
with and without TTA.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from dffr.atomic import replaced
from dffr.datasets.cache import count_index, iter_index, read_crop, read_videos
from dffr.detectors.base import PAPER_DETECTORS, Detector
from dffr.detectors.imagenet import file_digest
from dffr.detectors.model_files import load_models, model_path
from dffr.errors import DffrError
from dffr.feed import feed
from dffr.locks import beside, locked
from dffr.regions.masks import REGIONS, cut_regions
from dffr.tables import iter_table, read_table, with_face_columns
from dffr.transforms.tta import tta_label, tta_views

SCORE_COLUMNS = [
    "video",
    "frame",
    "track",
    "label",
    "video_label",
    "split",
    "method",
    "test_ddbb",
    "train_ddbb",
    "detector",
    "region",
    "score",
    "tta",
    "cache",
    "model",
]
_NOT_TEXT = {"frame": pa.int64(), "track": pa.int64(), "label": pa.int64()}
_NOT_TEXT |= {"video_label": pa.int64(), "score": pa.float64()}
SCORE_SCHEMA = pa.schema([(c, _NOT_TEXT.get(c, pa.string())) for c in SCORE_COLUMNS])
SCORES_FIX = "give a file written by `dffr score`"
KEY = ["test_ddbb", "train_ddbb", "detector", "region", "split"]
FACE_KEY = ["video", "frame", "track"]  # one face in one frame
NO_FACE_TRACK = -1


@dataclass
class ScoreReport:
    scored: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # already in the file
    # in the file, but scored by an earlier model file: scored again, the old rows dropped
    rescored: list[tuple[str, str]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # models not found
    rows: int = 0


def predict_views(model: Detector, images: np.ndarray, views, batch: int = 32) -> np.ndarray:
    """P(fake) averaged over the images and their `views` (no views: the plain scores)."""
    scores = [model.predict(images, batch=batch)]
    scores += [model.predict(view(images), batch=batch) for view in views]
    return scores[0] if len(scores) == 1 else np.mean(np.stack(scores), axis=0, dtype=np.float64)


Degrade = Callable[[np.ndarray, np.ndarray, pd.Series], tuple[np.ndarray, np.ndarray]]


def _region_batches(cache: Path, rows: pd.DataFrame, regions: set[str], degrade: Degrade | None):
    """{region: uint8 batch} for a block of index rows: one read, one mask set a frame."""
    out = {r: [] for r in regions}
    for _, row in rows.iterrows():
        crop, landmarks = read_crop(cache / row["face"]), row["landmarks"]
        if degrade is not None:
            crop, landmarks = degrade(crop, landmarks, row)
        for r, image in cut_regions(crop, landmarks, regions).items():
            out[r].append(image)
    return {r: np.stack(v) for r, v in out.items()}


def _region_block(state, rows: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    cache, regions, degrade = state
    return rows, _region_batches(cache, rows, regions, degrade)


def _blocks(chunks: Iterable[pd.DataFrame], batch: int) -> Iterator[pd.DataFrame]:
    for chunk in chunks:
        for start in range(0, len(chunk), batch):
            yield chunk.iloc[start : start + batch]


def predict_blocks(
    cache: Path,
    chunks: Iterable[pd.DataFrame],
    models: dict[Hashable, tuple[Detector, str]],
    batch: int = 32,
    tta=(),
    degrade: Degrade | None = None,
    progress: bool = True,
    desc: str = "score",
    workers: int = 0,
    total: int | None = None,
) -> Iterator[tuple[pd.DataFrame, dict[Hashable, np.ndarray]]]:
    """(block of index rows, {key: its P(fake)}) for `models` = {key: (detector, its
    region)}, block after block of `batch` rows from `chunks` (index rows, read lazily).

    Each crop is read once and cut into the regions the models need, in `workers`
    threads while the models run (see `dffr.feed`); `degrade(crop, landmarks, row)` may
    perturb it (and move its landmarks) first. `total`: the rows, for the progress bar."""
    views = tta_views(tta)
    needed = {region for _, region in models.values()}
    made = feed(_region_block, (cache, needed, degrade), _blocks(chunks, batch), workers)
    with tqdm(total=total, desc=desc, unit="face", disable=not progress) as bar:
        for rows, images in made:
            yield (
                rows,
                {
                    key: predict_views(model, images[region], views, batch).astype(np.float64)
                    for key, (model, region) in models.items()
                },
            )
            bar.update(len(rows))


def predict_frames(
    cache: Path, rows: pd.DataFrame, models: dict[Hashable, tuple[Detector, str]], **options
) -> dict[Hashable, np.ndarray]:
    """{key: P(fake) of each of `rows`}, as `predict_blocks(..., **options)` gives them."""
    parts: dict[Hashable, list[np.ndarray]] = {k: [np.zeros(0)] for k in models}
    for _, scores in predict_blocks(cache, [rows], models, **options):
        for key, values in scores.items():
            parts[key].append(values)
    return {k: np.concatenate(v) for k, v in parts.items()}


SCORE_NEEDS = (
    *("video", "frame", "label", "split", "test_ddbb", "train_ddbb"),
    *("detector", "region", "score"),
)
SOURCES = ("tta", "cache", "model")  # columns files written before them lack
WRITE_ROWS = 65_536  # score rows gathered before they are written as a row group
INDEX_ROWS = 4_096  # index rows read at a time


def _sourced(df: pd.DataFrame) -> pd.DataFrame:
    for column in SOURCES:  # older files: no TTA, sources not recorded
        if column not in df:
            df[column] = ""
        df[column] = df[column].fillna("")
    return df


def read_scores(path: Path) -> pd.DataFrame:
    """A scores file; one written before the `tta` column existed holds no TTA."""
    return with_face_columns(_sourced(read_table(path, SCORE_NEEDS, "scores file", SCORES_FIX)))


def _iter_scores(path: Path, columns: list[str] | None = None) -> Iterator[pd.DataFrame]:
    """`read_scores` a row group at a time (of `columns` only: as they are in the file,
    and the sources)."""
    parts = iter_table(path, SCORE_NEEDS, "scores file", SCORES_FIX, columns, WRITE_ROWS)
    for part in parts:
        yield _sourced(part) if columns else with_face_columns(_sourced(part))


def _held(path: Path) -> pd.DataFrame:
    """What a scores file holds: each (KEY, tta, cache, model) once, read a part at a
    time."""
    columns = [*KEY, *SOURCES]
    parts = []
    if path.is_file():
        parts = [part[columns].drop_duplicates() for part in _iter_scores(path, columns)]
    if not parts:
        return pd.DataFrame(columns=columns)
    return pd.concat(parts, ignore_index=True).drop_duplicates()


def model_id(weights: Path) -> str:
    """What a score row records of its model: the file's sha256 (first 16 hex digits),
    so that scores are traced to the file that made them and a model trained again is
    scored again."""
    return file_digest(weights)[:16]


def faceless_rows(videos: pd.DataFrame) -> pd.DataFrame:
    """One row (track -1) per sampled frame that gave no face crop (no face found, too
    small, not decodable), and one (frame -1) per video on disk that could not be read
    at all: they are test videos too. Videos listed but not on disk, or whose listed
    path was refused, are not."""
    rows = []
    for v in videos.itertuples():
        frames = list(v.no_face)
        absent = v.error.startswith(("missing", "refused"))
        if not frames and v.frames == 0 and v.error and not absent:
            frames = [-1]
        rows += [
            {
                "video": v.video,
                "frame": int(f),
                "track": NO_FACE_TRACK,
                "label": v.label,
                "video_label": v.label,
                "split": v.split,
                "method": v.method,
            }
            for f in frames
        ]
    return pd.DataFrame(rows, columns=[*FACE_KEY, "label", "video_label", "split", "method"])


def _described(tta: str) -> str:
    return f"with TTA {tta}" if tta else "without TTA"


def score(
    cache: str | Path,
    models: str | Path,
    train_ddbb: str,
    out: str | Path,
    detectors=PAPER_DETECTORS,
    regions=REGIONS,
    split: str = "test",
    device: str | None = None,
    batch: int = 32,
    progress: bool = True,
    test_ddbb: str | None = None,
    tta=(),
    workers: int = 0,
) -> ScoreReport:
    """Score the `split` frames of a cache with the models trained on `train_ddbb`.

    `test_ddbb` names the cached database in the rows (default: the cache's own);
    `tta` lists test-time views (hflip, rotateN) whose scores are averaged in; `workers`
    threads read the crops (0: this one), with the same scores whatever their number.
    The index is read, scored and written a chunk at a time, so memory stays flat as the
    database grows (benchmarks/score_memory.py)."""
    cache, out = Path(cache), Path(out)
    label = tta_label(tta)
    total = count_index(cache, split)
    videos = read_videos(cache, split)
    faceless = faceless_rows(videos)
    if not total and faceless.empty:
        raise DffrError(f"{cache}: no video in split {split!r} to score")
    test_ddbb = test_ddbb or str(videos["ddbb"].iloc[0])
    with locked(beside(out), f"the scores file {out}"):
        if out.is_file() and "track" not in pq.read_schema(out).names:
            raise DffrError(
                f"{out} was written by an older dffr, without rows for the frames that have no "
                "face: score into a new file, so that every model's rows count them alike"
            )
        held = _held(out)
        ttas = set(held["tta"])
        if ttas and ttas != {label}:
            raise DffrError(
                f"{out} holds scores {' and '.join(map(_described, sorted(ttas)))}; these would "
                f"be {_described(label)}: write them to another file, so no table mixes the two"
            )
        source = str(cache.resolve())
        others = set(held.loc[held["test_ddbb"] == test_ddbb, "cache"]) - {"", source}
        if others:
            raise DffrError(
                f"{out} holds scores of {test_ddbb!r} made from the cache {sorted(others)[0]}, "
                f"and {cache} is another cache: name its database with --test-ddbb NAME (or "
                "score into another file), so that the two are not taken for one"
            )
        done = held.drop_duplicates(KEY).set_index(KEY)["model"].to_dict()
        report = ScoreReport()
        wanted: list[tuple[str, str, str]] = []
        stale = []
        for det in detectors:
            for region in regions:
                key = (test_ddbb, train_ddbb, det, region, split)
                path = model_path(models, det, train_ddbb, region)
                if key in done and (not path.is_file() or done[key] in ("", model_id(path))):
                    report.skipped.append((det, region))
                    continue
                if not path.is_file():
                    report.missing.append(str(path))
                    continue
                if key in done:  # scored by a model since trained again: its rows go
                    stale.append(key)
                wanted.append((train_ddbb, det, region))
        found, _ = load_models(models, wanted, device)  # all there: checked above
        loaded = {(det, region): (model, region) for (_, det, region), model in found.items()}
        report.rescored = [k[2:4] for k in stale]
        if not loaded:
            return report
        made = {
            "test_ddbb": test_ddbb,
            "train_ddbb": train_ddbb,
            "tta": label,
            "cache": source,
            "model": {
                (det, region): model_id(model_path(models, det, train_ddbb, region))
                for det, region in loaded
            },
        }
        with replaced(out) as tmp, _ScoreWriter(tmp) as writer:
            if out.is_file():  # what the file held, but the rows of models scored again
                for part in _iter_scores(out):
                    writer.add(part[~part.set_index(KEY).index.isin(stale)] if stale else part)
            blocks = predict_blocks(
                cache,
                iter_index(cache, split, INDEX_ROWS),
                loaded,
                batch,
                tta,
                progress=progress,
                desc=f"score {test_ddbb} {split}",
                workers=workers,
                total=total,
            )
            for rows, scores in blocks:
                writer.add(_scored(rows, scores, made))
            nan = np.full(len(faceless), np.nan)
            writer.add(_scored(faceless, {k: nan for k in loaded}, made))
        report.scored = list(loaded)
        report.rows = writer.rows
        return report


def _scored(rows: pd.DataFrame, scores: dict, made: dict) -> pd.DataFrame:
    """Score rows of index (or faceless) `rows`: one per row and model in `scores`."""
    base = rows[[*FACE_KEY, "label", "video_label", "split", "method"]].reset_index(drop=True)
    fixed = {k: made[k] for k in ("test_ddbb", "train_ddbb", "tta", "cache")}
    parts = [
        base.assign(
            detector=det, region=region, score=values, model=made["model"][det, region], **fixed
        )
        for (det, region), values in scores.items()
    ]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=SCORE_COLUMNS)


class _ScoreWriter:
    """Score rows into a Parquet file, `WRITE_ROWS` at a time, typed as SCORE_SCHEMA."""

    def __init__(self, path: Path) -> None:
        self.writer = pq.ParquetWriter(path, SCORE_SCHEMA)
        self.pending: list[pd.DataFrame] = []
        self.waiting = self.rows = 0

    def __enter__(self) -> _ScoreWriter:
        return self

    def add(self, rows: pd.DataFrame) -> None:
        if len(rows):
            self.pending.append(rows)
            self.waiting += len(rows)
        if self.waiting >= WRITE_ROWS:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            table = pd.concat(self.pending, ignore_index=True)[SCORE_COLUMNS]
            self.writer.write_table(
                pa.Table.from_pandas(table, schema=SCORE_SCHEMA, preserve_index=False)
            )
            self.rows += len(table)
        self.pending, self.waiting = [], 0

    def __exit__(self, kind, *_) -> None:
        if kind is None:
            self.flush()
        self.writer.close()
