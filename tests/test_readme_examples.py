"""The README's "Extending" examples, run as written there: each code block is saved
under the file name its first line gives, imported, and used the way the README says."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from .conftest import score_table

README = Path(__file__).resolve().parents[1] / "README.md"


def examples() -> dict[str, str]:
    """{file name: code} of the python blocks of the README's Extending section."""
    text = README.read_text()
    section = text.split("## Extending", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n# (\S+)\n(.*?)```", section, flags=re.S)
    return {name: code for name, code in blocks}


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("readme")
    out = {}
    for name, code in examples().items():
        path = folder / Path(name).name
        path.write_text(code)
        out[name] = path
    return out


def _import(path: Path):
    spec = importlib.util.spec_from_file_location(f"readme_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_readme_has_the_four_examples():
    assert list(examples()) == [
        "my_rules.py",
        "my_learned_rules.py",
        "detectors/networks/tiny.py",
        "datasets/adapters/flat.py",
    ]


def test_the_fusion_rules_fuse_and_the_learned_one_is_fitted_on_val(written):
    from dffr.fusion import fuse, load_rule

    labels = [0, 0, 0, 1, 1, 1]
    cols = {"eyes": [0.1, 0.2, 0.4, 0.6, 0.7, 0.9], "mouth": [0.2, 0.1, 0.3, 0.8, 0.6, 0.7]}
    table = score_table(cols, labels)
    fixed = fuse(table, "regions", f"{written['my_rules.py']}:geometric")
    expected = np.sqrt(np.array(cols["eyes"]) * np.array(cols["mouth"]))
    assert np.allclose(fixed.sort_values("video")["score"], expected)
    rule = f"{written['my_learned_rules.py']}:boosted"
    assert load_rule(rule).learns
    both = __import__("pandas").concat([table, score_table(cols, labels, split="val")])
    fused = fuse(both, "regions", rule)
    assert set(fused["split"]) == {"test", "val"} and fused["score"].between(0, 1).all()


def test_the_detector_trains_scores_and_reloads(written, cache, tmp_path):
    from dffr.detectors.base import DETECTORS, DetectorConfig
    from dffr.detectors.model_files import load_detector
    from dffr.detectors.training import train

    _import(written["detectors/networks/tiny.py"])
    assert "Tiny" in DETECTORS
    cfg = DetectorConfig("Tiny", region="mouth", input_size=32, epochs=1, batch=4)
    result = train(cfg, cache, tmp_path)
    images = np.random.default_rng(0).integers(0, 256, (3, 40, 40, 3), dtype=np.uint8)
    p = result.detector.predict(images)
    assert p.shape == (3,) and ((p >= 0) & (p <= 1)).all()
    assert np.array_equal(load_detector(result.weights, "cpu").predict(images), p)


def test_the_database_and_its_option_reach_preprocess(written, tmp_path, place):
    from dffr.datasets.base import get_dataset

    _import(written["datasets/adapters/flat.py"])
    root = tmp_path / "flat"
    place(root, "real_0.mp4", "real_1.mp4", "fake_2.mp4", "fake_3.mp4")
    ds = get_dataset("Flat", root, test_every="2")
    assert [(it.video, it.label, it.split) for it in ds.items()] == [
        ("fake_2.mp4", 1, "test"),
        ("fake_3.mp4", 1, "train"),
        ("real_0.mp4", 0, "test"),
        ("real_1.mp4", 0, "train"),
    ]
    # the command's options are made from the registry (when dffr.cli is first imported:
    # here, with Flat registered, the same way)
    import click

    from dffr.datasets.commands import dataset_options

    command = dataset_options(click.command()(lambda **kw: print(kw)))
    r = CliRunner().invoke(command, ["--test-every", "3", "--help"])
    assert "--test-every" in r.output and "Flat: every n-th clip" in r.output
    r = CliRunner().invoke(command, ["--test-every", "3"])
    assert "'test_every': '3'" in r.output
