"""Intra- and inter-database tables, as in the paper, written as CSV, Markdown and LaTeX.

Intra-database: models trained and tested on the same database; one row per (detector,
region) and per fused score, one column per database. Inter-database: for each training
database, the same rows against every other database. Cells are a metric (AUC by
default) in percent, with the bootstrap 95% interval when the evaluation has one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

ROWS = ["detector", "region"]


def _cell(row: pd.Series, metric: str) -> str:
    v = row[metric]
    if np.isnan(v):
        return "n/a"
    lo, hi = row.get(f"{metric}_lo", np.nan), row.get(f"{metric}_hi", np.nan)
    if np.isnan(lo):
        return f"{100 * v:.1f}"
    return f"{100 * v:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]"


def intra_table(results: pd.DataFrame, metric: str = "auc") -> pd.DataFrame:
    """Rows (detector, region); columns: each database, trained and tested on itself."""
    same = results[results["train_ddbb"] == results["test_ddbb"]]
    cells = same.assign(cell=[_cell(r, metric) for _, r in same.iterrows()])
    return cells.pivot_table(index=ROWS, columns="test_ddbb", values="cell", aggfunc="first")


def inter_table(results: pd.DataFrame, metric: str = "auc") -> pd.DataFrame:
    """Rows (train database, detector, region); columns: the other test databases."""
    other = results[results["train_ddbb"] != results["test_ddbb"]]
    cells = other.assign(cell=[_cell(r, metric) for _, r in other.iterrows()])
    return cells.pivot_table(
        index=["train_ddbb", *ROWS], columns="test_ddbb", values="cell", aggfunc="first"
    )


def method_table(scores: pd.DataFrame, metric: str = "auc") -> pd.DataFrame:
    """Rows (train, test, detector, region); one column per manipulation method: the
    metric of the real faces against that method's fakes alone. Shows which region
    reveals which manipulation (a region that a method leaves untouched scores ~50%)."""
    from dffr.experiments.metrics import metrics

    rows = []
    keys = ["train_ddbb", "test_ddbb", *ROWS]
    for key, g in scores[scores["score"].notna()].groupby(keys, sort=True):
        real = g[g["label"] == 0]
        for method, fake in g[g["label"] == 1].groupby("method"):
            both = pd.concat([real, fake])
            m = metrics(both["label"], both["score"])[metric]
            rows.append({**dict(zip(keys, key, strict=True)), "method": method, "cell": m})
    if not rows:
        return pd.DataFrame()
    table = pd.DataFrame(rows).pivot_table(
        index=keys, columns="method", values="cell", aggfunc="first"
    )
    return (100 * table).round(1)


def no_face_note(results: pd.DataFrame) -> str:
    """Per test database: how many test frames and videos had no face, and what became
    of them ("" when every sampled frame had one)."""
    notes = []
    for ddbb, g in results.groupby("test_ddbb", sort=True):
        first = g.iloc[0]  # every model saw the same frames
        frames, videos = int(first["no_face_frames"]), int(first["no_face_videos"])
        if not frames:
            continue
        video_level = first["level"] == "video"
        fate = (
            f"scored {first['no_face_score']:g} at video level"
            if video_level
            else "not in the frame-level figures"
        )
        notes.append(
            f"{ddbb}: {frames} test frame(s) had no face, and {videos} of "
            f"{int(first['videos'])} test video(s) none at all ({fate})"
        )
    return "; ".join(notes) + "." if notes else ""


def write_table(table: pd.DataFrame, stem: Path, caption: str) -> list[Path]:
    """`stem`.csv, .md and .tex; returns the paths written."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    flat = table.reset_index()
    flat.columns.name = None
    paths = [stem.with_suffix(".csv"), stem.with_suffix(".md"), stem.with_suffix(".tex")]
    flat.to_csv(paths[0], index=False)
    paths[1].write_text(f"{caption}\n\n{flat.to_markdown(index=False)}\n")
    paths[2].write_text(flat.to_latex(index=False, caption=caption, escape=True))
    return paths
