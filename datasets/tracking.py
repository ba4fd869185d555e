"""Follow faces through a video's sampled frames, detecting from scratch only when a
face is lost (the first frame, a cut, a face that left its search window).

`all_faces=False` follows one face, the largest when it starts (a database whose label
speaks for one subject). `all_faces=True` follows every face: each face found in the
first frame (or found later, when a full detection runs because a face was lost) is a
track with a number of its own, so two people in one video are never mixed up. A lost
face is searched for only by full detections, and only near where it was last seen,
for `MAX_MISSES` sampled frames; then its track ends, and a face found later starts a
new one. A stale box is never searched locally, so it cannot capture someone else.
With one face tracked, a lost face is searched near its last box, then among the faces
of a full detection where it could have moved (`same_face`); when none is there, the
largest face starts a new track: a switch to another person is never one track.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice

import numpy as np

from dffr.regions.face_detection import FaceDetector, Found
from dffr.regions.landmarks import Face, LandmarkBackend

MAX_MISSES = 3  # sampled frames a lost face may stay lost and still be re-acquired


def overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def same_face(prior: np.ndarray, box: np.ndarray) -> bool:
    """Could `box` be the face last seen at `prior`: its centre within one face width
    and its size within a factor of two."""
    side = max(prior[2] - prior[0], prior[3] - prior[1])
    ratio = max(box[2] - box[0], box[3] - box[1]) / side
    shift = np.hypot(
        (box[0] + box[2] - prior[0] - prior[2]) / 2, (box[1] + box[3] - prior[1] - prior[3]) / 2
    )
    return 0.5 <= ratio <= 2.0 and shift <= side


class FaceTracker:
    """Callable: RGB frame -> [(track number, Face)], sorted by track number."""

    def __init__(self, backend: LandmarkBackend, all_faces: bool = False) -> None:
        if not backend.locates:
            raise ValueError("face tracking needs a backend that detects faces (dlib, ...)")
        self.backend = backend
        self.detector: FaceDetector = backend.detector
        self.all_faces = all_faces
        self.tracks: dict[int, np.ndarray] = {}  # track -> its last box
        self.misses: dict[int, int] = {}  # track -> sampled frames since it was last seen
        self.next_track = 0
        self.full_detections = 0

    def __call__(self, frame: np.ndarray, full: Found | None = None) -> list[tuple[int, Face]]:
        """The faces of the next sampled frame; `full`: its full detection, if already
        made (`track`, a video's frames at once)."""
        found: dict[int, tuple[np.ndarray, float]] = {}
        for track, box in self.tracks.items():
            if self.misses[track] and self.all_faces:
                continue  # lost: only a full detection near its last box brings it back
            hit = self.detector.near(frame, box)
            # two tracks drifting onto one face: the older keeps it
            if hit is not None and all(overlap(hit[0], b) < 0.5 for b, _ in found.values()):
                found[track] = hit
        if not self.tracks or len(found) < len(self.tracks):
            self._redetect(frame, found, full)
        for track in list(self.tracks):
            self.misses[track] = 0 if track in found else self.misses[track] + 1
            if self.all_faces and self.misses[track] > MAX_MISSES:
                del self.tracks[track], self.misses[track]  # gone: its track ends
        if not found:
            return []
        for track, (box, _) in found.items():
            self.tracks[track] = box
        order = sorted(found)
        points = self.backend.locate(frame, [found[t][0] for t in order])
        return [(t, Face(found[t][0], p, found[t][1])) for t, p in zip(order, points, strict=True)]

    def _new_track(self, box: np.ndarray) -> int:
        track, self.next_track = self.next_track, self.next_track + 1
        self.tracks[track], self.misses[track] = box, 0
        return track

    def track(
        self, frames: Iterable[tuple[int, np.ndarray | None]], batch: int = 16
    ) -> Iterator[tuple[int, np.ndarray | None, list[tuple[int, Face]]]]:
        """(index, frame, its faces) for each of a video's sampled (index, frame); a frame
        that could not be decoded (None) has none. Where the face detector batches
        (`batch_frames`, a network on a GPU), the full detections of `batch` frames at a
        time are made in one pass beforehand; the faces found are those found frame by
        frame."""
        if not self.detector.batch_frames:
            for idx, frame in frames:
                yield idx, frame, [] if frame is None else self(frame)
            return
        todo = iter(frames)
        while chunk := list(islice(todo, batch)):
            decoded = [f for _, f in chunk if f is not None]
            shapes = {f.shape for f in decoded}
            full = iter(self.detector.detect_frames(decoded) if len(shapes) == 1 else [])
            for idx, frame in chunk:
                if frame is None:
                    yield idx, frame, []
                else:
                    yield idx, frame, self(frame, next(full, None))

    def _redetect(self, frame: np.ndarray, found: dict, full: Found | None = None) -> None:
        """A full-frame detection (`full`, if made already): lost tracks take the
        detection where they were last; other new faces start tracks (all faces) or the
        largest restarts track 0."""
        self.full_detections += 1
        if full is None:
            full = self.backend.find_faces(frame)
        faces = [f for f in full if all(overlap(f[0], b) < 0.5 for b, _ in found.values())]
        faces.sort(key=lambda f: -(f[0][2] - f[0][0]))
        if not self.all_faces:
            if faces and not found:
                lost = next(iter(self.tracks), None)
                prior = self.tracks.get(lost)
                again = [f for f in faces if prior is not None and same_face(prior, f[0])]
                if again:  # the lost face, where it could be: its track goes on
                    found[lost] = again[0]
                    return
                if lost is not None:  # someone else (or the face moved far): a new track
                    del self.tracks[lost], self.misses[lost]
                found[self._new_track(faces[0][0])] = faces[0]
            return
        # every face a track: a false detection (a patch of a shirt) would become one, so
        # all but the surest must be confirmed by dlib's CNN detector as well
        surest = max(range(len(faces)), key=lambda i: faces[i][1], default=None)
        confirmed = self.detector.confirmed
        faces = [f for i, f in enumerate(faces) if i == surest or confirmed(frame, f[0])]
        lost = [t for t in self.tracks if t not in found]
        for face in faces:
            match = next((t for t in lost if same_face(self.tracks[t], face[0])), None)
            if match is None:
                match = self._new_track(face[0])
            else:
                lost.remove(match)
            found[match] = face
