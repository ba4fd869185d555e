"""dlib's HOG face detector: the default, fast on one core and fully offline.

Its window sees faces of about 80 px. The score threshold is below dlib's default 0 for
recall; a face scoring below 0 is kept only if dlib's CNN detector confirms it."""

from __future__ import annotations

import numpy as np

from dffr.regions.face_detection import FACE_DETECTORS, FaceDetector, Found

HOG_WINDOW = 80


@FACE_DETECTORS.register("hog")
class HogFaceDetector(FaceDetector):
    smallest = HOG_WINDOW
    tracking_side = int(1.5 * HOG_WINDOW)
    to_points = (0.060, 0.132, -0.040, 0.059)  # benchmarks/faces.py, 85 faces

    def __init__(self, threshold: float = -0.3, **kwargs) -> None:
        import dlib

        super().__init__(**kwargs)
        self.threshold = threshold
        self._detector = dlib.get_frontal_face_detector()

    def find(self, image: np.ndarray, confirm: bool = True) -> Found:
        rects, scores, _ = self._detector.run(image, 0, self.threshold)
        found = []
        for r, score in zip(rects, scores, strict=True):
            box = np.array([r.left(), r.top(), r.right() + 1, r.bottom() + 1], dtype=np.float64)
            if score >= 0 or not confirm or self.confirmed(image, box):
                found.append((box, float(score)))
        return found
