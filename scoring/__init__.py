"""The scoring stage: every (detector, region) model over a cached database's faces,
written as one score table (Parquet) that fusion and evaluation read.

    from dffr.scoring import score, read_scores
    report = score("cache/FF", "models", "FF", "scores.parquet")
    scores = read_scores("scores.parquet")       # one row per (face, detector, region)
"""

from dffr.scoring.scores import (
    SCORE_COLUMNS,
    ScoreReport,
    model_id,
    predict_frames,
    predict_views,
    read_scores,
    score,
)

__all__ = [
    "SCORE_COLUMNS",
    "ScoreReport",
    "model_id",
    "predict_frames",
    "predict_views",
    "read_scores",
    "score",
]
