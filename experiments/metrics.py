"""Detection metrics at frame and video level, with bootstrap confidence intervals.

AUC, AP and accuracy come from scikit-learn; the EER is read off the ROC curve where the
false-positive and false-negative rates cross (linearly interpolated). Confidence
intervals resample whole videos, since frames of one video are not independent; they are
the draws of the plain loop (sklearn on each resample's rows) bit for bit, computed from
one sort of the scores (a resample only changes how often each video counts), and can be
kept in a cache folder, one small JSON per cell, keyed by everything they depend on.

Frames without a face (rows with score NaN, see `dffr.scoring`) are never
dropped silently: every result counts them (`no_face_frames`, and `no_face_videos` for
videos without any face). Frame level scores the faces found. Video level: each face
track's mean score, the highest track of a video (a video is fake if any face is, as
in DFDC), against the video's label; a video without any face scores `no_face_score`
(0.5 by default: no evidence either way), and the result says so.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import sklearn
from sklearn.metrics import accuracy_score, average_precision_score, roc_auc_score, roc_curve

from dffr.atomic import replaced
from dffr.tables import with_face_columns

GROUP = ["train_ddbb", "test_ddbb", "detector", "region", "split"]
METRICS = ("auc", "eer", "ap", "acc")
# part of the cache key: change it whenever the intervals' computation changes
BOOTSTRAP_VERSION = 1


def eer(labels, scores) -> float:
    """Equal error rate: where the ROC's false-positive rate equals its miss rate."""
    fpr, tpr, _ = roc_curve(labels, scores)
    return crossing(fpr, tpr)


def crossing(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """The EER of a ROC curve given as points (linear between them)."""
    fnr = 1 - tpr
    d = fpr - fnr  # rises from -1 to 1 along the curve
    i = int(np.searchsorted(d, 0.0))
    if i == 0:
        return float(fpr[0])
    if d[i] == d[i - 1]:
        return float((fpr[i] + fnr[i]) / 2)
    t = -d[i - 1] / (d[i] - d[i - 1])
    return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))


def metrics(labels, scores) -> dict[str, float]:
    labels, scores = np.asarray(labels), np.asarray(scores, dtype=np.float64)
    if not len(labels):  # nothing scored (e.g. no face in any test frame)
        return dict.fromkeys(METRICS, np.nan)
    both = len(np.unique(labels)) == 2
    return {
        "auc": float(roc_auc_score(labels, scores)) if both else np.nan,
        "eer": eer(labels, scores) if both else np.nan,
        "ap": float(average_precision_score(labels, scores)) if both else np.nan,
        "acc": float(accuracy_score(labels, scores >= 0.5)),
    }


NO_FACE_SCORE = 0.5


def video_level(scores: pd.DataFrame, no_face_score: float = NO_FACE_SCORE) -> pd.DataFrame:
    """One row per video: its highest face track's mean score (`no_face_score` for a
    video without a face), labelled with the video's label."""
    keys = [c for c in GROUP + ["video", "method"] if c in scores]
    data = with_face_columns(scores)
    per_track = (
        data.assign(label=data["video_label"])
        .groupby([*keys, "label", "track"], sort=False, dropna=False)["score"]
        .mean()
        .reset_index()
    )
    videos = (
        per_track.groupby([*keys, "label"], sort=False, dropna=False)["score"].max().reset_index()
    )
    videos["no_face"] = videos["score"].isna()
    videos["score"] = videos["score"].fillna(no_face_score)
    return videos


