"""Faces with 68 iBUG landmarks, and the registry of backends that find them.

A backend answers two questions separately, so that a video pipeline can track a face
box and skip detection: where are the faces (`find_faces`, by the face detector chosen
from `regions.face_detection`) and where are the 68 points inside a given box (`locate`).
A landmark model was trained on one detector's boxes; boxes from another are redrawn as
that one draws them before the points are placed.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from dffr.regions.face_detection import (
    FACE_DETECTORS,
    check_convertible,
    convert,
    get_face_detector,
)
from dffr.registry import Registry

N_LANDMARKS = 68


@dataclass
class Face:
    """One face: `box` (x0, y0, x1, y1) and `landmarks` (68, 2) as (x, y), image pixels."""

    box: np.ndarray
    landmarks: np.ndarray
    score: float = 1.0

    def __post_init__(self) -> None:
        self.box = np.asarray(self.box, dtype=np.float64).reshape(4)
        self.landmarks = np.asarray(self.landmarks, dtype=np.float64).reshape(N_LANDMARKS, 2)

    @property
    def size(self) -> float:
        """Side of the face in pixels: the larger of the box's width and height."""
        return float(max(self.box[2] - self.box[0], self.box[3] - self.box[1]))

    def to_dict(self) -> dict:
        return {
            "box": [round(float(v), 2) for v in self.box],
            "score": round(float(self.score), 4),
            "landmarks": [[round(float(x), 2), round(float(y), 2)] for x, y in self.landmarks],
        }


def landmark_box(landmarks: np.ndarray) -> np.ndarray:
    """The tight (x0, y0, x1, y1) box of a set of points."""
    pts = np.asarray(landmarks, dtype=np.float64)
    return np.array([*pts.min(axis=0), *pts.max(axis=0)])


class LandmarkBackend(ABC):
    """Finds faces and their 68 landmarks in RGB uint8 images."""

    locates: ClassVar[bool] = True  # finds faces itself (videos can be tracked with it)
    expects: ClassVar[str] = "hog"  # the face detector whose boxes its model was trained on

    def __init__(
        self,
        max_side: int | None = None,
        min_face: int = 24,
        device: str | None = None,
        face_detector: str = "hog",
    ) -> None:
        self.face_detector = FACE_DETECTORS.canonical(face_detector)
        check_convertible(self.face_detector, self.expects)
        self.detector = get_face_detector(
            face_detector, max_side=max_side, min_face=min_face, device=device
        )
        self.device = device

    def find_faces(self, image: np.ndarray) -> list[tuple[np.ndarray, float]]:
        """Face boxes (x0, y0, x1, y1) with detector scores, in image pixels."""
        return self.detector(image)

    @abstractmethod
    def landmarks(self, image: np.ndarray, boxes: list[np.ndarray]) -> list[np.ndarray]:
        """The (68, 2) landmarks of the face in each box, drawn as `expects` draws them."""

    def locate(self, image: np.ndarray, boxes: list[np.ndarray]) -> list[np.ndarray]:
        """The (68, 2) landmarks of the face in each of the face detector's boxes."""
        return self.landmarks(image, [convert(b, self.face_detector, self.expects) for b in boxes])

    def detect(self, image: np.ndarray, source: Path | None = None) -> list[Face]:
        """Every face in the image, largest first. `source` is the file, if any."""
        found = self.find_faces(image)
        if not found:
            return []
        pts = self.locate(image, [box for box, _ in found])
        faces = [Face(box, p, score) for (box, score), p in zip(found, pts, strict=True)]
        return sorted(faces, key=lambda f: -f.size)


BACKENDS: Registry[type[LandmarkBackend]] = Registry(
    "landmark backend", "dffr.regions.backends", "dffr.landmarks"
)


def get_backend(name: str = "dlib", **kwargs) -> LandmarkBackend:
    """Build the backend registered as `name` (dlib, face-alignment, given)."""
    return BACKENDS.get(name)(**kwargs)
