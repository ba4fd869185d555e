"""Reading the Parquet tables the stages pass on, with a clear error for a file that is
not one (damaged, truncated, another format, or missing columns a stage needs)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from dffr.errors import DffrError


def with_face_columns(scores: pd.DataFrame) -> pd.DataFrame:
    """Score rows as written before faces were numbered: one face a frame (track 0),
    labelled as its video."""
    if "track" not in scores:
        scores = scores.assign(track=0)
    if "video_label" not in scores:
        scores = scores.assign(video_label=scores["label"])
    return scores


def read_table(path: str | Path, needs: tuple[str, ...], what: str, fix: str) -> pd.DataFrame:
    """The table at `path`; DffrError naming the file, what it should be and `fix`."""
    path = Path(path)
    try:
        df = pd.read_parquet(path)
    except Exception as e:  # pyarrow raises several kinds for a file that is not Parquet
        raise DffrError(f"{path}: not a readable {what} ({type(e).__name__}: {e}); {fix}") from None
    missing = [c for c in needs if c not in df.columns]
    if missing:
        raise DffrError(f"{path}: a {what} needs the column(s) {missing}; {fix}")
    return df
