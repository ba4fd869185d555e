"""`dffr train`: one model per (detector, region, database), from the face cache.

Reads the cache's train split to fit and its val split to select; never the test split.
Writes `models/<DB>/<Detector>_<DB>_<region>.{pt,keras}`, a JSON sidecar (config, input
size, normalisation, label convention, val AUC, training data summary and fingerprint),
a per-epoch CSV log and TensorBoard events. The checkpoint `--resume` continues from
is removed once the model is saved (a ResNet-50 one is ~400 MB: weights, optimizer
state, best weights) unless `keep_checkpoint`, which lets a later run extend training.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_curve

from dffr import __version__
from dffr.detectors.base import DETECTORS, Detector, DetectorConfig, build_detector
from dffr.detectors.data import RegionData, augmented
from dffr.detectors.model_files import checkpoint_path, model_path, sidecar_path
from dffr.detectors.training_log import TrainingLog
from dffr.errors import DffrError
from dffr.locks import beside, locked

LABELS = "score = P(fake); labels 1 = fake, 0 = real"
RESUMABLE = ("epochs", "patience", "checkpoint_minutes")  # settings a resume may change


@dataclass
class TrainResult:
    detector: Detector
    weights: Path
    val_auc: float | None
    train_data: RegionData
    val_data: RegionData


def _counts(data: RegionData) -> dict:
    labels = data.labels
    return {
        "faces": int(len(labels)),
        "real": int((labels == 0).sum()),
        "fake": int((labels == 1).sum()),
        "videos": int(data.rows["video"].nunique()),
    }


def train(
    config: DetectorConfig,
    cache: str | Path,
    out: str | Path = "models",
    resume: bool = False,
    keep_checkpoint: bool = False,
    device: str | None = None,
    workers: int = 0,
) -> TrainResult:
    """Train one detector on one region of a cached database; returns the trained model.
    `workers` threads read the crops and cut the regions (`dffr.feed`): the same
    batches, so the same weights for a seed, whatever their number."""
    from dffr.detectors.torch_detector import TorchDetector, distributed

    cache, out = Path(cache), Path(out)
    cls = DETECTORS.get(config.detector)
    # every option spelt out (defaults too), so a resume compares what training used
    config = replace(config, options=asdict(cls.parse_options(config.options)))
    torch_net = issubclass(cls, TorchDetector)
    rank = distributed()[0] if torch_net else 0  # torchrun runs PyTorch networks only
    train_data = RegionData.from_cache(
        cache, "train", config.region, negatives=config.negatives, seed=config.seed
    )
    if len(train_data) == 0:
        raise DffrError(f"{cache}: no rows in the train split to train on")
    if len(set(train_data.labels)) < 2:
        raise DffrError(
            f"{cache}: the train split holds one class only; use --negatives "
            "fwa or sbi to synthesise fakes from real faces"
        )
    val_data = RegionData.from_cache(cache, "val", config.region, seed=config.seed)
    if config.negatives != "none" and not (val_data.labels == 1).any():
        val_data = RegionData.from_cache(
            cache, "val", config.region, seed=config.seed + 1, negatives=config.negatives
        )
    train_data.workers = val_data.workers = workers
    if not config.ddbb:
        config.ddbb = str(train_data.rows["ddbb"].iloc[0])
    weights = model_path(out, config.detector, config.ddbb, config.region)
    # torchrun: rank 0 holds the model for all its ranks
    held = (
        locked(beside(weights), f"the model {weights}") if rank == 0 else contextlib.nullcontext()
    )
    with held:
        ckpt = checkpoint_path(weights)
        begun = ckpt.with_name(f"{ckpt.stem}.json")  # what the checkpoint is trained on
        run = {  # all but what a resumed run may change: when to stop, when to checkpoint
            "config": {k: v for k, v in config.to_dict().items() if k not in RESUMABLE},
            "data": train_data.fingerprint() + val_data.fingerprint(),
        }
        run = json.loads(json.dumps(_clean(run)))
        was = (
            json.loads(begun.read_text()) if resume and ckpt.is_file() and begun.is_file() else run
        )
        if not resume and rank == 0:
            _remove_checkpoint(ckpt)
            shutil.rmtree(weights.parent / "runs" / weights.stem, ignore_errors=True)
        elif was != run:
            changed = [k for k in run["config"] if was["config"].get(k) != run["config"][k]]
            changed += ["the training data"] if was["data"] != run["data"] else []
            raise DffrError(
                f"{ckpt}: the checkpoint was trained with another {', '.join(changed)}; "
                "train without --resume to start over"
            )
        det = build_detector(config, device)  # a config it cannot take stops before any write
        if rank == 0:
            begun.parent.mkdir(parents=True, exist_ok=True)
            begun.write_text(json.dumps(run))
        log = TrainingLog(
            weights.with_suffix(".log.csv"),
            weights.parent / "runs" / weights.stem,
            enabled=rank == 0,
        )
        try:
            train = augmented(train_data, config.augment, config.augment_p, config.seed)
            det.fit(train, val_data, log, ckpt, keep_checkpoint)
        finally:
            log.close()
        if rank == 0:
            scores, labels = [], []
            for batch in val_data.batches(config.batch):
                scores.append(det.predict(batch.images, config.batch))
                labels.append(batch.labels)
            meta = {
                "config": config.to_dict(),
                "detector": det.name,
                "input_size": config.input_size,
                "normalisation": det.normalisation,
                "labels": LABELS,
                "val_auc": det.val_auc,
                "threshold": eer_threshold(
                    np.concatenate([[], *labels]), np.concatenate([[], *scores])
                ),
                "init": det.init,
                "data": {
                    "cache": str(cache),
                    "train": _counts(train_data),
                    "val": _counts(val_data),
                    "fingerprint": train_data.fingerprint() + val_data.fingerprint(),
                },
                "history": log.rows,
                "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                "dffr": __version__,
            }
            save_model(det, weights, meta)
            if not keep_checkpoint:
                _remove_checkpoint(ckpt)
        return TrainResult(det, weights, det.val_auc, train_data, val_data)


def eer_threshold(labels: np.ndarray, scores: np.ndarray) -> dict | None:
    """The model's decision threshold, chosen on validation faces: P(fake) where the
    false-alarm and miss rates meet (the equal error rate). None without both classes."""
    if len(set(labels.tolist())) < 2:
        return None
    fpr, tpr, thresholds = roc_curve(labels, scores)
    i = int(np.argmin(np.abs((1 - tpr) - fpr)))
    return {
        "value": float(min(thresholds[i], 1.0)),  # roc_curve's first threshold is inf
        "rule": "equal error rate on val",
        "eer": float((fpr[i] + 1 - tpr[i]) / 2),
        "faces": int(len(labels)),
    }


def save_model(det: Detector, weights: Path, meta: dict) -> None:
    """Write a model and its sidecar so that a model file never exists without its own
    sidecar: both to temporary files, the old model (if any) removed, the sidecar moved
    into place, then the model. A kill at any moment leaves the old pair or no model
    (which is then trained again), never a model with another's sidecar or none."""
    tmp_weights = weights.with_name(f".tmp-{weights.name}")  # the same suffix: Keras asks
    tmp_side = sidecar_path(weights).with_name(f".tmp-{sidecar_path(weights).name}")
    try:
        det.save(tmp_weights)
        tmp_side.write_text(json.dumps(_clean(meta), indent=2))
        weights.unlink(missing_ok=True)
        os.replace(tmp_side, sidecar_path(weights))
        os.replace(tmp_weights, weights)
    finally:
        for tmp in (tmp_weights, tmp_side):
            tmp.unlink(missing_ok=True)


def _remove_checkpoint(ckpt: Path) -> None:
    """Delete a model's checkpoint files (weights, best weights, state, settings) and the
    folder when nothing else is left in it."""
    for f in ckpt.parent.glob(f"{ckpt.stem}*"):  # <model>.ckpt{.pt,.keras,.best.npz,...}
        f.unlink()
    with contextlib.suppress(OSError):
        ckpt.parent.rmdir()


def _clean(v):
    """JSON-safe: NumPy scalars to Python, NaN to null (strict parsers reject NaN)."""
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_clean(x) for x in v]
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and np.isnan(v):
        return None
    return v
