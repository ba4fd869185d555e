"""The README's "Extending" examples, run as written there: each code block is saved
under the file name its first line gives and used the way the README says, through the
Python API and through the `dffr` command line, as a newcomer would (issue 14)."""

from __future__ import annotations

import importlib
import json
import re
import sys
from pathlib import Path

import click
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from dffr.cli import main
from dffr.errors import DffrError

from .conftest import models_study, score_table

README = Path(__file__).resolve().parents[1] / "README.md"


def section() -> str:
    text = README.read_text()
    return text.split("## Extending", 1)[1].split("\n## ", 1)[0]


def examples() -> dict[str, str]:
    """{file name: code} of the python blocks of the README's Extending section."""
    blocks = re.findall(r"```python\n# (\S+)\n(.*?)```", section(), flags=re.S)
    return {name: code for name, code in blocks}


def dffr(*args):
    return CliRunner().invoke(main, ["--device", "cpu", *map(str, args)])


def choices(command: str, option: str) -> list[str]:
    """The choices `dffr COMMAND --help` lists for OPTION."""
    r = dffr(command, "--help")
    assert r.exit_code == 0, r.output
    return re.search(rf"{option} \[([^\]]+)\]", r.output).group(1).split("|")


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> dict[str, Path]:
    """The fusion rules' files, which may be anywhere: here, a temporary folder."""
    folder = tmp_path_factory.mktemp("readme")
    out = {}
    for name, code in examples().items():
        path = folder / Path(name).name
        path.write_text(code)
        out[name] = path
    return out


@pytest.fixture
def installed(monkeypatch, tmp_path):
    """install(name, registry): the README's file put in its package's folder, as the
    README says (a temporary folder added to the package's path, so the repository is
    untouched), imported by the registry's own scan. Once the test ends the registry, the
    package and sys.modules are as before: the examples never reach other tests (the
    contract tests check every registered adapter and detector)."""
    added = []

    def install(name: str, registry):
        # the folder the README names is the registry's package
        assert registry.package == "dffr." + Path(name).parent.as_posix().replace("/", ".")
        registry.names()  # the built-in ones, imported before the path changes
        package = importlib.import_module(registry.package)
        folder = tmp_path / "installed" / Path(name).parent
        folder.mkdir(parents=True, exist_ok=True)
        (folder / Path(name).name).write_text(examples()[name])
        monkeypatch.setattr(package, "__path__", [*package.__path__, str(folder)])
        for attr in ("_items", "_names"):
            monkeypatch.setattr(registry, attr, dict(getattr(registry, attr)))
        monkeypatch.setattr(registry, "_loaded", False)
        added.append((package, Path(name).stem))
        registry.names()
        return sys.modules[f"{package.__name__}.{Path(name).stem}"]

    yield install
    for package, stem in added:
        sys.modules.pop(f"{package.__name__}.{stem}", None)
        if hasattr(package, stem):
            delattr(package, stem)


def test_the_readme_has_the_four_kinds_and_counts_their_lines():
    """The table's figures are the examples' own: one file each, and its non-blank lines
    without the first comment (the file's name)."""
    found = examples()
    assert list(found) == [
        "my_rules.py",
        "my_learned_rules.py",
        "detectors/networks/tiny.py",
        "datasets/adapters/flat.py",
        "regions/backends/dlib_flip.py",
    ]
    table = re.findall(r"^\| a [^|]+\| (\d+)[^|]*\| (\d+) \|", section(), flags=re.M)
    lines = [sum(1 for line in code.splitlines() if line.strip()) for code in found.values()]
    assert [(int(files), int(n)) for files, n in table] == [(1, n) for n in lines]


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
    both = pd.concat([table, score_table(cols, labels, split="val")])
    fused = fuse(both, "regions", rule)
    assert set(fused["split"]) == {"test", "val"} and fused["score"].between(0, 1).all()


