"""What every registry entry promises, tested over the registries themselves (as timm
tests every model): a detector or fusion rule added in one file (or a plugin) is
checked here without a test of its own (issue 14)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from dffr.detectors.base import DETECTORS, DetectorConfig, build_detector
from dffr.detectors.model_files import load_detector, model_file_problem
from dffr.fusion import FUSION, fuse, load_rule

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


def test_every_database_option_is_a_keyword_of_its_adapter_and_a_command_option():
    import inspect

    from click.testing import CliRunner

    from dffr.cli import main
    from dffr.datasets.base import DATASETS

    help_text = CliRunner().invoke(main, ["preprocess", "--help"]).output
    for name in DATASETS.names():
        cls = DATASETS.get(name)
        keywords = set(inspect.signature(cls.__init__).parameters) - {"self", "root"}
        assert {o.name for o in cls.option_specs} == keywords, name
        for option in cls.option_specs:
            flag = f"--{option.name.replace('_', '-')}"
            assert flag in help_text and f"{name}:" in help_text
