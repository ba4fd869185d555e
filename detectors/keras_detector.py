"""What the Keras 3 detectors share: a `keras.applications` body without its top, global
average pooling and one sigmoid unit (or, with `head="softmax"`, two softmax units with
FAKE at `fake_index`); training the new head alone for `warmup_epochs` with the body
frozen, then the whole network, keeping the epoch with the best validation AUC; precise
BN, checkpoints, and safe loading of `.keras` and Keras 2 `.hdf5` files.

Runs on the TensorFlow backend (one `tf.distribute.MirroredStrategy` replica per GPU
when there are several, mixed precision on GPU) and on `KERAS_BACKEND=torch`. Our
sigmoid is P(fake); a seed `.hdf5` (Keras folder order, fake before real) gives
P(real), turned around by `sigmoid_means="real"`.
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
import zipfile
from abc import abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, ClassVar, Literal

import numpy as np
from pydantic import Field

from dffr.detectors.base import Detector, DetectorConfig, WeightsError
from dffr.detectors.imagenet import (
    KERAS_FILES,
    WeightsFile,
    file_digest,
    initialisation,
    resolve,
)
from dffr.device import Device

if TYPE_CHECKING:
    from dffr.detectors.data import Batch


def full_batches(batches, size: int):
    """The batches, the last one filled up with the epoch's first images: a batch of
    another shape makes TensorFlow trace the whole training step again (tens of seconds
    for Xception on a CPU)."""
    first = None
    for batch in batches:
        if first is None:
            first = batch
        elif len(batch) < size:
            batch = batch.join(first.head(size - len(batch)))
        yield batch


def _complete_checkpoint(path: Path) -> dict | None:
    """The state of a Keras checkpoint whose files are the ones its state names (None,
    with a warning, for one cut off between two of its writes; None when absent)."""
    state_file, best = path.with_suffix(".state.json"), path.with_suffix(".best.npz")
    if not path.is_file():
        return None
    try:
        meta = json.loads(state_file.read_text())
        files = meta["files"]
        ok = file_digest(path) == files["model"] and (
            files["best"] is None or (best.is_file() and file_digest(best) == files["best"])
        )
    except (OSError, ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        warnings.warn(
            f"{path}: checkpoint incomplete (a run was stopped while writing it); "
            "training from the first epoch",
            stacklevel=3,
        )
        return None
    return meta


@dataclass
class KerasOptions:
    """What every Keras detector takes: its head, what it outputs, the warm-up."""

    head: Literal["sigmoid", "softmax"] = field(
        default="sigmoid", metadata={"help": "one sigmoid unit, or a softmax over 2 classes"}
    )
    sigmoid_means: Literal["fake", "real"] = field(
        default="fake", metadata={"help": "what a sigmoid head's output is P of (seed .hdf5: real)"}
    )
    fake_index: Literal[0, 1] = field(
        default=0, metadata={"help": "a softmax head's class index of FAKE"}
    )
    warmup_epochs: Annotated[int, Field(ge=0)] = field(
        default=3, metadata={"help": "epochs training only the new head first"}
    )


class KerasDetector(Detector):
    """A `keras.applications` body with a new P(fake) head; subclasses give the body."""

    Options = KerasOptions
    suffix = ".keras"
    default_lr = 1e-4
    imagenet_file: ClassVar[str]  # Keras' no-top ImageNet weights file name

    @classmethod
    def imagenet_weights(cls, config: DetectorConfig) -> WeightsFile | None:
        return KERAS_FILES.get(getattr(cls, "imagenet_file", ""))

    def __init__(self, config: DetectorConfig, device: Device | str | None = None) -> None:
        super().__init__(config, device)
        import keras

        self.keras = keras
        keras.utils.set_random_seed(config.seed)
        with self._scope():
            self.model = self._build()

    @abstractmethod
    def body(self):
        """The headless, average-pooled `keras.applications` model, randomly initialised."""

    def after_imagenet(self, body) -> None:
        """Hook: adjust a body just loaded with ImageNet weights."""

    def _scope(self):
        """Device placement (and multi-GPU mirroring) on the TensorFlow backend; one
        strategy per model, the one its variables were made under."""
        if self.keras.config.backend() != "tensorflow":
            return contextlib.nullcontext()
        import tensorflow as tf

        if not hasattr(self, "_strategy"):
            gpus = tf.config.list_logical_devices("GPU")
            many = self.device.kind == "cuda" and len(gpus) > 1
            self._strategy = tf.distribute.MirroredStrategy() if many else None
        if self._strategy is not None:
            return self._strategy.scope()
        return tf.device(self.device.tensorflow)

    def _build(self):
        """The network, in the dtype policy of this model's device (mixed float16 on a
        GPU, float32 on a CPU), set before any layer is made and restored afterwards:
        layers take the global policy when they are built, so setting it later would
        leave this model in float32 and every later model of the process mixed."""
        k = self.keras
        spec = self.imagenet_weights(self.config)
        imagenet = resolve(self.config, spec, self.name)  # before minutes of building
        self.init = initialisation(imagenet, spec)
        previous = k.config.dtype_policy()
        k.config.set_dtype_policy(self._policy())
        try:
            base = self.body()
            if imagenet is not None:
                try:
                    base.load_weights(imagenet)
                except Exception as e:
                    raise WeightsError(
                        f"{imagenet}: not {self.name} no-top ImageNet weights ({e})"
                    ) from None
                self.after_imagenet(base)
            units, act = (1, "sigmoid") if self.options.head == "sigmoid" else (2, "softmax")
            out = k.layers.Dense(units, activation=act, name="fake", dtype="float32")(base.output)
            return k.Model(base.input, out, name=f"{self.name.lower().replace('-', '_')}_dffr")
        finally:
            k.config.set_dtype_policy(previous)

    def _compile(self, lr: float) -> None:
        loss = (
            "binary_crossentropy"
            if self.options.head == "sigmoid"
            else "sparse_categorical_crossentropy"
        )
        self.model.compile(optimizer=self.keras.optimizers.Adam(lr), loss=loss)
        # built here, not in the first step: a step that creates variables is traced twice
        # by TensorFlow (13 s more per Xception model in the demo, on a CPU)
        self.model.optimizer.build(self.model.trainable_variables)

    def _targets(self, labels: np.ndarray) -> np.ndarray:
        """dffr labels (1 = fake) -> what this head is trained to output."""
        y = np.asarray(labels)
        if self.options.head == "softmax":
            return np.where(y == 1, self.options.fake_index, 1 - self.options.fake_index)
        y = y.astype(np.float32)
        return y if self.options.sigmoid_means == "fake" else 1.0 - y

    def _p_fake(self, raw: np.ndarray) -> np.ndarray:
        if self.options.head == "softmax":
            return raw[:, self.options.fake_index]
        p = raw.reshape(-1)
        return p if self.options.sigmoid_means == "fake" else 1.0 - p

    def predict(self, images: np.ndarray, batch: int = 32) -> np.ndarray:
        out = []
        with self._scope():
            for s in range(0, len(images), batch):
                raw = self.keras.ops.convert_to_numpy(
                    self.model(self.prepare(images[s : s + batch]), training=False)
                )
                out.append(self._p_fake(raw.astype(np.float32)))
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    def total_epochs(self) -> int:
        return self.options.warmup_epochs + self.config.epochs

    def begin_epoch(self, epoch: int) -> str:
        warm = epoch < self.options.warmup_epochs
        if getattr(self, "_warm", None) != warm:  # (re)compile only when the stage changes
            for layer in self.model.layers[:-1]:
                layer.trainable = not warm
            self._compile(self.config.lr or (1e-3 if warm else self.lr))
            self._warm = warm
        return "head" if warm else "full"

    def train_batches(self, train, epoch: int, part: tuple[int, int]):
        return full_batches(super().train_batches(train, epoch, part), self.config.batch)

    def train_step(self, batch: Batch) -> float:
        """Keras' compiled step on the images and labels; a detector whose loss needs
        the landmarks or masks overrides this with its own step."""
        with self._scope():
            x, y = self.prepare(batch.images), self._targets(batch.labels)
            return float(self.model.train_on_batch(x, y))

    def snapshot(self) -> list[np.ndarray]:
        return self.model.get_weights()

    def restore(self, snapshot: list[np.ndarray]) -> None:
        self.model.set_weights(snapshot)

    def read_checkpoint(self, path: Path) -> tuple[dict, list, object] | None:
        meta = _complete_checkpoint(path)
        if meta is None:
            return None
        self.model = self.keras.models.load_model(path, safe_mode=True)
        # compiled for the stage of its last epoch, with that stage's optimizer state
        self._warm = meta["state"]["epoch"] - 1 < self.options.warmup_epochs
        best = None
        if meta["files"]["best"] is not None:
            with np.load(path.with_suffix(".best.npz"), allow_pickle=False) as f:
                best = [f[f"arr_{i}"] for i in range(len(f.files))]
        return meta["state"], meta["log"], best

    def recalibrate_bn(self, data) -> None:
        """Precise BN (see TorchDetector.recalibrate_bn): Keras' BatchNormalization
        averages with momentum 0.99, which needs hundreds of steps to catch up."""
        bns = [
            layer
            for layer in self.model.layers
            if isinstance(layer, self.keras.layers.BatchNormalization) and layer.trainable
        ]
        if not bns or self.config.bn_recalibration <= 0:
            return
        momenta = [b.momentum for b in bns]
        for b in bns:
            b.moving_mean.assign(np.zeros(b.moving_mean.shape, "float32"))
            b.moving_variance.assign(np.ones(b.moving_variance.shape, "float32"))
        with self._scope():
            for k, x in enumerate(self.calibration_batches(data)):
                for b in bns:
                    b.momentum = k / (k + 1)  # a plain average over the batches
                self.model(self.prepare(x), training=True)
        for b, m in zip(bns, momenta, strict=True):
            b.momentum = m

    def write_checkpoint(self, path: Path, state: dict, rows: list, best) -> None:
        """Three files (model, best weights, state) written to temporary names, moved into
        place, the state last: it records the others' sha256, so a kill between two
        moves leaves a checkpoint that `_complete_checkpoint` refuses, never a mix."""
        path.parent.mkdir(parents=True, exist_ok=True)
        best_file, state_file = path.with_suffix(".best.npz"), path.with_suffix(".state.json")
        tmp = {f: f.with_name(f".tmp-{f.name}") for f in (path, best_file, state_file)}
        try:
            self.model.save(tmp[path])
            files = {"model": file_digest(tmp[path]), "best": None}
            if best is not None:
                with open(tmp[best_file], "wb") as f:  # a file object: savez adds no suffix
                    np.savez(f, *best)
                files["best"] = file_digest(tmp[best_file])
            tmp[state_file].write_text(json.dumps({"state": state, "log": rows, "files": files}))
            for f in (path, best_file, state_file):
                if tmp[f].exists():
                    os.replace(tmp[f], f)
        finally:
            for t in tmp.values():
                t.unlink(missing_ok=True)

    def save(self, path: Path) -> None:
        """The network without its optimizer state (a third of the size: Adam keeps two
        numbers per weight), which scoring never needs; checkpoints keep it."""
        path.parent.mkdir(parents=True, exist_ok=True)
        m = self.model  # the same layers in an uncompiled model: no optimizer to save
        self.keras.Model(m.input, m.output, name=m.name).save(path)

    @classmethod
    def file_problem(cls, path: Path) -> str | None:
        try:
            if Path(path).suffix == ".keras":  # a zip: every member's CRC is checked
                with zipfile.ZipFile(path) as z:
                    bad = z.testzip()
                    if bad is not None:
                        return f"{bad} inside the file is damaged"
                    if "config.json" not in z.namelist():
                        return "a zip without a Keras config.json"
            else:
                import h5py

                with h5py.File(path, "r"):
                    pass
        except Exception as e:
            return f"not a readable Keras model file ({e})"
        return None

    def load_weights(self, path: Path) -> None:
        path = Path(path)
        k = self.keras
        try:
            if path.suffix == ".keras":
                self.model = k.models.load_model(path, safe_mode=True, compile=False)
            else:  # a Keras 2 .hdf5/.h5: the whole model, else weights for this topology
                try:
                    self.model = k.models.load_model(path, safe_mode=True, compile=False)
                except Exception:
                    self.model.load_weights(path)
        except Exception as e:
            article = "an" if self.name[0] in "AEIOUX" else "a"  # an Xception, a Keras-...
            raise WeightsError(
                f"{path}: cannot load as {article} {self.name} model ({e})"
            ) from None
        self.model = self._in_device_policy(self.model)
        shape = tuple(self.model.input_shape[1:3])
        if shape != (self.config.input_size,) * 2:
            self.config.input_size = int(shape[0])
        self.options.head = "sigmoid" if self.model.output_shape[-1] == 1 else "softmax"
        self.config.options["head"] = self.options.head

    def _policy(self) -> str:
        policies = {"float32": "float32", "bfloat16": "mixed_bfloat16"}
        return policies.get(self.dtype, "mixed_float16")

    def _in_device_policy(self, model):
        """A loaded model in this device's precision: a file keeps the policy it was
        trained in (mixed float16 on a GPU, which a CPU runs slowly and in part not at
        all), so its layers are rebuilt in this device's, with the same weights. The
        P(fake) head stays float32."""
        k = self.keras
        want = self._policy()
        body = [la for la in model.layers if la.name != "fake" and la.weights]
        if all(la.dtype_policy.name == want for la in body):
            return model

        def clone(layer):
            config = layer.get_config()
            if layer.name != "fake" and "dtype" in config:
                config["dtype"] = want
            return layer.__class__.from_config(config)

        rebuilt = k.models.clone_model(model, clone_function=clone)
        rebuilt.set_weights(model.get_weights())
        return rebuilt