@pytest.mark.slow
def test_the_fusion_rules_in_experiment_fuse_and_robustness(written, cache, models, tmp_path):
    """Both rules by their files' paths, in the three commands that fuse; the tiny models
    are reused, so the experiment only scores (and fits the learned rule on val)."""
    rules = [f"{written['my_rules.py']}:geometric", f"{written['my_learned_rules.py']}:boosted"]
    fused_names = {"geometric(eyes+mouth)", "boosted(eyes+mouth)"}
    models_study(tmp_path / "readme.yaml", cache, models, rules, "readme")
    r = dffr("experiment", tmp_path / "readme.yaml", "--out", tmp_path / "exp")
    assert r.exit_code == 0, r.output
    intra = pd.read_csv(tmp_path / "exp" / "intra.csv").set_index("region")["CelebDF"]
    assert intra.loc[sorted(fused_names)].between(0, 100).all()

    scores = tmp_path / "exp" / "scores.parquet"
    r = dffr("fuse", "--scores", scores, "--rule", rules[0], "--subset", "eyes,mouth",
             "--out", tmp_path / "g.parquet")  # fmt: skip
    assert r.exit_code == 0, r.output
    wide = pd.read_parquet(scores).pivot_table(
        index=["video", "frame", "split"], columns="region", values="score"
    )
    got = pd.read_parquet(tmp_path / "g.parquet").set_index(["video", "frame", "split"])
    assert np.allclose(got["score"], np.sqrt(wide["eyes"] * wide["mouth"]).loc[got.index])
    r = dffr("fuse", "--scores", scores, "--rule", rules[1], "--subset", "eyes,mouth",
             "--out", tmp_path / "b.parquet")  # fmt: skip
    assert r.exit_code == 0, r.output
    boosted = pd.read_parquet(tmp_path / "b.parquet")
    assert set(boosted["region"]) == {"boosted(eyes+mouth)"}
    assert boosted["score"].between(0, 1).all()

    r = dffr("robustness", "--scores-from", scores, "--cache", cache, "--models", models,
             "--perturb", "noise", "--levels", "noise=0,10", "--fusion", f"regions:{rules[0]}",
             "--fusion", f"regions:{rules[1]}", "--subset", "eyes,mouth",
             "--out", tmp_path / "rb")  # fmt: skip
    assert r.exit_code == 0, r.output
    table = pd.read_csv(tmp_path / "rb" / "robustness.csv")
    mine = table[table["fused"]]
    assert set(mine["region"]) == fused_names and len(mine) == 4  # two rules, two levels


def test_the_detector_trains_scores_and_reloads(installed, cache, tmp_path):
    from dffr.detectors.base import DETECTORS, DetectorConfig
    from dffr.detectors.model_files import load_detector
    from dffr.detectors.training import train

    installed("detectors/networks/tiny.py", DETECTORS)
    cfg = DetectorConfig("Tiny", region="mouth", input_size=32, epochs=1, batch=4)
    cfg.options = {"width": 16}
    result = train(cfg, cache, tmp_path)
    assert result.detector.model[0].out_channels == 16  # its own option, typed and used
    with pytest.raises(DffrError, match="Tiny has no option 'trunk'"):
        DETECTORS.get("Tiny").parse_options({"trunk": "resnet18"})
    images = np.random.default_rng(0).integers(0, 256, (3, 40, 40, 3), dtype=np.uint8)
    p = result.detector.predict(images)
    assert p.shape == (3,) and ((p >= 0) & (p <= 1)).all()
    assert np.array_equal(load_detector(result.weights, "cpu").predict(images), p)


def test_the_detector_in_train_and_score(installed, cache, tmp_path, monkeypatch):
    """Put in detectors/networks/, `--detector Tiny` is a choice and trains with its own
    option `--width`; `dffr score` then finds and scores its model."""
    from dffr.datasets.cache import read_index
    from dffr.detectors.base import DETECTORS
    from dffr.detectors.commands import detector_options, train_cmd

    assert "Tiny" not in choices("train", "--detector")
    installed("detectors/networks/tiny.py", DETECTORS)
    assert "Tiny" in choices("train", "--detector")
    models = tmp_path / "models"
    # `dffr train` makes its option flags when dffr.cli is imported, which a user's
    # process does with tiny.py already in place; here the file came later
    have = {p.name for p in train_cmd.params}
    extra = [p for p in detector_options(click.Command("x")).params if p.name not in have]
    monkeypatch.setattr(train_cmd, "params", [*train_cmd.params, *extra])
    assert "channels of its one convolution (Tiny" in dffr("train", "--help").output
    r = dffr("train", "--detector", "DSP-FWA", "--region", "mouth", "--cache", cache,
             "--width", "12", "--out", models)  # fmt: skip
    assert r.exit_code == 2 and "DSP-FWA has no option 'width'" in r.output
    r = dffr("train", "--detector", "Tiny", "--region", "mouth", "--cache", cache, "--ddbb",
             "Mine", "--epochs", "1", "--batch", "4", "--input-size", "32", "--width", "12",
             "--out", models)  # fmt: skip
    assert r.exit_code == 0, r.output
    assert (models / "Mine" / "Tiny_Mine_mouth.pt").is_file()
    side = json.loads((models / "Mine" / "Tiny_Mine_mouth.json").read_text())
    assert side["config"]["options"] == {"fake_index": 0, "width": 12}
    r = dffr("score", "--cache", cache, "--models", models, "--train-ddbb", "Mine",
             "--detectors", "Tiny", "--regions", "mouth",
             "--out", tmp_path / "s.parquet")  # fmt: skip
    assert r.exit_code == 0, r.output
    scores = pd.read_parquet(tmp_path / "s.parquet")
    assert set(scores["detector"]) == {"Tiny"} and scores["score"].between(0, 1).all()
    assert len(scores) == len(read_index(cache, "test"))


