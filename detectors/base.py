"""The one interface every detector implements, its configuration, and the registry.

A detector turns a batch of region images (uint8 RGB, any size) into P(fake) in [0, 1].
Labels are 1 = fake throughout dffr; a network's own class layout (the seed's released
PyTorch models put FAKE at class index 0; a Keras sigmoid may mean P(real)) is recorded
in the model's sidecar and handled inside the detector, never by its callers.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import cv2
import numpy as np
from sklearn.metrics import roc_auc_score

from dffr.detectors import training_loop
from dffr.detectors.imagenet import WeightsFile
from dffr.device import Device, compute_dtype, resolve_device
from dffr.errors import DffrError
from dffr.registry import Registry, unknown_options

if TYPE_CHECKING:
    from dffr.detectors.data import Batch

PAPER_DETECTORS = ("Xception", "Capsule", "DSP-FWA")  # the paper's three, the default
CALIBRATION_EPOCH = 1_000_000  # a fixed shuffle, apart from any training epoch
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


class WeightsError(DffrError):
    """A weights file that is missing, corrupt, or made for another network."""


class InputSizeError(DffrError):
    """An input size the network cannot take."""


@dataclass
class DetectorConfig:
    """Everything that defines a trained model; saved in its JSON sidecar."""

    detector: str
    region: str = "entire"
    ddbb: str = ""
    input_size: int = 200
    epochs: int = 20
    batch: int = 32
    lr: float | None = None  # None: the detector's own default
    patience: int = 5  # epochs without a better val AUC before stopping
    bn_recalibration: int = 256  # training images that re-estimate BN statistics (0: off)
    seed: int = 0
    pretrained: bool = True  # ImageNet (fetched when absent); False: random (--from-scratch)
    imagenet: str | None = None  # the user's own ImageNet weights file
    negatives: str = "none"  # none | fwa | sbi
    augment: list[str] = field(default_factory=list)  # training-time augmentations (augment.py)
    augment_p: float = 0.5  # the probability of each augmentation, per training image
    precision: str = "auto"  # auto (float16 on a GPU, float32 on a CPU), float32, bfloat16
    checkpoint_minutes: float = 0.0  # at most one checkpoint per this many (0: every epoch)
    # the detector's own options by name (its `Detector.Options`: trunk, head, ...)
    options: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict) -> DetectorConfig:
        """A config as a sidecar records it; sidecars written before detectors had
        options of their own hold them among the common keys, where they are taken from
        (those the detector does not declare were defaults of another detector's)."""
        known = {f.name for f in fields(cls)}
        config = cls(**{k: v for k, v in d.items() if k in known})
        if config.detector in DETECTORS:
            declared = DETECTORS.get(config.detector).option_names()
            flat = {k: v for k, v in d.items() if k in declared and k not in known}
            config.options = {**{k: v for k, v in flat.items() if v is not None}, **config.options}
        return config

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class NoOptions:
    """The options of a detector that has none of its own."""


class Detector(ABC):
    """Build, train, predict P(fake), save and load one (detector, region, ddbb) model."""

    # its own hyper-parameters, a dataclass (field metadata "help" says what each does):
    # `dffr train --<option>` and an experiment's YAML take them from here
    Options: ClassVar[type] = NoOptions
    name: ClassVar[str] = ""
    suffix: ClassVar[str] = ".pt"
    normalisation: ClassVar[str] = "imagenet"  # or "unit": RGB / 255
    default_lr: ClassVar[float] = 1e-4
    # the smallest input it takes: networks that downsample 32-fold leave a 1x1 map at 32
    min_input_size: ClassVar[int] = 32
    # the layer Grad-CAM explains by default; None: its last convolutional block
    explain_layer: ClassVar[str | None] = None

    def __init__(self, config: DetectorConfig, device: Device | str | None = None) -> None:
        if config.input_size < self.min_input_size:
            raise InputSizeError(
                f"{self.name} needs an input of at least {self.min_input_size}x"
                f"{self.min_input_size} px, not {config.input_size}; raise --input-size"
            )
        self.options = self.parse_options(config.options)
        config.options = asdict(self.options)  # every option recorded, defaults too
        self.config = config
        self.device = device if isinstance(device, Device) else resolve_device(device)
        self.dtype = compute_dtype(config.precision, self.device)  # what it computes in
        # how the weights started: {"kind": "imagenet", "file", "sha256"} or random; a
        # loaded model says what its sidecar recorded
        self.init: dict = {"kind": "random"}
        self.val_auc: float | None = None  # the best epoch's, set by `fit`

    @classmethod
    def option_names(cls) -> set[str]:
        """The names of its own options (the fields of its `Options`)."""
        return {f.name for f in fields(cls.Options)}

    @classmethod
    def parse_options(cls, given: Mapping[str, Any]) -> Any:
        """`given` as this detector's `Options`, checked: DffrError naming an option it
        does not have (with those it has) or a value it does not take."""
        from pydantic import TypeAdapter, ValidationError

        problem = unknown_options(cls.name, given, cls.Options)
        if problem:
            raise DffrError(problem)
        try:
            return TypeAdapter(cls.Options).validate_python(dict(given))
        except ValidationError as e:
            said = "; ".join(
                f"{'.'.join(map(str, err['loc']))} = {err['input']!r}: {err['msg']}"
                for err in e.errors()
            )
            raise DffrError(f"{cls.name} options: {said}") from None

    @classmethod
    def imagenet_weights(cls, config: DetectorConfig) -> WeightsFile | None:
        """The published ImageNet file a model built from `config` starts from (None: it
        has none); `dffr weights` and experiment plans list these without building."""
        return None

    @property
    def lr(self) -> float:
        return self.config.lr or self.default_lr

    def prepare(self, images: np.ndarray) -> np.ndarray:
        """uint8 (N, H, W, 3) -> float32 (N, S, S, 3) resized and normalised."""
        s = self.config.input_size
        imgs = np.asarray(images)
        if imgs.ndim == 3:
            imgs = imgs[None]
        if imgs.shape[1:3] != (s, s):
            imgs = np.stack(
                [
                    cv2.resize(
                        im,
                        (s, s),
                        interpolation=cv2.INTER_AREA if im.shape[0] > s else cv2.INTER_LINEAR,
                    )
                    for im in imgs
                ]
            )
        x = imgs.astype(np.float32) / 255.0
        if self.normalisation == "imagenet":
            x = (x - IMAGENET_MEAN) / IMAGENET_STD
        return x

    def calibration_batches(self, data):
        """Up to `bn_recalibration` training images, in a fixed order, for BN statistics."""
        n, batch = self.config.bn_recalibration, self.config.batch
        for i, b in enumerate(data.batches(batch, shuffle=True, epoch=CALIBRATION_EPOCH)):
            if i * batch >= n:
                break
            yield b.images

    @abstractmethod
    def predict(self, images: np.ndarray, batch: int = 32) -> np.ndarray:
        """P(fake) for each image of a uint8 (N, H, W, 3) batch."""

    def fit(
        self, train, val, log, checkpoint: Path | None = None, keep_checkpoint: bool = False
    ) -> None:
        """Train on `train`, select on `val` (RegionData); resume from `checkpoint`.
        The loop is `training_loop.fit`, the same for every detector; it sets `val_auc`."""
        training_loop.fit(self, train, val, log, checkpoint, keep_checkpoint)

    def evaluate(self, data, batch: int) -> tuple[float, float]:
        """(AUC, binary cross-entropy of P(fake)) over `data`; the same measure for every
        detector, so validation curves compare. AUC is nan when it holds one class."""
        scores, labels = [], []
        for b in data.batches(batch):
            scores.append(self.predict(b.images, batch))
            labels.append(b.labels)
        if not labels:
            return float("nan"), float("nan")
        y, p = np.concatenate(labels), np.clip(np.concatenate(scores), 1e-7, 1 - 1e-7)
        loss = float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
        auc = float(roc_auc_score(y, p)) if len(set(y)) == 2 else float("nan")
        return auc, loss

    # the training hooks `training_loop.fit` calls; each framework implements them once

    def total_epochs(self) -> int:
        return self.config.epochs

    def begin_training(self) -> tuple[int, int]:
        """Set up the optimiser; returns (rank, world size) of this process."""
        return 0, 1

    def begin_epoch(self, epoch: int) -> str:
        """Switch to training `epoch`; returns its stage: "full", or "head" for a
        head-only warm-up (which never counts towards patience)."""
        return "full"

    def train_batches(self, train, epoch: int, part: tuple[int, int]):
        return train.batches(self.config.batch, shuffle=True, epoch=epoch, part=part)

    @abstractmethod
    def train_step(self, batch: Batch) -> float:
        """One optimiser step on a batch (images, labels 1 = fake, and the region, its
        landmarks and masks where the data has them); returns its mean loss."""

    @abstractmethod
    def recalibrate_bn(self, data) -> None:
        """Re-estimate BatchNorm statistics after an epoch (precise BN)."""

    @abstractmethod
    def snapshot(self):
        """A copy of the weights, to `restore` the best epoch from."""

    @abstractmethod
    def restore(self, snapshot) -> None: ...

    @abstractmethod
    def write_checkpoint(self, path: Path, state: dict, rows: list, best) -> None:
        """Everything an exact resume needs: weights, optimiser, the loop's `state`, the
        log `rows` so far, the `best` snapshot; never a half-written mix."""

    @abstractmethod
    def read_checkpoint(self, path: Path) -> tuple[dict, list, object] | None:
        """(state, rows, best) from a complete checkpoint, the weights loaded; None when
        there is none."""

    @abstractmethod
    def save(self, path: Path) -> None:
        """Write the weights (the sidecar is written by the caller)."""

    @abstractmethod
    def load_weights(self, path: Path) -> None:
        """Read weights saved by `save`, or the seed system's released file."""

    @classmethod
    @abstractmethod
    def file_problem(cls, path: Path) -> str | None:
        """Why `path` is not a readable weights file of this kind (None: it is), without
        building the network: an experiment checks every model it reuses this way."""


DETECTORS: Registry[type[Detector]] = Registry(
    "detector", "dffr.detectors.networks", "dffr.detectors"
)


def build_detector(config: DetectorConfig, device: Device | str | None = None) -> Detector:
    return DETECTORS.get(config.detector)(config, device)