def roc(fps: np.ndarray, tps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """sklearn's `roc_curve` (collinear points dropped, (0, 0) first) from the false and
    true positive counts at each distinct threshold, highest first: the same arithmetic,
    hence the same AUC and EER to the last bit."""
    if len(fps) > 2:
        corner = (np.diff(fps, 2) != 0) | (np.diff(tps, 2) != 0)
        keep = np.flatnonzero(np.r_[True, corner, True])
        fps, tps = fps[keep], tps[keep]
    fps, tps = np.r_[0.0, fps], np.r_[0.0, tps]
    return fps / fps[-1], tps / tps[-1]


def trapezoid(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """sklearn's `auc` of an increasing curve (SciPy's trapezoid rule), without its
    input checks, which took longer than the sum itself."""
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


def average_precision(fps: np.ndarray, tps: np.ndarray) -> float:
    """sklearn's `average_precision_score` from the same counts (no point dropped)."""
    precision = np.r_[(tps / (tps + fps))[::-1], 1.0]
    recall = np.r_[(tps / tps[-1])[::-1], 0.0]
    return float(max(0.0, -np.sum(np.diff(recall) * precision[:-1])))


def video_numbers(scores: pd.DataFrame) -> tuple[np.ndarray, int]:
    """Each row's video as its rank among the sorted video ids (what a draw picks), and
    the number of videos; a row without a video id gets that number: it is never drawn."""
    rows_of = scores.groupby("video", sort=True).indices.values()
    video = np.full(len(scores), len(rows_of), dtype=np.int64)
    for v, rows in enumerate(rows_of):
        video[rows] = v
    return video, len(rows_of)


def bootstrap_draws(scores: pd.DataFrame, n: int = 1000, seed: int = 0) -> dict[str, np.ndarray]:
    """Each metric on each of `n` resamples of whole videos, equal to `metrics` on the
    resampled rows (same draws from the generator, same arithmetic) but without copying
    or sorting rows per resample: the rows are sorted once, and a resample only changes
    how many times each video counts, so its counts at each threshold are cumulative
    sums of those weights."""
    labels = scores["label"].to_numpy()
    values = scores["score"].to_numpy(dtype=np.float64)
    video, videos = video_numbers(scores)
    order = np.argsort(values, kind="stable")[::-1]
    ends = np.r_[np.flatnonzero(np.diff(values[order])), len(values) - 1]  # of each value
    if len(ends) == len(values):
        ends = slice(None)  # no ties: every row ends its own value (and no copy is made)
    video_sorted, fake_sorted = video[order], (labels == 1)[order]
    n_rows = np.bincount(video, minlength=videos + 1)
    n_correct = np.bincount(video[labels == (values >= 0.5)], minlength=videos + 1)
    rng = np.random.default_rng(seed)
    draws = {m: np.full(n, np.nan) for m in METRICS}
    for r in range(n if videos else 0):
        times = np.bincount(rng.integers(0, videos, size=videos), minlength=videos + 1)
        draws["acc"][r] = (times @ n_correct) / (times @ n_rows)
        w = times.astype(np.float64).take(video_sorted)  # integers: the sums below are exact
        above = np.cumsum(w)[ends]
        present = np.flatnonzero(np.diff(above, prepend=0.0) != 0)  # values it has
        above, tps = above[present], np.cumsum(w * fake_sorted)[ends][present]
        fps = above - tps
        if tps[-1] > 0 and fps[-1] > 0:
            fpr, tpr = roc(fps, tps)
            draws["auc"][r] = trapezoid(fpr, tpr)
            draws["eer"][r] = crossing(fpr, tpr)
            draws["ap"][r] = average_precision(fps, tps)
    return draws


def bootstrap(
    scores: pd.DataFrame, n: int = 1000, seed: int = 0, cache_dir: str | Path | None = None
) -> dict[str, tuple[float, float]]:
    """95% intervals of each metric, resampling videos with replacement; read from
    `cache_dir` when these very rows, `n` and `seed` were bootstrapped before."""
    path = Path(cache_dir) / f"{cache_key(scores, n, seed)}.json" if cache_dir else None
    if path is not None:
        cached = read_intervals(path)
        if cached is not None:
            return cached
    intervals = {
        k: (float(np.nanpercentile(v, 2.5)), float(np.nanpercentile(v, 97.5)))
        if not np.all(np.isnan(v))
        else (np.nan, np.nan)
        for k, v in bootstrap_draws(scores, n, seed).items()
    }
    if path is not None:
        with replaced(path) as tmp:
            tmp.write_text(json.dumps(intervals))
    return intervals


def cache_key(scores: pd.DataFrame, n: int, seed: int) -> str:
    """A hash of all the bootstrap reads: each row's score, whether it is fake, whether
    it is called right at 0.5, which video it belongs to (its rank among the sorted ids:
    what the draws pick), `n`, `seed`, and the code and library versions. Level and
    no-face score enter through the rows they produce."""
    values = scores["score"].to_numpy(dtype=np.float64)
    labels = scores["label"].to_numpy()
    video, _ = video_numbers(scores)
    h = hashlib.sha256()
    head = [BOOTSTRAP_VERSION, np.__version__, sklearn.__version__, len(values), int(n), int(seed)]
    h.update(json.dumps(head).encode())
    for a in (values, labels == 1, labels == (values >= 0.5), video):
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def read_intervals(path: Path) -> dict[str, tuple[float, float]] | None:
    """The intervals cached at `path`; None when absent or damaged (then recomputed)."""
    try:
        data = json.loads(path.read_text())
        intervals = {}
        for k in METRICS:
            lo, hi = data[k]
            intervals[k] = (float(lo), float(hi))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return intervals


def evaluate(
    scores: pd.DataFrame,
    level: str = "frame",
    n_bootstrap: int = 1000,
    seed: int = 0,
    no_face_score: float = NO_FACE_SCORE,
    cache_dir: str | Path | None = None,
) -> pd.DataFrame:
    """A metrics table: one row per (train, test, detector, region, split), with the
    frames and videos without a face counted (see the module docstring); the bootstrap
    intervals are kept in `cache_dir` when given, so a rerun does not redo them."""
    if level not in ("frame", "video"):
        raise ValueError("level must be 'frame' or 'video'")
    if not 0 <= no_face_score <= 1:
        raise ValueError(f"no_face_score must be in [0, 1], not {no_face_score}")
    rows = []
    for key, group in scores.groupby(GROUP, sort=True):
        found = group["score"].notna()
        faceless = group.loc[~found, "video"].unique()
        no_face_videos = len(set(faceless) - set(group.loc[found, "video"]))
        g = video_level(group, no_face_score) if level == "video" else group[found]
        row = dict(zip(GROUP, key, strict=True))
        row.update(
            level=level,
            n=len(g),
            videos=group["video"].nunique(),
            no_face_frames=int((~found).sum()),
            no_face_videos=no_face_videos,
            no_face_score=no_face_score if level == "video" else np.nan,
            **metrics(g["label"], g["score"]),
        )
        if n_bootstrap:
            for m, (lo, hi) in bootstrap(g, n_bootstrap, seed, cache_dir).items():
                row[f"{m}_lo"], row[f"{m}_hi"] = lo, hi
        rows.append(row)
    return pd.DataFrame(rows)
