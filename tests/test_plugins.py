"""An installed plugin package adds a detector, a database and a fusion rule, and they
appear in every command (issue 14): a package made in the test, with its dist-info and
entry points on PYTHONPATH, driven through `python -m dffr` in fresh processes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

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

ENTRY_POINTS = """
[dffr.detectors]
tinynet = dffr_demo_plugin.detector

[dffr.datasets]
Flat = dffr_demo_plugin.dataset:Flat

[dffr.fusion]
spread = dffr_demo_plugin.rules:spread
broken = dffr_demo_plugin.missing:nothing
"""


@pytest.fixture(scope="module")
def plugin(tmp_path_factory):
    site = tmp_path_factory.mktemp("site")
    pkg = site / "dffr_demo_plugin"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for name, text in (("detector", DETECTOR), ("dataset", DATASET), ("rules", RULES)):
        (pkg / f"{name}.py").write_text(textwrap.dedent(text))
    info = site / "dffr_demo_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: dffr-demo-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    return site


def _dffr(plugin, *args, cwd):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin), *sys.path])}
    return subprocess.run(
        [sys.executable, "-m", "dffr", "--device", "cpu", *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


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
    seed = Path(__file__).resolve().parents[1] / "deepfakes_facial_regions.py"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin), *sys.path])}
    seed_help = subprocess.run(
        [sys.executable, seed, "--help"], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert "Flat" in seed_help  # the seed CLI's databases are the registry's

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
