"""From an image to the five region images of each face: detect once, reuse for all."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from dffr.errors import FaceTooSmallError, NoFaceError
from dffr.regions.crop import Crop, face_crop
from dffr.regions.landmarks import Face, LandmarkBackend, get_backend
from dffr.regions.masks import REGIONS, apply_mask, region_masks

MIN_FACE = 24


@dataclass
class Segmentation:
    """One face: its landmarks in the input image, its crop, and the region masks at
    crop size (`regions` gives the masked crop images)."""

    face: Face
    crop: Crop
    masks: dict[str, np.ndarray] = field(repr=False)

    @property
    def regions(self) -> dict[str, np.ndarray]:
        return {r: apply_mask(self.crop.image, self.masks[r]) for r in REGIONS}

    def input_masks(self, hw: tuple[int, ...]) -> dict[str, np.ndarray]:
        """The region masks in the input image's own pixel grid."""
        return region_masks(self.face.landmarks, hw)


@lru_cache(maxsize=4)
def cached_backend(name: str) -> LandmarkBackend:
    """A backend built once per process (loading a predictor costs ~0.5 s)."""
    return get_backend(name)


def detect_faces(
    image: np.ndarray,
    backend: LandmarkBackend | str = "dlib",
    all_faces: bool = False,
    min_face: int = MIN_FACE,
    source: Path | None = None,
) -> list[Face]:
    """The largest face (or all, largest first) at least `min_face` px wide.

    Raises NoFaceError when there is none and FaceTooSmallError when every face found
    is smaller than `min_face`."""
    be = cached_backend(backend) if isinstance(backend, str) else backend
    faces = be.detect(image, source=source)
    where = f"{source}: " if source else ""
    if not faces:
        h, w = image.shape[:2]
        raise NoFaceError(f"{where}no face found in the {w}x{h} image")
    kept = [f for f in faces if f.size >= min_face]
    if not kept:
        s = faces[0].size
        raise FaceTooSmallError(
            f"{where}face too small for reliable landmarks: {s:.0f} px wide, minimum {min_face} px"
        )
    return kept if all_faces else kept[:1]


def segment_face(
    image: np.ndarray, face: Face, size: int = 200, scale: float = 1.3
) -> Segmentation:
    """Crop one face and cut its five regions."""
    crop = face_crop(image, face.landmarks, scale=scale, size=size)
    return Segmentation(face, crop, region_masks(crop.landmarks, crop.image.shape))


def segment_image(
    image: np.ndarray,
    backend: LandmarkBackend | str = "dlib",
    size: int = 200,
    scale: float = 1.3,
    all_faces: bool = False,
    min_face: int = MIN_FACE,
    source: Path | None = None,
) -> list[Segmentation]:
    """Detect the face(s) in an RGB uint8 image and segment each into five regions."""
    faces = detect_faces(image, backend, all_faces=all_faces, min_face=min_face, source=source)
    return [segment_face(image, f, size=size, scale=scale) for f in faces]
