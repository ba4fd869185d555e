"""What every registry entry promises, tested over the registries themselves (as timm
tests every model): a detector, fusion rule, database adapter, face detector or landmark
backend added in one file (or a plugin) is checked here without a test of its own
(issue 14)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from dffr.datasets.base import DATASETS, SPLITS, get_dataset
from dffr.datasets.tracking import overlap
from dffr.detectors.base import DETECTORS, DetectorConfig, build_detector
from dffr.detectors.model_files import load_detector, model_file_problem
from dffr.errors import DffrError, MissingWeightsError
from dffr.fusion import FUSION, fuse, load_rule
from dffr.regions.face_detection import FACE_DETECTORS, convert, get_face_detector
from dffr.regions.landmarks import BACKENDS, N_LANDMARKS, get_backend

from .conftest import score_table

FAST = {"DSP-FWA", "ResNet-18"}  # the rest are heavier to build: with the slow tests


def _detectors():
    return [n if n in FAST else pytest.param(n, marks=pytest.mark.slow) for n in DETECTORS]


@pytest.mark.parametrize("name", _detectors())
def test_every_detector_predicts_p_fake_and_round_trips(name, tmp_path):
    cls = DETECTORS.get(name)
    size = max(cls.min_input_size, 32)
    config = DetectorConfig(name, region="eyes", ddbb="DB", input_size=size, pretrained=False)
    det = build_detector(config, "cpu")
    assert det.name == name
    images = np.random.default_rng(0).integers(0, 256, (3, size + 5, size - 3, 3), np.uint8)
    p = det.predict(images, batch=2)
    assert p.shape == (3,) and np.all((p >= 0) & (p <= 1)) and np.isfinite(p).all()
    path = tmp_path / f"{name}_DB_eyes{cls.suffix}"
    det.save(path)
    path.with_suffix(".json").write_text(json.dumps({"config": config.to_dict()}))
    assert model_file_problem(name, path) is None
    again = load_detector(path, "cpu")
    assert type(again) is cls
    assert np.allclose(again.predict(images, batch=2), p, atol=1e-6)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert model_file_problem(name, path)  # a cut file is named, not loaded


@pytest.mark.parametrize("name", list(DETECTORS))
def test_every_detector_declares_its_options_as_a_typed_dataclass(name):
    """`dffr train --<option>` and the YAML take a detector's options from its `Options`:
    each is documented, has a default that checks, and shadows no common setting."""
    from dataclasses import fields, is_dataclass

    cls = DETECTORS.get(name)
    assert is_dataclass(cls.Options)
    common = {f.name for f in fields(DetectorConfig)}
    for f in fields(cls.Options):
        assert f.name not in common, f"{name}: option {f.name!r} shadows a common setting"
        assert f.metadata.get("help"), f"{name}: option {f.name!r} says nothing in its help"
    defaults = cls.parse_options({})
    assert cls.parse_options(dict(vars(defaults))) == defaults  # what a sidecar records
    with pytest.raises(DffrError, match=f"{name} has no option 'no_such_option'"):
        cls.parse_options({"no_such_option": 1})


def _toy(n: int = 200) -> pd.DataFrame:
    """Val and test scores of an informative input and a noisy one, in [0, 1]."""
    rng = np.random.default_rng(1)
    parts = []
    for split in ("val", "test"):
        labels = rng.integers(0, 2, n)
        good = np.clip(0.25 + 0.5 * labels + rng.normal(0, 0.1, n), 0, 1)
        parts.append(score_table({"eyes": good, "mouth": rng.uniform(0, 1, n)}, labels, split))
    return pd.concat(parts, ignore_index=True)


@pytest.mark.parametrize("name", list(FUSION))
def test_every_fusion_rule_fuses_a_toy_table(name):
    scores = _toy()
    rule = load_rule(name)
    fused = fuse(scores, "regions", name, ["eyes", "mouth"])
    test = fused[fused["split"] == "test"]
    assert len(test) == 200 and set(test["rule"]) == {name}
    assert np.isfinite(test["score"]).all()
    assert test["score"].between(0, 1).all()  # P(fake) in, P(fake) out
    auc = roc_auc_score(test["label"], test["score"])
    assert auc > (0.95 if rule.learns else 0.7), auc  # what learns finds the good input
    # what learns is fitted on val only: other test scores leave the val fit unchanged
    if rule.learns:
        moved = scores.copy()
        moved.loc[moved["split"] == "test", "score"] = 1 - moved["score"]
        again = fuse(moved, "regions", name, ["eyes", "mouth"])
        assert np.allclose(
            again[again["split"] == "val"]["score"], fused[fused["split"] == "val"]["score"]
        )


def test_every_database_declares_its_options_once_and_each_is_a_command_option():
    """`dffr preprocess --<option>` comes from the adapter's `Options` dataclass, and the
    adapter takes exactly those (an option it does not have is refused by name)."""
    from dataclasses import fields, is_dataclass

    from click.testing import CliRunner

    from dffr.cli import main
    from dffr.datasets.base import DatasetError

    help_text = CliRunner().invoke(main, ["preprocess", "--help"]).output
    for name in DATASETS.names():
        cls = DATASETS.get(name)
        assert is_dataclass(cls.Options), name
        for option in fields(cls.Options):
            assert option.metadata.get("help"), f"{name}: option {option.name!r} has no help"
            flag = f"--{option.name.replace('_', '-')}"
            assert flag in help_text and f"{name}:" in help_text
        with pytest.raises(DatasetError, match=f"{name} has no option 'no_such_option'"):
            get_dataset(name, ".", no_such_option="x")


def _in_repository(cls) -> bool:
    return cls.__module__.startswith("dffr.")


@pytest.mark.parametrize("name", DATASETS.names())
def test_every_database_lists_its_example_layout(name, tmp_path):
    """Labels and splits on the miniature layout the adapter writes itself: a new
    adapter without one fails here (a plugin's is skipped: its package tests it)."""
    cls = DATASETS.get(name)
    try:
        options, labels = cls.example(tmp_path)
    except NotImplementedError as e:
        if _in_repository(cls):
            raise
        pytest.skip(f"{name} is a plugin ({cls.__module__}): {e}")
    items = get_dataset(name, tmp_path, **options).items()
    assert items == get_dataset(name, tmp_path, **options).items()  # deterministic
    assert [i.video for i in items] == sorted(i.video for i in items)
    assert {i.video: i.label for i in items} == labels  # every video, labelled as laid out
    assert set(labels.values()) == {0, 1}
    assert {i.split for i in items} == set(SPLITS)
    for split in SPLITS:  # each split holds real and fake videos
        assert {i.label for i in items if i.split == split} == {0, 1}, split
    root = tmp_path.resolve()
    for item in items:
        assert item.ddbb == cls.name and not item.refused
        assert not Path(item.video).is_absolute() and ".." not in Path(item.video).parts
        path = item.path(tmp_path).resolve()
        assert path.is_relative_to(root) and path.is_file(), item.video


# on one core: mmod ~2 s an image, mtcnn ~3 s to import and build facenet-pytorch
SLOW_FACE_DETECTORS = {"mmod", "mtcnn"}


def _face_detectors():
    return [
        pytest.param(n, marks=pytest.mark.slow) if n in SLOW_FACE_DETECTORS else n
        for n in FACE_DETECTORS.names()
    ]


def _built(get, name, **kwargs):
    """The registry entry built, or skip where its weights are not on this machine."""
    try:
        return get(name, **kwargs)
    except MissingWeightsError as e:
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def hog_box(astronaut):
    (box, _), *others = get_face_detector("hog")(astronaut)
    assert not others
    return box


@pytest.mark.parametrize("name", _face_detectors())
def test_every_face_detector_finds_the_one_face_and_no_face_in_grey(name, astronaut, hog_box):
    # searched at the image's own size (by default it is enlarged: mmod takes ~50 s)
    det = _built(get_face_detector, name, max_side=astronaut.shape[0])
    cls = FACE_DETECTORS.get(name)
    assert cls.to_points is None or (
        len(cls.to_points) == 4 and all(isinstance(v, float) for v in cls.to_points)
    )
    found = det(astronaut)
    assert len(found) == 1, found
    box, score = found[0]
    h, w = astronaut.shape[:2]
    assert 0 <= box[0] < box[2] <= w and 0 <= box[1] < box[3] <= h, box
    assert np.isfinite(score)
    # boxes are drawn differently: compared once redrawn as HOG draws them, where measured
    same = box if cls.to_points is None else convert(box, name, "hog")
    assert overlap(same, hog_box) > 0.5, (box, hog_box)
    assert det(np.full((200, 200, 3), 128, np.uint8)) == []  # searched, then padded (a crop)


@pytest.fixture(scope="module")
def dlib_points(astronaut, dlib_backend):
    (face,) = dlib_backend.detect(astronaut)
    return face.landmarks


@pytest.mark.parametrize("name", BACKENDS.names())
def test_every_landmark_backend_places_68_points_on_the_face(name, astronaut, dlib_points):
    """A backend that does not locate faces itself (`given`) is handed dlib's points
    and must give them back; the others must agree with dlib to a tenth of the face."""
    locates = BACKENDS.get(name).locates
    backend = _built(get_backend, name, **({} if locates else {"landmarks": dlib_points}))
    faces = backend.detect(astronaut)
    assert len(faces) == 1
    pts = faces[0].landmarks
    h, w = astronaut.shape[:2]
    assert pts.shape == (N_LANDMARKS, 2) and np.isfinite(pts).all()
    assert (pts >= 0).all() and (pts[:, 0] < w).all() and (pts[:, 1] < h).all()
    if locates:
        error = np.linalg.norm(pts - dlib_points, axis=1).mean()
        assert error < 0.1 * faces[0].size, error
    else:
        assert np.array_equal(pts, dlib_points)
