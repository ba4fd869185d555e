"""Which pixels a detector's decision rests on: Grad-CAM, guided backpropagation and
guided Grad-CAM, for the PyTorch detectors (hooks) and the Keras ones (GradientTape).

What is explained is the detector's own P(fake), as `predict` computes it, through its
log-odds, log P(fake) - log P(real): the decision flips where it crosses 0 (P(fake) =
0.5), and for a two-class softmax or a sigmoid it is exactly the difference of the two
logits (or the logit) before the final softmax / sigmoid, so gradients do not vanish
when a network is confident. The class layout is the detector's: `fake_index` for
two-class heads, `sigmoid_means` for Keras sigmoids (a seed .hdf5 gives P(real)).

- Grad-CAM (Selvaraju et al., ICCV 2017): the layer's activation maps weighted by the
  spatial mean of their gradients, summed, positive part; evidence *for* fake.
- Guided backpropagation (Springenberg et al., ICLR-W 2015): the input gradient with
  every ReLU also blocking negative gradients on the way back.
- Guided Grad-CAM: the guided gradient times the (upsampled) Grad-CAM map.

Every method gives a heat map in [0, 1] (divided by its maximum; all zero when there is
no evidence for fake) at the images' own size. This module holds no I/O: detectors and
uint8 image batches in, arrays out. PyTorch, Keras and TensorFlow are imported when a
detector of theirs is explained, not with the module (the command line imports it).
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass

import cv2
import numpy as np

from dffr.detectors.base import Detector
from dffr.errors import DffrError

METHODS = ("gradcam", "guided", "guided-gradcam")
_TINY = 1e-30  # keeps log() finite when a probability underflows


class ExplainError(DffrError):
    """A layer that does not exist or cannot be explained, or a network without a head
    this module understands."""


@dataclass
class Explanation:
    """One batch explained: `scores` P(fake) (N,), `heat` (N, H, W) in [0, 1] at the
    images' size, and for the guided methods `gradients` (N, H, W, 3), the raw guided
    (Grad-CAM-weighted for guided-gradcam) input gradients."""

    scores: np.ndarray
    heat: np.ndarray
    gradients: np.ndarray | None
    method: str
    layer: str


def gradcam(activations: np.ndarray, gradients: np.ndarray) -> np.ndarray:
    """(N, h, w, C) activations and their gradients -> (N, h, w) Grad-CAM maps."""
    weights = gradients.mean(axis=(1, 2), keepdims=True)
    return np.maximum((weights * activations).sum(axis=-1), 0.0)


def resize_maps(maps: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """(N, h, w[, C]) -> (N, H, W[, C]), bilinear, pixel centres aligned."""
    h, w = hw
    return np.stack(
        [cv2.resize(m.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR) for m in maps]
    ).reshape(len(maps), h, w, *maps.shape[3:])


def unit_max(maps: np.ndarray) -> np.ndarray:
    """Each map divided by its maximum: [0, 1], and all zero stays all zero."""
    top = maps.reshape(len(maps), -1).max(axis=1, initial=0.0)
    return (maps / np.where(top > 0, top, 1.0).reshape(-1, *[1] * (maps.ndim - 1))).astype(
        np.float32
    )


def to_frame(heat: np.ndarray, matrix: np.ndarray, hw: tuple[int, ...]) -> np.ndarray:
    """A heat map in crop pixels -> the original frame's pixel grid (`hw[:2]`), through
    the crop's frame -> crop affine `matrix` (`Crop.matrix`); zero outside the crop."""
    h, w = int(hw[0]), int(hw[1])
    return cv2.warpAffine(
        heat.astype(np.float32),
        np.asarray(matrix, dtype=np.float64),
        (w, h),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,  # matrix maps frame -> crop
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )


