"""The segmenter on a real photograph (scikit-image's astronaut): crop geometry, input
variants (grayscale, RGBA, 16-bit, huge, tiny face, no face), backends and devices."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from dffr.device import resolve_device
from dffr.errors import DeviceError, DffrError, FaceTooSmallError, NoFaceError
from dffr.regions import BACKENDS, REGIONS, detect_faces, face_crop, get_backend, segment_image
from dffr.regions.masks import region_masks


@pytest.fixture(scope="module")
def astro_face(astronaut, dlib_backend):
    return detect_faces(astronaut, dlib_backend)[0]


def test_crop_is_the_enlarged_landmark_square(astronaut, astro_face):
    lm = astro_face.landmarks
    crop = face_crop(astronaut, lm, scale=1.3, size=200)
    assert crop.image.shape == (200, 200, 3)
    # landmarks span 1/1.3 of the crop along their longer side, centred
    span = crop.landmarks.max(axis=0) - crop.landmarks.min(axis=0)
    assert abs(span.max() - 200 / 1.3) < 2.0
    centre = (crop.landmarks.max(axis=0) + crop.landmarks.min(axis=0)) / 2
    one_input_pixel = crop.matrix[0, 0]  # the window snaps to whole input pixels
    assert np.allclose(centre, 99.5, atol=one_input_pixel)
    # the matrix maps input pixels to crop pixels: pixel colours agree at landmarks
    for x, y in np.round(crop.landmarks[[30, 36, 45, 48]]).astype(int):
        src = np.round(crop.to_input(np.array([[x, y]])))[0].astype(int)
        assert np.abs(crop.image[y, x].astype(int) - astronaut[src[1], src[0]]).max() < 40
    assert np.allclose(crop.to_input(crop.landmarks), lm, atol=1e-9)


def test_crop_beyond_the_frame_is_black(astronaut, astro_face):
    shifted = astro_face.landmarks - astro_face.landmarks.min(axis=0)  # face at the corner
    crop = face_crop(astronaut, shifted, scale=1.3, size=100)
    assert not crop.image[:5, :5].any()


def test_masks_are_the_same_in_crop_and_input_grids(astronaut, astro_face):
    crop = face_crop(astronaut, astro_face.landmarks, size=200)
    small = region_masks(crop.landmarks, (200, 200))
    full = region_masks(astro_face.landmarks, astronaut.shape)
    for r in REGIONS:
        warped = cv2.warpAffine(
            full[r].astype(np.uint8), crop.matrix, (200, 200), flags=cv2.INTER_NEAREST
        ).astype(bool)
        iou = (warped & small[r]).sum() / (warped | small[r]).sum()
        assert iou > 0.9, (r, iou)


@pytest.mark.parametrize("variant", ["gray", "rgba16", "bgr_order_is_not_assumed"])
def test_variants_give_the_same_landmarks(astronaut, astro_face, dlib_backend, variant):
    if variant == "gray":
        img = np.repeat(astronaut.mean(axis=2, keepdims=True).astype(np.uint8), 3, axis=2)
    elif variant == "rgba16":
        from dffr.images import to_rgb8

        img = to_rgb8(
            np.dstack([astronaut, np.full(astronaut.shape[:2], 255, np.uint8)]).astype(np.uint16)
            * 257
        )
    else:
        img = astronaut.copy()
    face = detect_faces(img, dlib_backend)[0]
    err = np.linalg.norm(face.landmarks - astro_face.landmarks, axis=1).mean()
    assert err < 3.0, err


def test_huge_image_is_searched_small_and_landmarked_full_size(astronaut, astro_face, dlib_backend):
    k = 10  # 5120 x 5120
    big = cv2.resize(astronaut, None, fx=k, fy=k, interpolation=cv2.INTER_LINEAR)
    assert dlib_backend.detector.scale_for(big.shape) < 0.3
    face = detect_faces(big, dlib_backend)[0]
    expected = (astro_face.landmarks + 0.5) * k - 0.5
    err = np.linalg.norm(face.landmarks - expected, axis=1).mean() / k
    assert err < 3.0, err  # in original pixels
    seg = segment_image(big, dlib_backend, size=200)[0]
    assert seg.crop.image.shape == (200, 200, 3)


def test_tiny_face_is_reported_with_its_size(astronaut, dlib_backend):
    tiny = cv2.resize(astronaut, (96, 96), interpolation=cv2.INTER_AREA)
    with pytest.raises(FaceTooSmallError, match=r"\d+ px wide, minimum 24 px"):
        detect_faces(tiny, dlib_backend)
    assert detect_faces(tiny, dlib_backend, min_face=10)  # found, only below the minimum


def test_no_face(dlib_backend):
    from skimage import data

    with pytest.raises(NoFaceError, match="no face found in the 600x400 image"):
        detect_faces(np.ascontiguousarray(data.coffee()), dlib_backend)


def test_all_faces_and_largest_first(shared, dlib_backend):
    from dffr.images import read_image

    image = read_image(shared / "landmarks" / "dlib_faces" / "2008_001322.jpg")
    faces = detect_faces(image, dlib_backend, all_faces=True)
    assert len(faces) >= 3
    assert detect_faces(image, dlib_backend)[0].size == max(f.size for f in faces)
    assert len(segment_image(image, dlib_backend, all_faces=True)) == len(faces)


def test_given_backend_reads_sidecar_landmarks(tmp_path, astronaut, astro_face):
    from dffr.images import write_image

    write_image(tmp_path / "a.png", astronaut)
    np.save(tmp_path / "a.npy", astro_face.landmarks)
    given = get_backend("given")
    faces = given.detect(astronaut, source=tmp_path / "a.png")
    assert np.allclose(faces[0].landmarks, astro_face.landmarks)
    pts = (
        "version: 1\nn_points: 68\n{\n"
        + "\n".join(f"{x} {y}" for x, y in astro_face.landmarks)
        + "\n}\n"
    )
    (tmp_path / "b.pts").write_text(pts)
    write_image(tmp_path / "b.png", astronaut)
    seg = segment_image(astronaut, given, source=tmp_path / "b.png")[0]
    assert np.allclose(seg.face.landmarks, astro_face.landmarks)
    with pytest.raises(NoFaceError, match="no landmark file"):
        given.detect(astronaut, source=tmp_path / "c.png")
    np.save(tmp_path / "d.npy", np.zeros((5, 2)))
    with pytest.raises(DffrError, match="expected 68"):
        given.detect(astronaut, source=tmp_path / "d.png")


def test_backend_registry_lists_all_three():
    assert {"dlib", "face-alignment", "given"} <= set(BACKENDS.names())
    with pytest.raises(KeyError, match="choose one of: dlib"):
        get_backend("nope")


def test_corrupt_dlib_model_is_a_clear_error(tmp_path):
    from dffr.errors import MissingWeightsError

    bad = tmp_path / "model.dat"
    bad.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(MissingWeightsError, match="not a dlib shape predictor"):
        get_backend("dlib", model_path=bad)


def test_device_selection(monkeypatch):
    assert resolve_device("cpu").torch == "cpu"
    assert resolve_device("cpu").tensorflow == "/CPU:0"
    import torch

    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").kind == expected
    monkeypatch.setenv("DFFR_DEVICE", "cpu")
    assert resolve_device(None).kind == "cpu"
    with pytest.raises(DeviceError, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="no CUDA device"):
            resolve_device("cuda")


def test_masking_takes_any_array_layout():
    """apply_mask is OpenCV's masked copy; views (a flip, Fortran order, a stride) are
    what perturbations and augmentations hand it, and must give np.where's result."""
    from dffr.regions.masks import apply_mask

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    for view in (image, image[:, ::-1], np.asfortranarray(image), image[::2, ::2]):
        mask = rng.random(view.shape[:2]) > 0.5
        assert np.array_equal(apply_mask(view, mask), np.where(mask[..., None], view, 0))
    deep = rng.integers(0, 65536, (20, 30), dtype=np.uint16)  # one channel, 16 bits
    mask = rng.random(deep.shape) > 0.5
    assert np.array_equal(apply_mask(deep, mask), np.where(mask, deep, 0))
