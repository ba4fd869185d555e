"""Face detectors: where the faces are, apart from where their landmarks are.

One module per detector under `regions/face_detectors/`, registered with
`@FACE_DETECTORS.register(name)` (an installed package adds one through the
`dffr.face_detectors` entry-point group). A detector implements `find` on an image already
resized for it; this class chooses that resolution, retries tight face crops with a
border, searches near a tracked face (`near`) and confirms doubtful faces, the same way
for every detector:

- Large frames are shrunk so the longer side is at most `max_side`; small images are
  enlarged so faces down to about `min_face / 2` px reach the smallest face the detector
  sees (`smallest`), and are then reported as too small rather than as missing.
- An image too narrow to hold a face once resized (a 65535x10 strip) has none.
- Tight face crops (about square), where a detector lacks context around the face, are
  retried once with a replicated border.

Detectors draw their boxes differently (dlib's HOG box stops at the eyebrows, MTCNN's
takes in the forehead). Each declares `to_points`, how its box maps to the tight box of
the face's 68 points (measured by `benchmarks/faces.py`), and a landmark model is given
boxes drawn as the detector it was trained with draws them (`convert`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import cv2
import numpy as np

from dffr.device import resolve_device
from dffr.errors import DffrError
from dffr.regions.dlib_models import MMOD_CNN, dlib_model_file
from dffr.registry import Registry

MIN_SIDE = 16  # px after resizing: a shorter side holds no face a detector can see
MAX_CROP_ASPECT = 2.0  # a tight face crop, retried with a border, is about square
CNN_FACE = 90  # face side dlib's MMOD confirmation resizes to

Box = np.ndarray  # (x0, y0, x1, y1), float64
Found = list[tuple[Box, float]]


class FaceDetector(ABC):
    """Callable: RGB uint8 image -> [(box (x0, y0, x1, y1), score)], in image pixels."""

    smallest: ClassVar[int] = 40  # face side (px) it finds at the scale it searches
    tracking_side: ClassVar[int] = 120  # face side a window around a tracked face gets
    default_max_side: ClassVar[int] = 1280
    # its box -> the tight box of the 68 points: offsets of x0, y0, x1, y1 in units of
    # the box's width (x) and height (y); None: not measured, its boxes go only to a
    # landmark model trained on them
    to_points: ClassVar[tuple[float, float, float, float] | None] = None

    @classmethod
    def weights(cls):
        """The file it downloads (a `detectors.imagenet.WeightsFile`), or None: offline."""
        return None

    def __init__(
        self,
        max_side: int | None = None,
        min_face: int = 24,
        device: str | None = None,
        batch_frames: bool | None = None,
    ) -> None:
        self.max_side = max_side or self.default_max_side
        self.max_upscale = 2.0 * self.smallest / max(min_face, 1)
        self.device = device
        # a video's frames searched together (`detect_frames`); default: where the
        # detector's network takes a batch and runs on an accelerator
        native = type(self).find_batch is not FaceDetector.find_batch
        if batch_frames is None:
            batch_frames = native and resolve_device(device).kind != "cpu"
        self.batch_frames = batch_frames
        self._mmod = None  # dlib's CNN, loaded on the first face to confirm

    @abstractmethod
    def find(self, image: np.ndarray, confirm: bool = True) -> Found:
        """Faces in `image` as it is (already resized), boxes in its pixels. `confirm`:
        a full search, where a doubtful face must be confirmed; False near a tracked
        face, where the prior is evidence enough."""

    def find_batch(self, images: list[np.ndarray], confirm: bool = True) -> list[Found]:
        """`find` on each of several images of one shape; a detector whose network takes
        a batch runs them together."""
        return [self.find(image, confirm) for image in images]

    def scale_for(self, shape: tuple[int, ...]) -> float:
        """The resize factor applied before detection for an image of this shape."""
        return min(self.max_side / max(shape[0], shape[1]), self.max_upscale)

    def search(self, image: np.ndarray, s: float, confirm: bool = True) -> Found:
        """Detect on `image` resized by `s`; boxes come back in `image` pixels."""
        if min(image.shape[:2]) * s < MIN_SIDE:  # (a 65535x10 strip): no room for a face
            return []
        return [(box / s, score) for box, score in self.find(_resized(image, s), confirm)]

    def __call__(self, image: np.ndarray) -> Found:
        return self._or_padded(image, self.search(image, self.scale_for(image.shape)))

    def detect_frames(self, frames: list[np.ndarray]) -> list[Found]:
        """What `self(frame)` finds in each of a video's frames (all of one shape); with
        `batch_frames`, one network pass for them all."""
        if not frames:
            return []
        s = self.scale_for(frames[0].shape)
        if not self.batch_frames or min(frames[0].shape[:2]) * s < MIN_SIDE:
            return [self(frame) for frame in frames]
        found = self.find_batch([_resized(frame, s) for frame in frames])
        return [
            self._or_padded(frame, [(box / s, score) for box, score in faces])
            for frame, faces in zip(frames, found, strict=True)
        ]

    def _or_padded(self, image: np.ndarray, found: Found) -> Found:
        """`found`, or for a tight face crop where nothing was found, the faces found
        once the crop has a replicated border."""
        h, w = image.shape[:2]
        if found or max(h, w) > MAX_CROP_ASPECT * min(h, w):  # not a tight crop of a face
            return found
        pad = int(0.3 * max(image.shape[:2]))
        padded = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        out = []
        for box, score in self.search(padded, self.scale_for(padded.shape)):
            box = box - pad
            # keep a face only if most of it lies in the real image
            inside = np.clip(box, [0, 0, 0, 0], [w, h, w, h])
            area = (box[2] - box[0]) * (box[3] - box[1])
            if (inside[2] - inside[0]) * (inside[3] - inside[1]) >= 0.5 * area:
                out.append((box, score))
        return out

    def near(self, image: np.ndarray, prior: Box) -> tuple[Box, float] | None:
        """The face nearest `prior`, searched only in a window around it.

        This is how a face is tracked across a video's sampled frames: the window reaches
        one face width beyond the prior box on every side and is resized so the face is
        `tracking_side` px wide, a few milliseconds instead of a full-frame search. A face
        of a very different size is not the same face."""
        x0, y0, x1, y1 = prior
        side = max(x1 - x0, y1 - y0)
        h, w = image.shape[:2]
        wx0, wy0 = int(max(x0 - side, 0)), int(max(y0 - side, 0))
        wx1, wy1 = int(min(x1 + side, w)), int(min(y1 + side, h))
        if wx1 - wx0 < 8 or wy1 - wy0 < 8:
            return None
        s = min(self.tracking_side / side, self.max_upscale)
        offset = np.array([wx0, wy0, wx0, wy0], dtype=np.float64)
        centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
        best, best_dist = None, np.inf
        for b, sc in self.search(image[wy0:wy1, wx0:wx1], s, confirm=False):
            b = b + offset
            ratio = (b[2] - b[0]) / side
            dist = float(np.hypot(*(np.array([(b[0] + b[2]) / 2, (b[1] + b[3]) / 2]) - centre)))
            if 0.5 <= ratio <= 2.0 and dist < best_dist:
                best, best_dist = (b, sc), dist
        return best

    def confirmed(self, image: np.ndarray, box: Box) -> bool:
        """Does dlib's CNN face detector (MMOD) also see a face in a window twice the
        box's size? ~0.2 s, asked only of doubtful faces."""
        if self._mmod is None:
            import dlib

            self._mmod = dlib.cnn_face_detection_model_v1(str(dlib_model_file(MMOD_CNN)))
        x0, y0, x1, y1 = box
        side, cx, cy = max(x1 - x0, y1 - y0), (x0 + x1) / 2, (y0 + y1) / 2
        h, w = image.shape[:2]
        wx0, wy0 = int(max(cx - side, 0)), int(max(cy - side, 0))
        wx1, wy1 = int(min(cx + side, w)), int(min(cy + side, h))
        if wx1 - wx0 < 2 or wy1 - wy0 < 2:
            return False
        k = CNN_FACE / side
        window = cv2.resize(image[wy0:wy1, wx0:wx1], None, fx=k, fy=k)
        return len(self._mmod(np.ascontiguousarray(window), 0)) > 0


