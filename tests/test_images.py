"""Reading images: every kind a user may hand us becomes RGB uint8, or a clear error."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from dffr.errors import ImageReadError
from dffr.images import read_image, to_rgb8


def _save(path, array, mode=None):
    Image.fromarray(array, mode=mode).save(path) if mode else Image.fromarray(array).save(path)
    return path


def test_grayscale_rgba_and_16bit_are_converted(tmp_path, astronaut):
    gray = astronaut.mean(axis=2).astype(np.uint8)
    out = read_image(_save(tmp_path / "g.png", gray))
    assert out.shape == (512, 512, 3) and out.dtype == np.uint8
    assert np.array_equal(out[..., 0], gray) and np.array_equal(out[..., 2], gray)

    rgba = np.dstack([astronaut, np.full(astronaut.shape[:2], 255, np.uint8)])
    assert np.array_equal(read_image(_save(tmp_path / "a.png", rgba)), astronaut)
    rgba[:10, :10, 3] = 0  # transparent pixels land on black
    assert not read_image(_save(tmp_path / "t.png", rgba))[:10, :10].any()

    g16 = gray.astype(np.uint16) * 257
    Image.fromarray(g16).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    assert np.array_equal(read_image(tmp_path / "g16.png")[..., 1], gray)

    rgb16 = astronaut.astype(np.uint16) * 257
    assert np.array_equal(to_rgb8(rgb16), astronaut)
    assert read_image(tmp_path / "g.png").flags.writeable


def test_palette_and_jpeg(tmp_path, astronaut):
    Image.fromarray(astronaut).convert("P").save(tmp_path / "p.png")
    assert read_image(tmp_path / "p.png").shape == (512, 512, 3)
    Image.fromarray(astronaut).save(tmp_path / "x.jpg", quality=95)
    assert np.abs(read_image(tmp_path / "x.jpg").astype(int) - astronaut).mean() < 4


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda p: None, "no such file"),
        (lambda p: p.write_bytes(b""), "empty file"),
        (lambda p: p.write_text("this is not an image\n" * 10), "not an image"),
        (lambda p: p.mkdir(), "is a directory"),
    ],
)
def test_unreadable_files_get_specific_messages(tmp_path, make, expected):
    path = tmp_path / "bad.png"
    make(path)
    with pytest.raises(ImageReadError, match=expected) as e:
        read_image(path)
    assert "bad.png" in str(e.value)


@pytest.mark.parametrize("suffix", ["png", "jpg"])
def test_truncated_images_are_refused(tmp_path, astronaut, suffix):
    full = tmp_path / f"full.{suffix}"
    Image.fromarray(astronaut).save(full)
    cut = tmp_path / f"cut.{suffix}"
    data = full.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="truncated|corrupt|cannot decode"):
        read_image(cut)
