"""Follow one face through a video's sampled frames, detecting from scratch only when
the face is lost (first frame, a cut, a face that left its search window)."""

from __future__ import annotations

import numpy as np

from dffr.regions.landmarks import Face, LandmarkBackend


class FaceTracker:
    """Callable: RGB frame -> the tracked Face (largest face when it starts), or None."""

    def __init__(self, backend: LandmarkBackend) -> None:
        if not hasattr(backend, "detector"):
            raise ValueError("face tracking needs a backend that detects faces (dlib, ...)")
        self.backend = backend
        self.box: np.ndarray | None = None
        self.full_detections = 0

    def __call__(self, frame: np.ndarray) -> Face | None:
        found = None if self.box is None else self.backend.detector.near(frame, self.box)
        if found is None:
            self.full_detections += 1
            faces = self.backend.find_faces(frame)
            if not faces:
                return None
            found = max(faces, key=lambda f: f[0][2] - f[0][0])
        box, score = found
        self.box = box
        return Face(box, self.backend.landmarks(frame, [box])[0], score)
