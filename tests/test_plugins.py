"""An installed plugin package adds a detector, a database, a fusion rule, a face
detector and a landmark backend, and they appear in every command and in the contract
tests (issue 14): a package made in the test, with its dist-info and entry points on
PYTHONPATH, driven through `python -m dffr` (and pytest) in fresh processes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

REPO = Path(__file__).resolve().parents[1]

DETECTOR = """
import torch.nn as nn
import torch.nn.functional as F

from dffr.detectors.base import DETECTORS
from dffr.detectors.torch_detector import TorchDetector


@DETECTORS.register("TinyNet")
class TinyNet(TorchDetector):
    name = "TinyNet"
    min_input_size = 16

    def build(self):
        return nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(8, 2),
        )

    def probabilities(self, outputs):
        return F.softmax(outputs.float(), dim=1)

    def loss(self, outputs, targets):
        return F.cross_entropy(outputs.float(), targets)
"""

DATASET = """
from dffr.datasets.base import Dataset, Item


class Flat(Dataset):
    '''real_<k>.png / fake_<k>.png in one folder; k % 4: 0, 1 train, 2 val, 3 test.'''

    name = "Flat"

    def items(self):
        out = []
        for p in sorted(self.root.glob("*.png")):
            kind, k = p.stem.split("_")
            split = ("train", "train", "val", "test")[int(k) % 4]
            label = int(kind == "fake")
            out.append(Item(self.name, p.name, label, split, kind))
        return out
"""

RULES = """
def spread(scores):
    return (scores.max(axis=1) - scores.min(axis=1)).clip(0, 1)
"""

FACES = """
import numpy as np

from dffr.regions.face_detectors.hog import HogFaceDetector

G = 0.1  # HOG's box grown by a tenth of its side on every side


def _grown(a, b, c, d):
    return tuple(float(v) / (1 + 2 * G) for v in (a + G, b + G, c - G, d - G))


class WideHog(HogFaceDetector):
    '''dlib's HOG, drawing wider boxes: `to_points` says how, so they can be redrawn.'''

    to_points = _grown(*HogFaceDetector.to_points)

    def find(self, image, confirm=True):
        out = []
        for box, score in super().find(image, confirm):
            w, h = box[2] - box[0], box[3] - box[1]
            out.append((box + G * np.array([-w, -h, w, h]), score))
        return out
"""

LANDMARKS = """
from pathlib import Path

import numpy as np

from dffr.regions.landmarks import LandmarkBackend

SHAPE = np.load(Path(__file__).with_name("shape.npy"))  # 68 (x, y) in units of a HOG box


class MeanShape(LandmarkBackend):
    '''The same 68 points in every face's box.'''

    def landmarks(self, image, boxes):
        return [box[:2] + SHAPE * (box[2:] - box[:2]) for box in boxes]
"""

ENTRY_POINTS = """
[dffr.detectors]
tinynet = dffr_demo_plugin.detector

[dffr.datasets]
Flat = dffr_demo_plugin.dataset:Flat

[dffr.fusion]
spread = dffr_demo_plugin.rules:spread
broken = dffr_demo_plugin.missing:nothing

[dffr.face_detectors]
widehog = dffr_demo_plugin.faces:WideHog