def test_the_database_and_its_option_in_preprocess(installed, tmp_path, place, monkeypatch):
    """Put in datasets/adapters/, Flat is a `--ddbb` choice, its option `--test-every`
    reaches it, and `dffr preprocess` caches its videos in the splits it gives."""
    from dffr.datasets.base import DATASETS, get_dataset
    from dffr.datasets.cache import read_index
    from dffr.datasets.commands import dataset_options, preprocess_cmd

    installed("datasets/adapters/flat.py", DATASETS)
    root = tmp_path / "flat"
    place(root, "real_0.mp4", "real_1.mp4", "real_2.mp4", "fake_3.mp4", "fake_4.mp4")
    splits = {
        "real_0.mp4": "test",
        "real_1.mp4": "val",
        "real_2.mp4": "train",
        "fake_3.mp4": "test",
        "fake_4.mp4": "val",
    }
    # its example layout is what the contract tests open (tests/test_contracts.py)
    options, labels = DATASETS.get("Flat").example(tmp_path / "example")
    listed = get_dataset("Flat", tmp_path / "example", **options).items()
    assert {it.video: it.label for it in listed} == labels
    assert {it.split for it in listed} == {"train", "val", "test"}
    ds = get_dataset("Flat", root, test_every="3")
    assert {it.video: (it.label, it.split) for it in ds.items()} == {
        v: (int(v.startswith("fake")), s) for v, s in splits.items()
    }
    # `dffr preprocess` takes the databases' options when dffr.cli is imported, which a
    # user's process does with flat.py already in datasets/adapters/; here the file came
    # later, so its options are added as that import adds them
    have = {p.name for p in preprocess_cmd.params}
    extra = [p for p in dataset_options(click.Command("x")).params if p.name not in have]
    monkeypatch.setattr(preprocess_cmd, "params", [*preprocess_cmd.params, *extra])
    assert "Flat" in choices("preprocess", "--ddbb")
    assert "Flat: every n-th clip" in dffr("preprocess", "--help").output
    r = dffr("preprocess", "--ddbb", "Flat", "--root", root, "--out", tmp_path / "cache",
             "--test-every", "3", "--frames", "2", "--size", "64")  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "Flat: 5 video(s) processed" in r.output
    index = read_index(tmp_path / "cache")
    assert index.groupby("video")["split"].first().to_dict() == splits


def test_the_landmark_backend_in_segment_landmarks_and_preprocess(installed, astronaut, tmp_path):
    """Put in regions/backends/, dlib-flip is a `--backend` choice of every command that
    has one, segments the astronaut into the five regions, and its points are dlib's to
    within 2 px: a wrong renumbering of the mirrored points would put one eye's corners on
    the other eye, tens of pixels away."""
    from dffr.images import read_image, write_image
    from dffr.regions.landmarks import BACKENDS
    from dffr.regions.masks import REGIONS

    module = installed("regions/backends/dlib_flip.py", BACKENDS)
    assert (module.MIRROR[module.MIRROR] == np.arange(68)).all()  # mirroring twice: identity
    for command in ("segment", "landmarks", "preprocess"):
        assert "dlib-flip" in choices(command, "--backend")
    photo = tmp_path / "astronaut.png"
    write_image(photo, astronaut)
    r = dffr("segment", photo, "--out", tmp_path / "out", "--backend", "dlib-flip")
    assert r.exit_code == 0, r.output
    for region in REGIONS:
        image = read_image(tmp_path / "out" / f"astronaut_{region}.png")
        assert image.shape == (200, 200, 3) and image.any()
    points = {}
    for backend in ("dlib-flip", "dlib"):
        r = dffr("landmarks", photo, "--json", "--backend", backend)
        assert r.exit_code == 0, r.output
        points[backend] = np.array(json.loads(r.stdout)["faces"][0]["landmarks"])
    apart = np.linalg.norm(points["dlib-flip"] - points["dlib"], axis=1)
    assert 0 < apart.max() < 2  # averaged with the mirrored face's points, not dlib's alone
