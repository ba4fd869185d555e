"""Reading images of any common kind into one form: RGB, uint8, shape (H, W, 3).

Pillow decodes strictly (a truncated JPEG or PNG raises instead of coming back half
grey), which is what a forensic tool needs; grayscale, palette, RGBA, CMYK and 16-bit
files are all converted, and EXIF orientation is applied so landmarks match what a
viewer shows.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from dffr.errors import ImageReadError

# Forensic inputs can be 8K frames (33 Mpixel) or large photographs; beyond 100 Mpixel
# (300 MB decoded, more in Pillow's working copies) an image is refused before decoding.
MAX_PIXELS = 100_000_000
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
log = logging.getLogger(__name__)
_SAID_FIRST_FRAME = False


def to_rgb8(array: np.ndarray) -> np.ndarray:
    """Convert a grayscale / RGB / RGBA array of uint8, uint16 or float to RGB uint8."""
    a = np.asarray(array)
    if a.dtype == np.uint16:
        a = (a.astype(np.uint32) * 255 + 32767) // 65535
    elif np.issubdtype(a.dtype, np.floating):
        a = np.clip(a * 255.0 if a.max(initial=0) <= 1.0 else a, 0, 255).round()
    elif a.dtype != np.uint8:
        a = np.clip(a, 0, 255)
    a = a.astype(np.uint8)
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    elif a.ndim == 3 and a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    elif a.ndim == 3 and a.shape[2] == 4:
        a = a[:, :, :3]
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"cannot convert an array of shape {array.shape} to an RGB image")
    return np.ascontiguousarray(a)


def _pil_to_rgb8(img: Image.Image) -> np.ndarray:
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return to_rgb8(np.asarray(img).astype(np.uint16))
    if img.mode == "I":
        arr = np.asarray(img)
        # 16-bit PNGs often open as mode "I" holding 0..65535 values.
        return to_rgb8(arr.astype(np.uint16) if arr.max(initial=0) > 255 else arr)
    if img.mode == "F":
        return to_rgb8(np.asarray(img))
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # Composite on black, the framework's background for everything outside a face.
        rgba = img.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return np.asarray(Image.alpha_composite(black, rgba).convert("RGB"))
    return np.asarray(img.convert("RGB"))


def _first_frame_only(path: Path, img: Image.Image) -> None:
    """An animated GIF / WebP or a multi-page TIFF is read as its first frame: said once
    a run (with the first such file), not silently and not once per file."""
    global _SAID_FIRST_FRAME
    frames = getattr(img, "n_frames", 1)
    if frames > 1 and not _SAID_FIRST_FRAME:
        _SAID_FIRST_FRAME = True
        log.warning(
            "%s holds %d frames (animated or multi-page): only the first is read, here and "
            "in every such image; give videos as video files",
            path,
            frames,
        )


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as RGB uint8, or raise ImageReadError saying why not."""
    p = Path(path)
    if not p.exists():
        raise ImageReadError(f"{p}: no such file")
    if p.is_dir():
        raise ImageReadError(f"{p}: is a directory, not an image")
    if p.stat().st_size == 0:
        raise ImageReadError(f"{p}: empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(p) as img:
                _first_frame_only(p, img)
                img.load()
                rgb = _pil_to_rgb8(ImageOps.exif_transpose(img))
                return rgb if rgb.flags.writeable else rgb.copy()
    except UnidentifiedImageError:
        raise ImageReadError(f"{p}: not an image file (format not recognised)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageReadError(
            f"{p}: image too large: more than {MAX_PIXELS // 1_000_000} Mpixel ({e})"
        ) from None
    except OSError as e:
        msg = str(e)
        if "truncated" in msg or "broken data stream" in msg:
            raise ImageReadError(f"{p}: truncated or corrupt image data ({msg})") from None
        raise ImageReadError(f"{p}: cannot decode image ({msg})") from None
    except (SyntaxError, ValueError) as e:  # Pillow plugins raise these on malformed headers
        raise ImageReadError(f"{p}: corrupt image header ({e})") from None


def write_image(path: str | Path, rgb: np.ndarray) -> None:
    """Write an RGB (or single-channel) uint8 array losslessly as PNG."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(rgb)).save(p)
