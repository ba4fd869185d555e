"""Reading the Parquet tables the stages pass on, with a clear error for a file that is
not one (damaged, truncated, another format, or missing columns a stage needs)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

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


def iter_table(
    path: str | Path,
    needs: tuple[str, ...],
    what: str,
    fix: str,
    columns: list[str] | None = None,
    rows: int = 65_536,
) -> Iterator[pd.DataFrame]:
    """The table at `path` (only those of `columns` it has, if given) in its order, at
    most `rows` rows at a time, so memory stays flat however large it is; the errors of
    `read_table`, and one for a part damaged behind a readable footer."""
    path = Path(path)
    try:
        source = pq.ParquetFile(path)
        names = source.schema_arrow.names
    except Exception as e:
        raise DffrError(f"{path}: not a readable {what} ({type(e).__name__}: {e}); {fix}") from None
    missing = [c for c in needs if c not in names]
    if missing:
        raise DffrError(f"{path}: a {what} needs the column(s) {missing}; {fix}")
    wanted = None if columns is None else [c for c in columns if c in names]
    batches = source.iter_batches(batch_size=rows, columns=wanted)
    while True:
        try:
            batch = next(batches, None)
        except Exception as e:
            why = f"a part of this {what} cannot be read ({type(e).__name__}: {e})"
            raise DffrError(f"{path}: {why}; {fix}") from None
        if batch is None:
            return
        yield batch.to_pandas()
