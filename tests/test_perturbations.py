"""Perturbations do what they say (against OpenCV and NumPy references), and the
training-time augmentation wrapper changes training images only, reproducibly."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from dffr.detectors.base import DetectorConfig
from dffr.detectors.data import ArrayData, Augmented, augmented
from dffr.errors import DffrError
from dffr.regions import cut_regions, region_masks
from dffr.transforms.augment import AUGMENTATIONS
from dffr.transforms.perturbations import (
    PERTURBATIONS,
    PerturbationError,
    hflip,
    perturb,
    perturb_landmarks,
)


@pytest.fixture(scope="module")
def face(astronaut) -> np.ndarray:
    """A 64 x 64 real photograph: detail, flat areas and colour."""
    return cv2.resize(astronaut[:256, 128:384], (64, 64), interpolation=cv2.INTER_AREA)


@pytest.mark.parametrize("name", ["jpeg", "blur", "dim", "noise", "resize", "rotate"])
def test_level_zero_is_the_image_itself_and_others_change_it(name, face):
    assert perturb(face, name, 0) is face
    lm = np.array([[10.0, 20.0], [40.5, 33.0]])
    assert perturb_landmarks(lm, name, 0, face.shape) is lm
    strongest = PERTURBATIONS.get(name).levels[-1]
    changed = perturb(face, name, strongest)
    assert changed.shape == face.shape and changed.dtype == np.uint8
    assert not np.array_equal(changed, face)


@pytest.mark.parametrize("quality", [95, 60, 20])
def test_jpeg_equals_opencv_at_that_quality(face, quality):
    params = [cv2.IMWRITE_JPEG_QUALITY, quality]
    data = cv2.imencode(".jpg", cv2.cvtColor(face, cv2.COLOR_RGB2BGR), params)[1]
    expected = cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    got = perturb(face, "jpeg", 100 - quality)
    assert np.array_equal(got, expected)
    # stronger compression, larger error
    assert np.abs(got.astype(int) - face).mean() > 0
    errors = [np.abs(perturb(face, "jpeg", lv).astype(int) - face).mean() for lv in (5, 40, 80)]
    assert errors == sorted(errors)


def test_dim_scales_every_level_by_the_light_kept(face):
    dimmed = perturb(face, "dim", 0.75)
    assert np.abs(dimmed.astype(float) - face * 0.25).max() <= 0.5  # rounded, not floored
    assert dimmed.max() <= round(face.max() * 0.25)
    with pytest.raises(PerturbationError, match="dim"):
        perturb(face, "dim", 1)


def test_blur_equals_opencv_and_spreads_a_line_by_sigma(face):
    assert np.array_equal(perturb(face, "blur", 1.5), cv2.GaussianBlur(face, (0, 0), 1.5))
    line = np.zeros((65, 65, 3), np.uint8)
    line[:, 32] = 255  # a delta across x
    for sigma in (1.0, 2.0, 3.0):
        profile = perturb(line, "blur", sigma)[32, :, 0].astype(float)
        x = np.arange(65) - 32
        std = np.sqrt((profile * x**2).sum() / profile.sum())
        assert std == pytest.approx(sigma, rel=0.05)
        assert profile.sum() == pytest.approx(255, rel=0.05)  # brightness is kept


def test_noise_has_the_asked_std_and_follows_the_seed():
    grey = np.full((96, 96, 3), 128, np.uint8)
    for level in (2.0, 10.0, 20.0):
        diff = perturb(grey, "noise", level, seed=1).astype(float) - 128
        assert diff.std() == pytest.approx(level, rel=0.05) and abs(diff.mean()) < 0.5
    a, b = perturb(grey, "noise", 5, seed=3), perturb(grey, "noise", 5, seed=3)
    assert np.array_equal(a, b) and not np.array_equal(a, perturb(grey, "noise", 5, seed=4))
    assert perturb(np.zeros_like(grey), "noise", 20).min() == 0  # clipped, not wrapped


def test_resize_loses_detail_but_keeps_the_shape(face):
    def detail(img):  # energy of the finest differences
        return np.abs(np.diff(img.astype(float), axis=1)).mean()

    small = perturb(face, "resize", 0.5)
    assert small.shape == face.shape and small.dtype == np.uint8
    assert detail(small) < 0.8 * detail(face)
    assert detail(perturb(face, "resize", 0.75)) < detail(small)
    lm = np.array([[5.0, 6.0]])
    assert perturb_landmarks(lm, "resize", 0.5, face.shape) is lm


def test_rotate_90_is_rot90_and_moves_landmarks_along(face):
    """Positive levels turn the picture counter-clockwise as displayed."""
    assert np.array_equal(perturb(face, "rotate", 90), np.rot90(face))
    assert np.array_equal(perturb(face, "rotate", -90), np.rot90(face, -1))
    points = np.array([[3.0, 10.0], [50.0, 7.0], [31.5, 31.5]])
    moved = perturb_landmarks(points, "rotate", 90, face.shape)
    n = face.shape[1]
    assert np.allclose(moved, np.c_[points[:, 1], n - 1 - points[:, 0]])
    rotated = perturb(face, "rotate", 90)
    for (x, y), (u, v) in zip(points[:2].astype(int), np.round(moved[:2]).astype(int), strict=True):
        assert np.array_equal(rotated[v, u], face[y, x])  # the same pixel under the point


def test_region_masks_follow_a_rotated_face(tiny_faces):
    images, _, lms = tiny_faces
    img, lm = images[0], lms[0]
    rotated = perturb(img, "rotate", 20)
    moved = perturb_landmarks(lm, "rotate", 20, img.shape)
    mouth = region_masks(lm, img.shape)["mouth"].astype(np.uint8)
    turned = perturb(np.repeat(mouth[..., None] * 255, 3, axis=2), "rotate", 20)[..., 0] > 127
    follows = region_masks(moved, rotated.shape)["mouth"]
    iou = (follows & turned).sum() / (follows | turned).sum()
    assert iou > 0.85


def test_bad_levels_and_images_are_refused(face):
    for name, level in [("jpeg", 100), ("jpeg", 12.5), ("resize", 1), ("blur", -1), ("noise", -2)]:
        with pytest.raises(PerturbationError, match=f"{name} level"):
            perturb(face, name, level)
    with pytest.raises(PerturbationError, match="unknown perturbation 'fog'"):
        perturb(face, "fog", 1)
    with pytest.raises(PerturbationError, match="uint8 RGB"):
        perturb(face.astype(np.float32), "blur", 1)
    assert issubclass(PerturbationError, DffrError)


def _data(tiny_faces) -> ArrayData:
    """The eyes regions of the tiny faces, as training data."""
    images, labels, lms = tiny_faces
    eyes = [cut_regions(im, lm, ("eyes",))["eyes"] for im, lm in zip(images, lms, strict=True)]
    return ArrayData(np.stack(eyes), labels)


def test_augmentation_is_reproducible_per_epoch_and_keeps_labels(tiny_faces):
    data = _data(tiny_faces)
    aug = Augmented(data, list(AUGMENTATIONS), p=1.0, seed=7)
    first = list(aug.batches(4, shuffle=True, epoch=2))
    again = list(aug.batches(4, shuffle=True, epoch=2))
    plain = list(data.batches(4, shuffle=True, epoch=2))
    for b, b2, pb in zip(first, again, plain, strict=True):
        (x, y), (x2, y2), (px, py) = ((c.images, c.labels) for c in (b, b2, pb))
        assert np.array_equal(x, x2) and np.array_equal(y, y2)  # same (seed, epoch): same
        assert np.array_equal(y, py)  # labels and sample order are the data's own
        assert x.shape == px.shape and x.dtype == np.uint8
        assert all(not np.array_equal(a, b) for a, b in zip(x, px, strict=True))
    other = np.concatenate([b.images for b in aug.batches(4, shuffle=True, epoch=3)])
    assert not np.array_equal(np.concatenate([b.images for b in first]), other)
    # a sample's augmentation depends on its position, not on the batch it falls in
    one = aug.images([5], epoch=2)[0]
    assert np.array_equal(one, aug.images([3, 5], epoch=2)[1])
    assert len(aug) == len(data) and np.array_equal(aug.labels, data.labels)


def test_augmentation_options(tiny_faces):
    data = _data(tiny_faces)
    assert (
        augmented(data, DetectorConfig("DSP-FWA").augment, 0.5, 0) is data
    )  # none asked: untouched
    never = Augmented(data, ["jpeg", "blur"], p=0.0)
    assert np.array_equal(never.images(range(4)), data.images(range(4)))
    flip = Augmented(data, ["flip"], p=1.0)
    assert np.array_equal(flip.images([2])[0], hflip(data.images([2])[0]))
    # photometric augmentations keep the black outside the region black
    colour = Augmented(data, ["color", "noise", "blur", "jpeg"], p=1.0).images(range(16))
    outside = ~data.images(range(16)).any(axis=3)
    assert outside.any() and not colour[outside].any()
    with pytest.raises(DffrError, match="unknown augmentation"):
        Augmented(data, ["sharpen"])
    with pytest.raises(DffrError, match="between 0 and 1"):
        Augmented(data, ["jpeg"], p=2)
