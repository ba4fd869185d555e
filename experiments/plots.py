"""The pictures of an experiment, one per (train, test) pair: ROC curves, one panel per
detector (fused detectors included), and the per-manipulation AUC map."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score, roc_curve

from dffr.fusion.fuse import is_fused


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def roc_figure(scores: pd.DataFrame, path: Path, title: str) -> Path:
    """One panel per detector, one curve per region (fused regions drawn thicker), for
    the scores of one train/test pair and one split: a panel stays readable where one
    plot of every (detector, region) would not."""
    plt = _pyplot()
    scores = scores[scores["score"].notna()]  # frames without a face: counted in the tables
    fused = is_fused(scores)
    fused_names = set(scores.loc[fused, "detector"]) - set(scores.loc[~fused, "detector"])
    detectors = sorted(scores["detector"].unique(), key=lambda d: (d in fused_names, d))
    cols = min(len(detectors), 2)
    rows = -(-len(detectors) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.6 * cols, 4.4 * rows), squeeze=False)
    for ax, det in zip(axes.flat, detectors, strict=False):
        for region, g in sorted(scores[scores["detector"] == det].groupby("region")):
            thick = bool(is_fused(g).any())
            if g["label"].nunique() < 2:
                continue
            fpr, tpr, _ = roc_curve(g["label"], g["score"])
            auc = 100 * roc_auc_score(g["label"], g["score"])
            name = "" if region == det else f"{region} "
            ax.plot(fpr, tpr, lw=2.0 if thick else 1.1, label=f"{name}(AUC {auc:.1f})")
        ax.plot([0, 1], [0, 1], ls=":", c="grey", lw=0.8)
        ax.set(title=det, xlim=(0, 1), ylim=(0, 1.01))
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.legend(fontsize=7, loc="lower right")
    for ax in axes.flat[len(detectors) :]:
        ax.axis("off")
    fig.suptitle(title)
    return save_figure(fig, path)


def methods_figure(table: pd.DataFrame, path: Path, title: str, metric: str = "AUC") -> Path:
    """The per-manipulation table (rows detector/region, columns methods, values in %) as
    a colour map centred on 50: which region reveals which manipulation, at a glance."""
    plt = _pyplot()
    values = table.to_numpy(dtype=float)
    labels = [" / ".join(map(str, k)) if isinstance(k, tuple) else str(k) for k in table.index]
    fig, ax = plt.subplots(figsize=(3.6 + 1.1 * table.shape[1], 1.0 + 0.3 * len(labels)))
    image = ax.imshow(values, cmap="RdBu_r", vmin=0, vmax=100, aspect="auto")
    ax.set_xticks(range(table.shape[1]), [str(c) for c in table.columns])
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.xaxis.tick_top()
    for (i, j), v in np.ndenumerate(values):
        if not np.isnan(v):
            dark = abs(v - 50) > 30
            ax.text(
                j,
                i,
                f"{v:.0f}",
                ha="center",
                va="center",
                fontsize=7,
                c="white" if dark else "black",
            )
    fig.colorbar(image, ax=ax, label=f"{metric} (%)")
    ax.set_title(title, fontsize=9)
    return save_figure(fig, path)


def save_figure(fig, path: Path, dpi: int = 130, tight: bool = True) -> Path:
    """Write `fig` to `path` (its folder made), then free it: batch jobs draw many."""
    import matplotlib.pyplot as plt

    if tight:
        fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