class Explainer(ABC):
    """One detector, one layer, ready to explain batches; built once per model."""

    def __init__(self, detector: Detector, layer: str | None) -> None:
        self.detector = detector
        self.layer = layer or detector.explain_layer or self.default_layer()

    @abstractmethod
    def default_layer(self) -> str:
        """The last convolutional block: the latest 4-D activation with a spatial extent."""

    @abstractmethod
    def cam_pass(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(P(fake) (N,), the layer's activations (N, h, w, C), their gradients)."""

    @abstractmethod
    def guided_pass(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(P(fake) (N,), guided gradient of the network's input (N, S, S, 3))."""

    def explain(self, images: np.ndarray, method: str = "gradcam", batch: int = 16) -> Explanation:
        """Explain P(fake) of a uint8 (N, H, W, 3) batch of region images."""
        if method not in METHODS:
            raise ExplainError(f"unknown method {method!r}: choose from {', '.join(METHODS)}")
        images = np.asarray(images)
        if images.ndim == 3:
            images = images[None]
        hw = images.shape[1:3]
        scores, heats, grads = [], [], []
        for s in range(0, len(images), batch):
            chunk = images[s : s + batch]
            cam = guided = None
            if method != "guided":
                p, acts, g = self.cam_pass(chunk)
                cam = resize_maps(gradcam(acts, g), hw)
            if method != "gradcam":
                p, g = self.guided_pass(chunk)
                guided = resize_maps(g, hw)
                if cam is not None:
                    guided = guided * unit_max(cam)[..., None]
                heats.append(unit_max(np.abs(guided).max(axis=-1)))
                grads.append(guided.astype(np.float32))
            else:
                heats.append(unit_max(cam))
            scores.append(np.asarray(p, dtype=np.float32))
        for part in heats:
            if not np.isfinite(part).all():
                raise ExplainError(f"{self.detector.name}: non-finite gradients at {self.layer}")
        return Explanation(
            np.concatenate(scores),
            np.concatenate(heats),
            np.concatenate(grads) if grads else None,
            method,
            self.layer,
        )


class TorchExplainer(Explainer):
    """Forward hooks keep the layer's activation; ReLU hooks make backpropagation guided.
    Hooks are removed after each pass: the detector's model is left as it was."""

    def __init__(self, detector: Detector, layer: str | None = None) -> None:
        self.model = detector.model
        super().__init__(detector, layer)
        modules = dict(self.model.named_modules())
        if self.layer not in modules:
            raise ExplainError(
                f"{detector.name} has no module {self.layer!r}; 4-D feature maps: "
                f"{', '.join(self._feature_maps()[-8:])}, ..."
            )
        self.module = modules[self.layer]

    def _feature_maps(self) -> list[str]:
        """Modules holding a Conv2d whose output is 4-D, in the order they finish, on a
        blank input (names of modules that run twice appear twice)."""
        import torch
        from torch import nn

        s = self.detector.config.input_size
        seen: list[tuple[str, tuple]] = []
        with_conv = {
            name
            for name, m in self.model.named_modules()
            if name and any(isinstance(c, nn.Conv2d) for c in m.modules())
        }

        def record(name):
            def hook(module, inputs, output):
                if isinstance(output, torch.Tensor) and output.ndim == 4:
                    seen.append((name, tuple(output.shape[2:])))

            return hook

        hooks = [
            m.register_forward_hook(record(n))
            for n, m in self.model.named_modules()
            if n in with_conv
        ]
        try:
            self.model.eval()
            with torch.no_grad():
                self.model(torch.zeros(1, 3, s, s, device=self.detector.device.torch))
        finally:
            for h in hooks:
                h.remove()
        spatial = [n for n, hw in seen if hw[0] * hw[1] > 1]
        return spatial or [n for n, _ in seen]

    def default_layer(self) -> str:
        names = self._feature_maps()
        if not names:
            raise ExplainError(f"{self.detector.name}: no convolutional block to explain")
        return names[-1]

    def _log_odds(self, outputs):
        """(log P(fake) - log P(real) per image, a tensor; P(fake) as NumPy)."""
        import torch

        probs = self.detector.probabilities(outputs)
        fake = self.detector.options.fake_index
        p_fake, p_real = probs[:, fake], probs[:, 1 - fake]
        target = torch.log(p_fake.clamp_min(_TINY)) - torch.log(p_real.clamp_min(_TINY))
        return target, p_fake.detach().float().cpu().numpy()

    def _input(self, images: np.ndarray):
        # the input needs a gradient so that frozen parts (Capsule's front end) have one
        return self.detector._tensor(images).requires_grad_(True)

    def cam_pass(self, images):
        import torch

        kept = []

        def keep(module, inputs, output):
            kept.append(output)
            # later in-place operations (a residual `+=`, an in-place ReLU) then change
            # a copy, never the activation being explained
            return output.clone() if isinstance(output, torch.Tensor) else output

        hook = self.module.register_forward_hook(keep)
        try:
            self.model.eval()
            with torch.enable_grad():
                target, p = self._log_odds(self.model(self._input(images)))
                if len(kept) != 1 or not isinstance(kept[0], torch.Tensor) or kept[0].ndim != 4:
                    raise ExplainError(
                        f"{self.layer!r} must run once and output a 4-D feature map "
                        f"(it ran {len(kept)} time(s))"
                    )
                (grads,) = torch.autograd.grad(target.sum(), kept[0])
        finally:
            hook.remove()
        return (
            p,
            kept[0].detach().float().permute(0, 2, 3, 1).cpu().numpy(),
            grads.float().permute(0, 2, 3, 1).cpu().numpy(),
        )

    def guided_pass(self, images):
        import torch
        from torch import nn

        relus = [m for m in self.model.modules() if isinstance(m, nn.ReLU)]
        if not relus:
            warnings.warn(
                f"{self.detector.name} has no nn.ReLU modules: guided backpropagation is "
                "the plain input gradient",
                stacklevel=3,
            )

        def guide(module, inputs, output):
            # on the gradient of the ReLU's output, before ReLU's own backward (x > 0):
            # works for in-place ReLUs too, whose output is their (modified) input
            if output.requires_grad:
                output.register_hook(lambda g: g.clamp(min=0))

        hooks = [m.register_forward_hook(guide) for m in relus]
        try:
            self.model.eval()
            with torch.enable_grad():
                x = self._input(images)
                target, p = self._log_odds(self.model(x))
                (grads,) = torch.autograd.grad(target.sum(), x)
        finally:
            for h in hooks:
                h.remove()
        return p, grads.float().permute(0, 2, 3, 1).cpu().numpy()


class KerasExplainer(Explainer):
    """A tf.GradientTape over a functional view of the model (input -> the layer's
    activation and the head's input); guided backpropagation on a clone of that view
    whose ReLUs have a guided gradient. The clone shares the original's layers and
    weights (ReLU layers are rebuilt and given copies of theirs): nothing in the
    detector's model changes."""

    def __init__(self, detector: Detector, layer: str | None = None) -> None:
        import keras

        if keras.config.backend() != "tensorflow":
            raise ExplainError(
                f"explaining a Keras detector needs the TensorFlow backend, not "
                f"{keras.config.backend()!r} (set KERAS_BACKEND=tensorflow)"
            )
        self.keras = keras
        self.model = detector.model
        super().__init__(detector, layer)
        self.head = self.model.layers[-1]
        activation = self.head.get_config().get("activation")
        if activation not in ("sigmoid", "softmax") or self.head.output.shape[-1] not in (1, 2):
            raise ExplainError(
                f"{detector.name}: the last layer {self.head.name!r} must be a sigmoid or a "
                f"two-class softmax (it is {activation!r})"
            )
        try:
            target = self.model.get_layer(self.layer)
        except ValueError:
            raise ExplainError(
                f"{detector.name} has no layer {self.layer!r}; 4-D feature maps: "
                f"{', '.join(self._feature_maps()[-8:])}, ..."
            ) from None
        if len(target.output.shape) != 4:
            raise ExplainError(f"{self.layer!r} outputs {target.output.shape}, not a 4-D map")
        self.view = keras.Model(self.model.inputs, [target.output, self.head.input])
        self._guided_view = None

    def _feature_maps(self) -> list[str]:
        layers = [
            la for la in self.model.layers if not isinstance(la, self.keras.layers.InputLayer)
        ]
        maps = [(la.name, la.output.shape) for la in layers if len(la.output.shape) == 4]
        spatial = [n for n, s in maps if (s[1] or 2) * (s[2] or 2) > 1]
        return spatial or [n for n, _ in maps]

    def default_layer(self) -> str:
        names = self._feature_maps()
        if not names:
            raise ExplainError(f"{self.detector.name}: no 4-D activation to explain")
        return names[-1]

    def _log_odds(self, features):
        """The head's pre-activation turned into log P(fake) - log P(real)."""
        ops, head, options = self.keras.ops, self.head, self.detector.options
        z = ops.cast(features, "float32")
        if hasattr(head, "kernel"):  # Dense(activation=...); else an Activation layer
            z = ops.matmul(z, ops.cast(head.kernel, "float32"))
            if getattr(head, "bias", None) is not None:
                z = z + ops.cast(head.bias, "float32")
        if z.shape[-1] == 1:
            return z[:, 0] if options.sigmoid_means == "fake" else -z[:, 0]
        return z[:, options.fake_index] - z[:, 1 - options.fake_index]

    def _tape(self, view, images):
        import tensorflow as tf

        with self.detector._scope():
            x = tf.constant(self.detector.prepare(images))
            with tf.GradientTape() as tape:
                tape.watch(x)
                acts, features = view(x, training=False)
                target = self._log_odds(features)
                total = tf.reduce_sum(target)
        p = tf.sigmoid(target).numpy()
        return tape, total, x, acts, p

    def cam_pass(self, images):
        tape, total, _, acts, p = self._tape(self.view, images)
        grads = tape.gradient(total, acts)
        return p, np.asarray(acts, dtype=np.float32), np.asarray(grads, dtype=np.float32)

    def guided_pass(self, images):
        tape, total, x, _, p = self._tape(self.guided_view(), images)
        return p, np.asarray(tape.gradient(total, x), dtype=np.float32)

    def guided_view(self):
        """The view with each ReLU (an Activation or ReLU layer, or a layer's relu
        activation) given the guided gradient; built on first use."""
        if self._guided_view is not None:
            return self._guided_view
        import tensorflow as tf

        keras = self.keras

        @tf.custom_gradient
        def guided_relu(x):
            def grad(dy):
                return dy * tf.cast(dy > 0, dy.dtype) * tf.cast(x > 0, dy.dtype)

            return tf.nn.relu(x), grad

        rebuilt = []

        def clone(layer):
            config = layer.get_config()
            if config.get("activation") == "relu":
                config["activation"] = guided_relu
                new = type(layer).from_config(config)
            elif isinstance(layer, keras.layers.ReLU) and (
                config.get("max_value") is None
                and not config.get("negative_slope")
                and not config.get("threshold")
            ):
                new = keras.layers.Activation(guided_relu, name=layer.name)
            else:
                return layer  # shared, weights and all
            rebuilt.append((layer, new))
            return new

        with self.detector._scope():
            view = keras.models.clone_model(self.view, clone_function=clone, recursive=True)
            for old, new in rebuilt:
                new.set_weights(old.get_weights())
        if not rebuilt:
            warnings.warn(
                f"{self.detector.name} has no ReLU layers: guided backpropagation is the "
                "plain input gradient",
                stacklevel=3,
            )
        self._guided_view = view
        return view


def explainer(detector: Detector, layer: str | None = None) -> Explainer:
    """The explainer for a detector's framework (PyTorch or Keras), at `layer` (a module
    name like `resnet.resnet.layer4`, a Keras layer name like `block14_sepconv2_act`;
    default: the detector's last convolutional block)."""
    from dffr.detectors.torch_detector import TorchDetector

    if isinstance(detector, TorchDetector):
        return TorchExplainer(detector, layer)
    import keras

    if isinstance(getattr(detector, "model", None), keras.Model):
        return KerasExplainer(detector, layer)
    raise ExplainError(f"{detector.name}: neither a PyTorch nor a Keras detector")


def explain(
    detector: Detector,
    images: np.ndarray,
    method: str = "gradcam",
    layer: str | None = None,
    batch: int = 16,
) -> Explanation:
    """Explain P(fake) of a uint8 (N, H, W, 3) batch with one of METHODS."""
    return explainer(detector, layer).explain(images, method, batch)
