"""dlib's CNN face detector (max-margin object detection): more recall than HOG on
turned and dim faces, about 20x slower on a CPU; offline (face-recognition-models)."""

from __future__ import annotations

import numpy as np

from dffr.regions.dlib_models import MMOD_CNN, dlib_model_file
from dffr.regions.face_detection import FACE_DETECTORS, Box, FaceDetector, Found


@FACE_DETECTORS.register("mmod")
class MmodFaceDetector(FaceDetector):
    smallest = 80
    tracking_side = 120
    to_points = (0.082, 0.167, 0.051, 0.140)  # benchmarks/faces.py, 37 faces

    def __init__(self, **kwargs) -> None:
        import dlib

        super().__init__(**kwargs)
        self._cnn = dlib.cnn_face_detection_model_v1(str(dlib_model_file(MMOD_CNN)))

    def find(self, image: np.ndarray, confirm: bool = True) -> Found:
        out = []
        for d in self._cnn(image, 0):
            r = d.rect
            box = np.array([r.left(), r.top(), r.right() + 1, r.bottom() + 1], dtype=np.float64)
            out.append((box, float(d.confidence)))
        return out

    def confirmed(self, image: np.ndarray, box: Box) -> bool:
        return True  # it is the confirming detector
