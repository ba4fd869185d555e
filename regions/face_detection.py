"""Face boxes with dlib's HOG detector, at a resolution chosen for speed and recall.

The HOG window sees faces of about 80 px. Large frames are shrunk so the longer side is
at most `max_side` (a 1080p frame is searched at 1280 px), small images are enlarged so
faces down to about `min_face / 2` px can be found (and then reported as too small,
rather than as missing). The score threshold is below dlib's default 0 for recall;
a detection scoring below 0 is kept only if dlib's CNN face detector (MMOD) confirms it
on a small window around the box, which costs ~0.2 s and only for such doubtful boxes.
Tight face crops (about square), where the detector lacks context around the face, are
retried once with a replicated border. An image too narrow to hold a face once resized
(a 65535x10 strip) has none, and is not resized to nothing.
"""

from __future__ import annotations

import cv2
import numpy as np

from dffr.regions.dlib_models import MMOD_CNN, dlib_model_file

HOG_WINDOW = 80
CNN_FACE = 90  # face side the MMOD check resizes to
MIN_SIDE = 16  # px after resizing: a shorter side holds no face HOG can see
MAX_CROP_ASPECT = 2.0  # a tight face crop, retried with a border, is about square


class HogFaceDetector:
    """Callable: RGB uint8 image -> [(box (x0, y0, x1, y1), score)], in image pixels."""

    def __init__(self, max_side: int = 1280, min_face: int = 24, threshold: float = -0.3) -> None:
        import dlib

        self.max_side = max_side
        self.max_upscale = 2.0 * HOG_WINDOW / max(min_face, 1)
        self.threshold = threshold
        self._detector = dlib.get_frontal_face_detector()
        self._cnn = None  # loaded on the first doubtful detection

    def confirmed(self, image: np.ndarray, box: np.ndarray) -> bool:
        """Does the CNN detector also see a face in a window twice the box's size?"""
        if self._cnn is None:
            import dlib

            self._cnn = dlib.cnn_face_detection_model_v1(str(dlib_model_file(MMOD_CNN)))
        x0, y0, x1, y1 = box
        side, cx, cy = max(x1 - x0, y1 - y0), (x0 + x1) / 2, (y0 + y1) / 2
        h, w = image.shape[:2]
        wx0, wy0 = int(max(cx - side, 0)), int(max(cy - side, 0))
        wx1, wy1 = int(min(cx + side, w)), int(min(cy + side, h))
        if wx1 - wx0 < 2 or wy1 - wy0 < 2:
            return False
        k = CNN_FACE / side
        window = cv2.resize(image[wy0:wy1, wx0:wx1], None, fx=k, fy=k)
        return len(self._cnn(np.ascontiguousarray(window), 0)) > 0

    def scale_for(self, shape: tuple[int, ...]) -> float:
        """The resize factor applied before detection for an image of this shape."""
        return min(self.max_side / max(shape[0], shape[1]), self.max_upscale)

    def _run(
        self, image: np.ndarray, s: float, confirm: bool = True
    ) -> list[tuple[np.ndarray, float]]:
        """Detect on `image` resized by `s`; boxes come back in `image` pixels."""
        if min(image.shape[:2]) * s < MIN_SIDE:  # (a 65535x10 strip): no room for a face
            return []
        interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
        small = image if s == 1 else cv2.resize(image, None, fx=s, fy=s, interpolation=interp)
        rects, scores, _ = self._detector.run(np.ascontiguousarray(small), 0, self.threshold)
        found = []
        for r, score in zip(rects, scores, strict=True):
            box = np.array([r.left(), r.top(), r.right() + 1, r.bottom() + 1], dtype=np.float64)
            if score >= 0 or not confirm or self.confirmed(small, box):
                found.append((box / s, score))
        return found

    def near(self, image: np.ndarray, prior: np.ndarray) -> tuple[np.ndarray, float] | None:
        """The face nearest `prior`, searched only in a window around it.

        This is how a face is tracked across a video's sampled frames: the window reaches
        one face width beyond the prior box on every side and is resized so the face is
        ~1.5 HOG windows wide, a few milliseconds instead of a full-frame search. The
        prior is evidence enough, so doubtful boxes need no CNN confirmation here; a face
        of a very different size is not the same face."""
        x0, y0, x1, y1 = prior
        side = max(x1 - x0, y1 - y0)
        h, w = image.shape[:2]
        wx0, wy0 = int(max(x0 - side, 0)), int(max(y0 - side, 0))
        wx1, wy1 = int(min(x1 + side, w)), int(min(y1 + side, h))
        if wx1 - wx0 < 8 or wy1 - wy0 < 8:
            return None
        s = min(1.5 * HOG_WINDOW / side, self.max_upscale)
        offset = np.array([wx0, wy0, wx0, wy0], dtype=np.float64)
        window = image[wy0:wy1, wx0:wx1]
        centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
        best, best_dist = None, np.inf
        for b, sc in self._run(window, s, confirm=False):
            b = b + offset
            ratio = (b[2] - b[0]) / side
            dist = float(np.hypot(*(np.array([(b[0] + b[2]) / 2, (b[1] + b[3]) / 2]) - centre)))
            if 0.5 <= ratio <= 2.0 and dist < best_dist:
                best, best_dist = (b, sc), dist
        return best

    def __call__(self, image: np.ndarray) -> list[tuple[np.ndarray, float]]:
        found = self._run(image, self.scale_for(image.shape))
        h, w = image.shape[:2]
        if found or max(h, w) > MAX_CROP_ASPECT * min(h, w):  # not a tight crop of a face
            return found
        pad = int(0.3 * max(image.shape[:2]))
        padded = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        out = []
        for box, score in self._run(padded, self.scale_for(padded.shape)):
            box = box - pad
            # keep a face only if most of it lies in the real image
            inside = np.clip(box, [0, 0, 0, 0], [w, h, w, h])
            area = (box[2] - box[0]) * (box[3] - box[1])
            if (inside[2] - inside[0]) * (inside[3] - inside[1]) >= 0.5 * area:
                out.append((box, score))
        return out
