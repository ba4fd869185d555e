"""Per-epoch training records: a CSV beside the model, and TensorBoard when available."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

log = logging.getLogger(__name__)


class TrainingLog:
    """`epoch(epoch=1, train_loss=..., val_loss=..., val_auc=...)` appends one row."""

    def __init__(
        self, csv_path: Path | None, tensorboard_dir: Path | None = None, enabled: bool = True
    ) -> None:
        self.rows: list[dict] = []
        self.csv_path = csv_path if enabled else None
        self._tb = None
        if enabled and tensorboard_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(tensorboard_dir))
            except ImportError:  # TensorBoard is optional
                log.info("tensorboard not installed: logging to CSV only")

    def epoch(self, **values) -> None:
        self.rows.append(values)
        if self.csv_path is not None:
            self.csv_path.parent.mkdir(parents=True, exist_ok=True)
            with self.csv_path.open("w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=list(self.rows[0]))
                w.writeheader()
                w.writerows(self.rows)
        if self._tb is not None:
            for k, v in values.items():
                if k != "epoch" and isinstance(v, int | float):
                    self._tb.add_scalar(k, v, values.get("epoch", len(self.rows)))
            self._tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