def _resized(image: np.ndarray, s: float) -> np.ndarray:
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    small = image if s == 1 else cv2.resize(image, None, fx=s, fy=s, interpolation=interp)
    return np.ascontiguousarray(small)


FACE_DETECTORS: Registry[type[FaceDetector]] = Registry(
    "face detector", "dffr.regions.face_detectors", "dffr.face_detectors"
)


def get_face_detector(name: str = "hog", **kwargs) -> FaceDetector:
    """Build the face detector registered as `name` (hog, mmod, mtcnn, sfd)."""
    return FACE_DETECTORS.get(name)(**kwargs)


def check_convertible(source: str, target: str) -> None:
    """DffrError unless `source`'s boxes can be redrawn as `target`'s (both measured)."""
    if source.lower() == target.lower():
        return
    for name in (source, target):
        if FACE_DETECTORS.get(name).to_points is None:
            raise DffrError(
                f"face detector {name!r}: how its boxes relate to the 68 points is not "
                f"measured, so {source}'s boxes cannot be redrawn as {target}'s: run "
                f"`benchmarks/faces.py --detectors {name}` and set `to_points` in its module"
            )


def convert(box: Box, source: str, target: str) -> Box:
    """A box drawn as detector `source` draws them, redrawn as `target` would."""
    if source.lower() == target.lower():
        return np.asarray(box, dtype=np.float64)
    check_convertible(source, target)
    x0, y0, x1, y1 = np.asarray(box, dtype=np.float64)
    a, b, c, d = FACE_DETECTORS.get(source).to_points
    w, h = x1 - x0, y1 - y0
    p = np.array([x0 + a * w, y0 + b * h, x1 + c * w, y1 + d * h])  # the points' box
    a, b, c, d = FACE_DETECTORS.get(target).to_points
    w, h = (p[2] - p[0]) / (1 + c - a), (p[3] - p[1]) / (1 + d - b)
    return np.array([p[0] - a * w, p[1] - b * h, p[2] - c * w, p[3] - d * h])
