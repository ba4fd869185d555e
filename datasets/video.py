"""Decode a video once and keep N frames evenly spaced over its whole length.

Frames are yielded one at a time, so memory does not grow with the video. Images are
one-frame videos. Every way a file can fail raises VideoError with the reason.

The spacing comes from the container's frame count, which some containers overstate
(a variable-frame-rate .mkv estimates it from duration x frame rate; a truncated file
keeps its old header). That is found out only at the end of the one decoding pass, so
the frames the count promised but the video lacks are then replaced by real ones in a
second pass: the rare bad header costs a second decode, the normal case does not.
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Generator, Iterator
from pathlib import Path

import numpy as np

from dffr.datasets.base import IMAGE_SUFFIXES
from dffr.errors import DffrError, ImageReadError
from dffr.images import read_image

# FFmpeg prints its own complaints about broken files; ours are clearer.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
import cv2  # noqa: E402


class VideoError(DffrError):
    """A video (or image) that cannot be decoded."""


def sample_indices(n_frames: int, n: int) -> list[int]:
    """`n` frame indices evenly spaced from the first frame to the last."""
    if n_frames <= 0 or n <= 0:
        return []
    if n >= n_frames:
        return list(range(n_frames))
    return sorted(set(np.linspace(0, n_frames - 1, n).round().astype(int).tolist()))


def _spread_more(taken: list[int], n_frames: int, k: int) -> list[int]:
    """`k` more of a video's `n_frames` real frames (sorted), for a sample whose header
    promised frames the video lacks: its last real frame first, since the end is what
    an overstated count loses, then each time the frame farthest from all chosen."""
    chosen = sorted(set(taken) | {n_frames - 1})
    frames = np.arange(n_frames)
    while len(chosen) < min(len(taken) + k, n_frames):
        pts = np.array(chosen)
        at = np.searchsorted(pts, frames)
        before = np.abs(frames - pts[np.maximum(at - 1, 0)])
        after = np.abs(pts[np.minimum(at, len(pts) - 1)] - frames)
        bisect.insort(chosen, int(np.argmax(np.minimum(before, after))))
    return sorted(set(chosen) - set(taken))


def _open(path: Path) -> cv2.VideoCapture:
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        cap.release()
        raise VideoError(f"{path}: cannot open as a video (corrupt, truncated or not a video)")
    return cap


def _fourcc(cap: cv2.VideoCapture) -> str:
    """The video codec's FourCC as text ('av01', 'avc1'), or 'unknown'."""
    code = int(cap.get(cv2.CAP_PROP_FOURCC)) & 0xFFFFFFFF
    name = code.to_bytes(4, "little").decode("latin-1").strip("\0 ")
    if code in (0, 0xFFFFFFFF) or not name:
        return "unknown"
    return name if name.isprintable() else f"0x{code:08x}"


def _no_frame(path: Path, cap: cv2.VideoCapture) -> VideoError:
    """Why a video whose container opens gives not one frame: cut short before its
    first frame (far fewer bytes than the header's bit rate and length imply), or else
    a codec this OpenCV build cannot decode (AV1 in the pip wheels), named so that the
    user knows what to re-encode."""
    kbps, fps = cap.get(cv2.CAP_PROP_BITRATE), cap.get(cv2.CAP_PROP_FPS)
    frames = cap.get(cv2.CAP_PROP_FRAME_COUNT)
    size = path.stat().st_size
    if kbps > 0 and fps > 0 and frames > 0 and size < kbps * 125 * frames / fps / 2:
        return VideoError(
            f"{path}: truncated: no frame decodes, and it holds {size} bytes of the about "
            f"{kbps * 125 * frames / fps:.0f} its header implies"
        )
    return VideoError(
        f"{path}: cannot decode its {_fourcc(cap)!r} video: this OpenCV build has no "
        "working decoder for that codec (re-encode it, e.g. to H.264)"
    )


def _count(path: Path) -> int:
    """Frame count from the container, or by decoding when the container does not say."""
    cap = _open(path)
    try:
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        if n <= 0:
            n = 0
            while cap.grab():
                n += 1
            if n == 0:
                raise _no_frame(path, cap)
        return n
    finally:
        cap.release()


def frame_indices(path: str | Path, n: int) -> list[int]:
    """The indices of `n` evenly spaced frames by the container's count (an image: [0]):
    those `read_frames` gives unless the header overstates the count."""
    p = Path(path)
    if p.suffix.lower() in IMAGE_SUFFIXES:
        return [0]
    _check_file(p)
    return sample_indices(_count(p), n)


def _check_file(p: Path) -> None:
    if not p.is_file():
        raise VideoError(f"{p}: no such file")
    if p.stat().st_size == 0:
        raise VideoError(f"{p}: empty file (0 bytes)")


def _decode(
    cap: cv2.VideoCapture, targets: list[int]
) -> Generator[tuple[int, np.ndarray], None, int | None]:
    """Yield the frames at the sorted, distinct `targets`, decoding forward once; return
    None when all were there, else the number of frames the video really holds."""
    pos = 0  # the index of the frame the capture gives next
    for t in targets:
        while pos < t and cap.grab():
            pos += 1
        ok, bgr = cap.read() if pos == t else (False, None)
        if not ok:
            return pos
        pos += 1
        yield t, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    return None


def read_frames(
    path: str | Path, n: int = 0, indices: list[int] | None = None
) -> Iterator[tuple[int, np.ndarray | None]]:
    """Yield (frame index, RGB uint8 frame) for `n` evenly spaced frames, or for the
    given `indices` (sorted, distinct; e.g. the same frames of a fake's original).

    With `n`, a header that overstates the frame count is made up for: the frames read
    before the video ended come first, then real frames in place of the missing ones
    (the last real frame among them). Given `indices`, they must stay those frames, so
    one past the end comes as (index, None) for the caller to record. A file that
    cannot be opened, or whose frames cannot be decoded at all, raises VideoError."""
    p = Path(path)
    _check_file(p)
    if p.suffix.lower() in IMAGE_SUFFIXES:
        try:
            yield 0, read_image(p)
        except ImageReadError as e:
            raise VideoError(str(e)) from None
        return
    targets = sample_indices(_count(p), n) if indices is None else list(indices)
    if not targets:
        raise VideoError(f"{p}: no frames could be decoded")
    cap = _open(p)
    try:
        real = yield from _decode(cap, targets)
        if real == 0:
            raise _no_frame(p, cap)
    finally:
        cap.release()
    if real is None:
        return
    taken = [t for t in targets if t < real]
    if indices is not None:
        for t in targets[len(taken) :]:
            yield t, None
        return
    cap = _open(p)
    try:
        yield from _decode(cap, _spread_more(taken, real, len(targets) - len(taken)))
    finally:
        cap.release()
