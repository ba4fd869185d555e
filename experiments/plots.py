"""ROC curves of every score of a test database, one figure per (train, test) pair."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from sklearn.metrics import roc_auc_score, roc_curve


def roc_figure(scores: pd.DataFrame, path: Path, title: str) -> Path:
    """One curve per (detector, region) in `scores` (one train/test pair, one split)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10.5, 5.6))
    for (det, region), g in sorted(scores.groupby(["detector", "region"])):
        if g["label"].nunique() < 2:
            continue
        fpr, tpr, _ = roc_curve(g["label"], g["score"])
        name = det if det == region else f"{det} / {region}"
        fused = "(" in det or "(" in region
        ax.plot(
            fpr,
            tpr,
            lw=2.2 if fused else 1.0,
            label=f"{name} (AUC {100 * roc_auc_score(g['label'], g['score']):.1f})",
        )
    ax.plot([0, 1], [0, 1], ls=":", c="grey", lw=0.8)
    ax.set(
        xlabel="false positive rate",
        ylabel="true positive rate",
        title=title,
        xlim=(0, 1),
        ylim=(0, 1.01),
    )
    ax.legend(fontsize=6.5, loc="center left", bbox_to_anchor=(1.02, 0.5))
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
