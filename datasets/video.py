"""Decode a video once and keep N frames evenly spaced over its whole length.

Frames are yielded one at a time, so memory does not grow with the video. Images are
one-frame videos. Every way a file can fail raises VideoError with the reason.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
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


def _open(path: Path) -> cv2.VideoCapture:
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        cap.release()
        raise VideoError(f"{path}: cannot open as a video (corrupt, truncated or not a video)")
    return cap


def _count(path: Path) -> int:
    """Frame count from the container, or by decoding when the container does not say."""
    cap = _open(path)
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    if n <= 0:
        n = 0
        while cap.grab():
            n += 1
    cap.release()
    return n


def frame_indices(path: str | Path, n: int) -> list[int]:
    """The indices of the `n` evenly spaced frames `read_frames` gives (an image: [0])."""
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


def read_frames(
    path: str | Path, n: int = 0, indices: list[int] | None = None
) -> Iterator[tuple[int, np.ndarray | None]]:
    """Yield (frame index, RGB uint8 frame) for `n` evenly spaced frames, or for the
    given `indices` (sorted; e.g. the same frames of a fake's original).

    A frame that cannot be decoded (the container promised more frames than it holds)
    comes as (index, None) so the caller can record it; a file that cannot be opened at
    all raises VideoError."""
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
        pos, ended = 0, False
        for t in targets:
            while not ended and pos < t:
                ended = not cap.grab()
                pos += 1
            ok, bgr = (False, None) if ended else cap.read()
            pos += 1
            if not ok:
                ended = True
                yield t, None
                continue
            yield t, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    finally:
        cap.release()
