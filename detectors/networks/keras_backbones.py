"""Well-known `keras.applications` image classifiers as deepfake detectors (Keras 3),
trained and scored exactly as Xception is (see KerasDetector), to compare backbones
per region.

Each application keeps its own input normalisation, its `preprocess_input`: ResNet50
and VGG16 take BGR with the ImageNet mean subtracted (Caffe style), DenseNet121 RGB
scaled to [0, 1] and standardised, EfficientNetB0 plain 0-255 RGB (it rescales
inside). ImageNet weights are Keras' no-top files in `~/.keras/models/` (or
`--imagenet`). keras.applications has no ResNet-18.

Another backbone is one line in `KERAS_APPLICATIONS`: the detector name, the
application, its module (for `preprocess_input`) and its no-top weights file name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from dffr.detectors.base import IMAGENET_STD
from dffr.detectors.imagenet import KERAS_FILES, WeightsFile
from dffr.detectors.keras_detector import KerasDetector
from dffr.detectors.networks.backbones import register


def efficientnet_variance(body) -> None:
    """Keras' EfficientNet built for ImageNet weights divides its Normalization output
    once more by sqrt(ImageNet std) per channel; a body built without weights lacks
    that layer, so it is folded into the Normalization variance (exactly)."""
    import keras

    norm = next(la for la in body.layers if isinstance(la, keras.layers.Normalization))
    variance = keras.ops.convert_to_numpy(norm.adapt_variance)
    norm.adapt_variance.assign(variance * IMAGENET_STD)
    norm.finalize_state()


@dataclass(frozen=True)
class KerasApp:
    app: str  # the constructor in keras.applications
    module: str  # keras.applications.<module>.preprocess_input normalises its input
    imagenet: str  # Keras' no-top ImageNet weights file name
    after_imagenet: Callable | None = None  # completes a body loaded with those weights


KERAS_APPLICATIONS = {
    "Keras-ResNet50": KerasApp(
        "ResNet50", "resnet50", "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
    ),
    "Keras-VGG16": KerasApp("VGG16", "vgg16", "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    "Keras-DenseNet121": KerasApp(
        "DenseNet121", "densenet", "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5"
    ),
    "Keras-EfficientNetB0": KerasApp(
        "EfficientNetB0", "efficientnet", "efficientnetb0_notop.h5", efficientnet_variance
    ),
}


class KerasBackbone(KerasDetector):
    """A keras.applications body with a P(fake) head, fed as that application expects."""

    backbone: ClassVar[KerasApp]
    min_input_size = 32  # keras.applications' own floor

    @classmethod
    def imagenet_weights(cls, config) -> WeightsFile:
        return KERAS_FILES[cls.backbone.imagenet]

    @property
    def normalisation(self) -> str:
        return f"keras.applications.{self.backbone.module}.preprocess_input"

    def body(self):
        s = self.config.input_size
        return getattr(self.keras.applications, self.backbone.app)(
            include_top=False, weights=None, input_shape=(s, s, 3), pooling="avg"
        )

    def after_imagenet(self, body) -> None:
        if self.backbone.after_imagenet is not None:
            self.backbone.after_imagenet(body)

    def prepare(self, images: np.ndarray) -> np.ndarray:
        """Resized as every detector's input, then the application's own normalisation
        of 0-255 RGB."""
        x = super().prepare(images) * np.float32(255.0)  # the base gives RGB / 255 here
        preprocess = getattr(self.keras.applications, self.backbone.module).preprocess_input
        return np.asarray(preprocess(x), dtype=np.float32)


register(KERAS_APPLICATIONS, KerasBackbone)
