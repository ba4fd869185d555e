"""The demo database: real photographs varied into real images, fakes from the
framework's own manipulations, in the folder layout with explicit splits."""

from __future__ import annotations

import numpy as np

from dffr.datasets import get_dataset
from dffr.experiments.demo import _MIRROR, MANIPULATIONS, SPLIT_SIZES, build_database, vary
from dffr.images import read_image


def test_demo_database_layout_labels_and_methods(tmp_path):
    counts = build_database(tmp_path / "db")  # no ../shared, no --faces: the astronaut only
    assert counts["sources"] == 1
    items = get_dataset("folder", tmp_path / "db").items()
    per_class = sum(SPLIT_SIZES.values())
    assert len(items) == 2 * per_class
    assert {i.method for i in items} == {"real", *MANIPULATIONS}
    for split, n in SPLIT_SIZES.items():
        here = [i for i in items if i.split == split]
        assert sum(i.label for i in here) == n and len(here) == 2 * n
    img = read_image(tmp_path / "db" / items[0].video)
    assert img.shape == (224, 224, 3)


def test_mirroring_keeps_the_landmark_order(astronaut, dlib_backend):
    face = dlib_backend.detect(astronaut)[0]
    assert sorted(_MIRROR) == list(range(68))
    crop = np.ascontiguousarray(astronaut[:224, 130:354])
    for seed in range(8):  # mirrored and not
        _, pts = vary(crop, face.landmarks - [130, 0], np.random.default_rng(seed))
        # the right eye's outer corner (36) stays left of the left eye's (45), and so on
        assert pts[36, 0] < pts[45, 0] and pts[48, 0] < pts[54, 0] and pts[0, 0] < pts[16, 0]
