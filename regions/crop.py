"""Square face crops around the landmarks, as FaceForensics++ cuts them.

The crop is the landmarks' bounding square enlarged by `scale` (1.3 by default),
resized to `size` (200 px, the seed system's input). Parts outside the frame are black.
The affine matrix from input pixels to crop pixels is kept, so points and heat maps
map both ways exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from dffr.regions.landmarks import landmark_box


@dataclass
class Crop:
    """`image` (size, size, 3), `landmarks` (68, 2) in crop pixels, and `matrix`, the
    2x3 affine map from input-image pixels to crop pixels."""

    image: np.ndarray
    landmarks: np.ndarray
    matrix: np.ndarray

    def to_input(self, points: np.ndarray) -> np.ndarray:
        """Map (n, 2) crop-pixel points back to input-image pixels."""
        inv = cv2.invertAffineTransform(self.matrix)
        return apply_affine(inv, points)


def apply_affine(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return pts @ matrix[:, :2].T + matrix[:, 2]


def crop_window(landmarks: np.ndarray, scale: float = 1.3) -> tuple[int, int, int, int]:
    """Integer (x0, y0, x1, y1) of the enlarged square around the landmarks."""
    x0, y0, x1, y1 = landmark_box(landmarks)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    half = max(x1 - x0, y1 - y0) * scale / 2
    ix0, iy0 = math.floor(cx - half), math.floor(cy - half)
    side = max(math.ceil(2 * half), 1)
    return ix0, iy0, ix0 + side, iy0 + side


def face_crop(
    image: np.ndarray, landmarks: np.ndarray, scale: float = 1.3, size: int = 200
) -> Crop:
    """Cut the face square out of `image` (black where it leaves the frame), resize it."""
    x0, y0, x1, y1 = crop_window(landmarks, scale)
    h, w = image.shape[:2]
    window = np.zeros((y1 - y0, x1 - x0) + image.shape[2:], dtype=image.dtype)
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if sx1 > sx0 and sy1 > sy0:
        window[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = image[sy0:sy1, sx0:sx1]
    s = size / (x1 - x0)
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(window, (size, size), interpolation=interp)
    # pixel centres: input x maps to (x - x0 + 0.5) * s - 0.5
    off = 0.5 * s - 0.5
    matrix = np.array([[s, 0.0, off - x0 * s], [0.0, s, off - y0 * s]])
    return Crop(resized, apply_affine(matrix, landmarks), matrix)
