"""The one training loop, for every framework: epochs, precise BN, model selection on
validation AUC, early stopping, checkpoints with exact resume, and the per-epoch log.

A detector brings what differs between PyTorch and Keras (`Detector`'s training hooks):
a step over a batch, a copy of its weights, and its checkpoint files. Written once here,
a rule (how an epoch is selected, when patience runs out, when a checkpoint is due) is
the same rule for every detector.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

if TYPE_CHECKING:
    from dffr.detectors.base import Detector


def selection_score(auc: float, val_loss: float, epoch: int) -> float:
    """What an epoch is selected on: val AUC; a one-class val set falls back to the
    val loss, none at all to the last epoch."""
    if not np.isnan(auc):
        return auc
    return -val_loss if not np.isnan(val_loss) else float(epoch)


def fit(
    det: Detector,
    train,
    val,
    log,
    checkpoint: Path | None = None,
    keep_checkpoint: bool = False,
) -> None:
    """Train `det` on `train`, keep its best epoch on `val`, resume from `checkpoint`.

    A checkpoint is written after an epoch once `checkpoint_minutes` have passed since
    the last one (0: after every epoch), and after the last epoch when it is kept."""
    cfg = det.config
    rank, world = det.begin_training()
    state = {"epoch": 0, "best": -np.inf, "stale": 0}
    best = None
    resumed = det.read_checkpoint(checkpoint) if checkpoint is not None else None
    if resumed is not None:
        saved, rows, best = resumed
        state = {k: saved[k] for k in state}
        log.rows.extend(rows)
    epochs = det.total_epochs()
    steps = -(-len(train) // (cfg.batch * world))
    written = time.monotonic()
    for epoch in range(state["epoch"], epochs):
        stage = det.begin_epoch(epoch)
        total, seen = 0.0, 0
        for batch in tqdm(
            det.train_batches(train, epoch, (rank, world)),
            total=steps,
            desc=f"epoch {epoch + 1}/{epochs}" + ("" if stage == "full" else f" ({stage})"),
            unit="batch",
            disable=rank != 0,
            leave=False,
        ):
            total += det.train_step(batch) * len(batch)
            seen += len(batch)
        det.recalibrate_bn(train)
        auc, val_loss = det.evaluate(val, cfg.batch)
        score = selection_score(auc, val_loss, epoch)
        if score > state["best"]:
            state.update(best=score, stale=0)
            best = det.snapshot()
        elif stage == "full":  # a head-only warm-up never counts towards patience
            state["stale"] += 1
        log.epoch(
            epoch=epoch + 1,
            stage=stage,
            train_loss=total / max(seen, 1),
            val_loss=val_loss,
            val_auc=auc,
        )
        state["epoch"] = epoch + 1
        last = epoch + 1 == epochs or (stage == "full" and state["stale"] >= cfg.patience)
        due = time.monotonic() - written >= cfg.checkpoint_minutes * 60
        if rank == 0 and checkpoint is not None and (due or (last and keep_checkpoint)):
            det.write_checkpoint(checkpoint, state, log.rows, best)
            written = time.monotonic()
        if last:
            break
    if best is not None:
        det.restore(best)
    aucs = [r["val_auc"] for r in log.rows if not np.isnan(r["val_auc"])]
    det.val_auc = max(aucs) if aucs else None
