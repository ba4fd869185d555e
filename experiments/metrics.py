"""Detection metrics at frame and video level, with bootstrap confidence intervals.

AUC, AP and accuracy come from scikit-learn; the EER is read off the ROC curve where the
false-positive and false-negative rates cross (linearly interpolated). Confidence
intervals resample whole videos, since frames of one video are not independent.

Frames without a face (rows with score NaN, see `dffr.experiments.scoring`) are never
dropped silently: every result counts them (`no_face_frames`, and `no_face_videos` for
videos without any face). Frame level scores the faces found. Video level: each face
track's mean score, the highest track of a video (a video is fake if any face is, as
in DFDC), against the video's label; a video without any face scores `no_face_score`
(0.5 by default: no evidence either way), and the result says so.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, average_precision_score, roc_auc_score, roc_curve

from dffr.tables import with_face_columns

GROUP = ["train_ddbb", "test_ddbb", "detector", "region", "split"]
METRICS = ("auc", "eer", "ap", "acc")


def eer(labels, scores) -> float:
    """Equal error rate: where the ROC's false-positive rate equals its miss rate."""
    fpr, tpr, _ = roc_curve(labels, scores)
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


def bootstrap(scores: pd.DataFrame, n: int = 1000, seed: int = 0) -> dict[str, tuple]:
    """95% intervals of each metric, resampling videos with replacement."""
    labels = scores["label"].to_numpy()
    values = scores["score"].to_numpy(dtype=np.float64)
    rows_of = list(scores.groupby("video", sort=True).indices.values())
    rng = np.random.default_rng(seed)
    draws = {m: [] for m in METRICS}
    for _ in range(n):
        pick = rng.integers(0, len(rows_of), size=len(rows_of))
        idx = np.concatenate([rows_of[i] for i in pick])
        m = metrics(labels[idx], values[idx])
        for k in METRICS:
            draws[k].append(m[k])
    return {
        k: (float(np.nanpercentile(v, 2.5)), float(np.nanpercentile(v, 97.5)))
        if not np.all(np.isnan(v))
        else (np.nan, np.nan)
        for k, v in draws.items()
    }


def evaluate(
    scores: pd.DataFrame,
    level: str = "frame",
    n_bootstrap: int = 1000,
    seed: int = 0,
    no_face_score: float = NO_FACE_SCORE,
) -> pd.DataFrame:
    """A metrics table: one row per (train, test, detector, region, split), with the
    frames and videos without a face counted (see the module docstring)."""
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
            for m, (lo, hi) in bootstrap(g, n_bootstrap, seed).items():
                row[f"{m}_lo"], row[f"{m}_hi"] = lo, hi
        rows.append(row)
    return pd.DataFrame(rows)
