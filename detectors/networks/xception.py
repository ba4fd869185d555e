"""Xception (Chollet, CVPR 2017) in Keras 3, as FaceForensics++ and the paper train it.

`keras.applications.Xception` without its top, global average pooling and one sigmoid
unit (or two softmax units), trained head first, then whole (see KerasDetector).
Inputs are RGB scaled to [0, 1] (the seed's released models).
"""

from __future__ import annotations

from dffr.detectors.base import DETECTORS
from dffr.detectors.keras_detector import KerasDetector

IMAGENET_FILE = "xception_weights_tf_dim_ordering_tf_kernels_notop.h5"


@DETECTORS.register("Xception")
class Xception(KerasDetector):
    name = "Xception"
    normalisation = "unit"
    min_input_size = 71  # keras.applications.Xception's floor
    imagenet_file = IMAGENET_FILE

    def body(self):
        s = self.config.input_size
        return self.keras.applications.Xception(
            include_top=False, weights=None, input_shape=(s, s, 3), pooling="avg"
        )
