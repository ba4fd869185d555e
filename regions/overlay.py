"""A picture of what the segmenter did: landmarks and region outlines on the input."""

from __future__ import annotations

import cv2
import numpy as np

from dffr.regions.segment import Segmentation

COLOURS = {  # RGB
    "entire": (255, 255, 255),
    "eyes": (0, 200, 255),
    "nose": (255, 200, 0),
    "mouth": (255, 60, 120),
    "rest": (90, 220, 90),
}


def draw_overlay(image: np.ndarray, segmentations: list[Segmentation]) -> np.ndarray:
    """Copy of `image` with each face's region outlines and 68 landmarks drawn."""
    out = image.copy()
    h, w = image.shape[:2]
    t = max(1, round(max(h, w) / 500))
    for seg in segmentations:
        for name, mask in seg.input_masks((h, w)).items():
            if name == "rest":
                continue  # rest is outlined by the others
            contours, _ = cv2.findContours(
                mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
            )
            cv2.drawContours(out, contours, -1, COLOURS[name], t, cv2.LINE_AA)
        for x, y in seg.face.landmarks:
            cv2.circle(out, (round(x), round(y)), t + 1, (255, 0, 0), -1, cv2.LINE_AA)
    return out
