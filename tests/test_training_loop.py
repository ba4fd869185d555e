"""The one training loop on a scripted detector: which epoch is kept, when patience runs
out (never during a head-only warm-up), when a checkpoint is written, and a resume that
picks up the saved state. The frameworks' own hooks are tested in the detector tests."""

from __future__ import annotations

import math

import numpy as np

from dffr.detectors import training_loop
from dffr.detectors.base import DetectorConfig
from dffr.detectors.data import Batch


class _Log:
    def __init__(self):
        self.rows = []

    def epoch(self, **values):
        self.rows.append(values)


class _Scripted:
    """Reports the val AUCs it is given, one per epoch; its 'weights' are the epoch."""

    def __init__(self, aucs, head_epochs=0, **cfg):
        self.config = DetectorConfig("DSP-FWA", batch=2, **cfg)
        self.aucs, self.head_epochs = list(aucs), head_epochs
        self.epoch = self.weights = None
        self.checkpoints, self.saved = [], None

    def total_epochs(self):
        return len(self.aucs)

    def begin_training(self):
        return 0, 1

    def begin_epoch(self, epoch):
        self.epoch = self.weights = epoch
        return "head" if epoch < self.head_epochs else "full"

    def train_batches(self, train, epoch, shard):
        yield Batch(np.zeros((2, 4, 4, 3), np.uint8), np.array([0, 1]))

    def train_step(self, batch):
        return 0.5

    def recalibrate_bn(self, train):
        pass

    def evaluate(self, val, batch):
        return self.aucs[self.epoch], 0.7

    def snapshot(self):
        return self.weights

    def restore(self, best):
        self.weights = best

    def write_checkpoint(self, path, state, rows, best):
        self.checkpoints.append(state["epoch"])
        self.saved = (dict(state), list(rows), best)

    def read_checkpoint(self, path):
        return self.saved


def test_the_best_val_auc_is_kept_and_patience_stops_training():
    det, log = _Scripted([0.6, 0.9, 0.8, 0.7, 0.95], patience=2), _Log()
    training_loop.fit(det, [1, 2], None, log)
    assert [r["epoch"] for r in log.rows] == [1, 2, 3, 4]  # two epochs without gain
    assert det.weights == 1 and det.val_auc == 0.9


def test_a_head_only_warm_up_never_uses_up_patience():
    det, log = _Scripted([0.9, 0.5, 0.5, 0.6, 0.95], head_epochs=3, patience=1), _Log()
    training_loop.fit(det, [1, 2], None, log)
    assert [r["stage"] for r in log.rows] == ["head", "head", "head", "full"]
    assert det.weights == 0  # the warm-up's first epoch stayed the best


def test_one_class_validation_selects_on_loss_then_on_the_last_epoch():
    assert training_loop.selection_score(math.nan, 0.3, 4) == -0.3
    assert training_loop.selection_score(math.nan, math.nan, 4) == 4.0
    assert training_loop.selection_score(0.8, 0.3, 4) == 0.8


def test_checkpoints_follow_checkpoint_minutes(tmp_path):
    ckpt = tmp_path / "m.ckpt"
    every = _Scripted([0.5, 0.6, 0.7], checkpoint_minutes=0)
    training_loop.fit(every, [1], None, _Log(), ckpt)
    assert every.checkpoints == [1, 2, 3]
    rarely = _Scripted([0.5, 0.6, 0.7], checkpoint_minutes=60)
    training_loop.fit(rarely, [1], None, _Log(), ckpt)
    assert rarely.checkpoints == []  # nothing due, nothing to keep
    kept = _Scripted([0.5, 0.6, 0.7], checkpoint_minutes=60)
    training_loop.fit(kept, [1], None, _Log(), ckpt, keep_checkpoint=True)
    assert kept.checkpoints == [3]  # the last epoch, for a later run to extend


def test_a_resume_starts_after_the_saved_epoch_with_its_log_and_best(tmp_path):
    ckpt = tmp_path / "m.ckpt"
    first, log = _Scripted([0.5, 0.9, 0.6, 0.7], checkpoint_minutes=0), _Log()
    first.aucs = first.aucs[:2]
    training_loop.fit(first, [1], None, log, ckpt, keep_checkpoint=True)
    second, log2 = _Scripted([0.5, 0.9, 0.6, 0.7], checkpoint_minutes=0), _Log()
    second.saved = first.saved
    training_loop.fit(second, [1], None, log2, ckpt)
    assert [r["epoch"] for r in log2.rows] == [1, 2, 3, 4]  # 1-2 read back, 3-4 trained
    assert [r["val_auc"] for r in log2.rows] == [0.5, 0.9, 0.6, 0.7]
    assert second.weights == 1 and second.val_auc == 0.9  # the best from before the stop