[dffr.landmarks]
meanshape = dffr_demo_plugin.landmarks:MeanShape
"""


@pytest.fixture(scope="module")
def plugin(tmp_path_factory, astronaut, dlib_backend):
    site = tmp_path_factory.mktemp("site")
    pkg = site / "dffr_demo_plugin"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    modules = dict(
        detector=DETECTOR, dataset=DATASET, rules=RULES, faces=FACES, landmarks=LANDMARKS
    )
    for name, text in modules.items():
        (pkg / f"{name}.py").write_text(textwrap.dedent(text))
    (face,) = dlib_backend.detect(astronaut)  # the mean shape: the astronaut's, in HOG's box
    np.save(pkg / "shape.npy", (face.landmarks - face.box[:2]) / (face.box[2:] - face.box[:2]))
    info = site / "dffr_demo_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: dffr-demo-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    return site


def _run(plugin, *args, cwd):
    """A fresh Python process where the plugin is installed (on its PYTHONPATH)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin), *sys.path])}
    return subprocess.run(
        [sys.executable, *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _dffr(plugin, *args, cwd):
    return _run(plugin, "-m", "dffr", "--device", "cpu", *args, cwd=cwd)


@pytest.mark.slow
def test_a_plugin_package_is_usable_from_every_command(plugin, tmp_path, astronaut):
    import cv2

    from dffr.images import write_image

    db = tmp_path / "db"
    rng = np.random.default_rng(0)
    for k in range(8):
        m = np.float32([[1, 0, rng.uniform(-6, 6)], [0, 1, rng.uniform(-6, 6)]])
        real = cv2.warpAffine(astronaut, m, astronaut.shape[1::-1], borderMode=cv2.BORDER_REFLECT)
        write_image(db / f"real_{k}.png", real)
        write_image(db / f"fake_{k}.png", cv2.GaussianBlur(real, (0, 0), 4))

    helps = _dffr(plugin, "train", "--help", cwd=tmp_path).stdout
    assert "TinyNet" in helps
    assert "Flat" in _dffr(plugin, "preprocess", "--help", cwd=tmp_path).stdout
    seed = _run(plugin, REPO / "deepfakes_facial_regions.py", "--help", cwd=tmp_path)
    assert seed.returncode == 0, seed.stderr
    assert "Flat" in seed.stdout  # the seed CLI's databases are the registry's

    r = _dffr(plugin, "preprocess", "--ddbb", "Flat", "--root", db, "--out", "cache",
              "--frames", "1", "--size", "64", cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "Flat: 16 video(s) processed" in r.stderr
    for region in ("eyes", "mouth"):
        r = _dffr(plugin, "train", "--detector", "tinynet", "--region", region, "--cache",
                  "cache", "--epochs", "1", "--batch", "4", "--input-size", "32",
                  "--from-scratch", cwd=tmp_path)  # fmt: skip
        assert r.returncode == 0, r.stderr
    assert (tmp_path / "models" / "Flat" / "TinyNet_Flat_eyes.pt").is_file()
    for split in ("test", "val"):
        r = _dffr(plugin, "score", "--cache", "cache", "--train-ddbb", "Flat", "--detectors",
                  "TinyNet", "--regions", "eyes,mouth", "--split", split, "--out", "s.parquet",
                  cwd=tmp_path)  # fmt: skip
        assert r.returncode == 0, r.stderr
    r = _dffr(plugin, "fuse", "--scores", "s.parquet", "--rule", "spread", "--subset",
              "eyes,mouth", "--out", "f.parquet", cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr
    fused = pd.read_parquet(tmp_path / "f.parquet")
    scores = pd.read_parquet(tmp_path / "s.parquet").pivot_table(
        index=["video", "split"], columns="region", values="score"
    )
    want = (scores["eyes"] - scores["mouth"]).abs()
    got = fused.set_index(["video", "split"])["score"].loc[want.index]
    assert np.allclose(got, want) and set(fused["region"]) == {"spread(eyes+mouth)"}
    # a plugin that cannot be imported is named, and the others still work
    assert "fusion rule plugin 'broken' (dffr_demo_plugin.missing:nothing) cannot be imported" in (
        r.stderr
    )
    # the rule also follows the models as their test faces are degraded
    r = _dffr(plugin, "robustness", "--scores-from", "s.parquet", "--cache", "cache", "--perturb",
              "blur", "--levels", "blur=0,2", "--fusion", "regions:spread", "--subset",
              "eyes,mouth", "--out", "robust", cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr
    table = pd.read_csv(tmp_path / "robust" / "robustness.csv")
    spread = table[table["region"] == "spread(eyes+mouth)"].set_index("level")
    assert list(spread.index) == [0, 2] and spread["fused"].all()
    test = fused[fused["split"] == "test"]
    assert spread.loc[0, "auc"] == pytest.approx(roc_auc_score(test["label"], test["score"]))


@pytest.mark.slow
def test_a_plugin_face_detector_and_landmark_backend_segment_from_the_command_line(
    plugin, tmp_path, astronaut
):
    from dffr.images import write_image
    from dffr.regions.masks import REGIONS

    for command in ("segment", "preprocess"):
        helps = _dffr(plugin, command, "--help", cwd=tmp_path).stdout
        assert "|meanshape]" in helps and "|widehog]" in helps, command
    write_image(tmp_path / "astronaut.png", astronaut)
    r = _dffr(plugin, "segment", "astronaut.png", "--out", "out", "--backend", "meanshape",
              "--face-detector", "widehog", cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        f"astronaut_{name}.png" for name in (*REGIONS, "overlay")
    )


@pytest.mark.slow
def test_the_contract_tests_check_a_plugins_entries_with_no_test_of_their_own(plugin, tmp_path):
    """The registries' contract tests, run where the plugin is installed, test its face
    detector and landmark backend, and skip its database, which has no example layout."""
    pytest_args = ["tests/test_contracts.py", "-k", "widehog or meanshape or Flat"]
    pytest_args += ["-p", "no:cacheprovider", "--basetemp", tmp_path / "inner"]
    r = _run(plugin, "-m", "pytest", *pytest_args, cwd=REPO)
    assert r.returncode == 0, r.stdout
    assert "2 passed, 1 skipped" in r.stdout, r.stdout
    assert "Flat is a plugin (dffr_demo_plugin.dataset)" in r.stdout, r.stdout
