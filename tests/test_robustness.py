"""`dffr robustness` on a tiny cache and tiny models, test-time augmentation in `dffr
score`, and training-time augmentation hooked into `dffr train`."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from sklearn.metrics import roc_auc_score

from dffr.cli import main
from dffr.datasets.cache import read_index
from dffr.detectors.base import DetectorConfig
from dffr.detectors.data import Augmented, RegionData
from dffr.detectors.model_files import load_detector
from dffr.detectors.training import train
from dffr.errors import DffrError
from dffr.experiments.metrics import evaluate
from dffr.experiments.robustness import robustness
from dffr.fusion import fuse
from dffr.fusion.fuse import side_by_side
from dffr.fusion.rules import load_rule
from dffr.images import read_image
from dffr.regions import cut_regions
from dffr.scoring.scores import SCORE_COLUMNS, predict_views, score
from dffr.transforms.perturbations import hflip
from dffr.transforms.tta import tta_views

PAIR = ["eyes", "mouth"]
FUSION = [
    {"over": "regions", "rule": "mean", "subset": PAIR},
    {"over": "regions", "rule": "logistic", "subset": PAIR},
]
ROW = ["video", "frame", "detector", "region"]


@pytest.fixture(scope="module")
def scored(cache, models, tmp_path_factory):
    """Unperturbed test and val scores of the two tiny models, on the cache they were
    trained on (named CelebDF, as the models)."""
    out = tmp_path_factory.mktemp("scores") / "scores.parquet"
    for split in ("test", "val"):
        score(
            cache,
            models,
            "CelebDF",
            out,
            ("DSP-FWA",),
            PAIR,
            split,
            progress=False,
            test_ddbb="CelebDF",
        )
    return out


def _model(models, region):
    return load_detector(models / "CelebDF" / f"DSP-FWA_CelebDF_{region}.pt", "cpu")


@pytest.mark.slow
def test_sweep_rows_level_zero_tables_plots_and_reuse(cache, models, scored, tmp_path, monkeypatch):
    out = tmp_path / "rob"
    levels = {"jpeg": [0, 50], "rotate": [0, 90]}
    rep = robustness(scored, cache, models, levels, out, FUSION, progress=False)
    assert rep.scored == [("jpeg", 0), ("jpeg", 50), ("rotate", 0), ("rotate", 90)]
    assert rep.missing == [] and rep.mismatch == 0.0
    df = pd.read_parquet(out / "perturbed.parquet")
    assert list(df.columns) == ["perturbation", "level", *SCORE_COLUMNS]
    assert len(df) == 2 * 2 * 6 * 2  # perturbations x levels x test frames x models
    assert set(df["split"]) == {"test"} and set(df["tta"]) == {""}
    base = pd.read_parquet(scored)
    test = base[base["split"] == "test"]
    # level 0 reproduces the unperturbed scores exactly, for every perturbation
    for name in levels:
        zero = df[(df["perturbation"] == name) & (df["level"] == 0)]
        both = zero.merge(test, on=ROW, suffixes=("", "_file"))
        assert len(both) == 12 and np.array_equal(both["score"], both["score_file"])
    jpeg = df[(df["perturbation"] == "jpeg") & (df["level"] == 50)]
    assert not np.allclose(jpeg.merge(test, on=ROW)["score_x"], jpeg.merge(test, on=ROW)["score_y"])
    # rotate 90 = the model on regions cut from the turned crop with the turned landmarks
    model = _model(models, "mouth")
    index = read_index(cache, "test")
    regions = []
    for _, row in index.iterrows():
        crop = read_image(cache / row["face"])
        lm = np.c_[row["landmarks"][:, 1], crop.shape[1] - 1 - row["landmarks"][:, 0]]
        regions.append(cut_regions(np.rot90(crop), lm, ("mouth",))["mouth"])
    expected = index[["video", "frame"]].assign(expected=model.predict(np.stack(regions)))
    got = df[(df["perturbation"] == "rotate") & (df["level"] == 90) & (df["region"] == "mouth")]
    got = got.merge(expected, on=["video", "frame"])
    assert len(got) == 6 and np.allclose(got["score"], got["expected"], atol=1e-5)

    table = pd.read_csv(out / "robustness.csv")
    assert {"perturbation", "level", "detector", "region", "auc", "eer", "n"} <= set(table)
    assert len(table) == 2 * 2 * 4  # (2 models + 2 fused) per (perturbation, level)
    assert set(table["region"]) == {*PAIR, "mean(eyes+mouth)", "logistic(eyes+mouth)"}
    # level 0 = the unperturbed evaluation, fused results included
    fused = [fuse(base, f["over"], f["rule"], f["subset"]) for f in FUSION]
    clean = pd.concat([test, *(f[f["split"] == "test"] for f in fused)])
    clean = evaluate(clean, n_bootstrap=0).set_index("region")["auc"]
    zero = table[(table["perturbation"] == "jpeg") & (table["level"] == 0)].set_index("region")
    assert np.allclose(zero["auc"], clean[zero.index], equal_nan=True)
    # the learned fusion is fitted on the unperturbed val scores, applied to perturbed ones
    wide_val, _ = side_by_side(base[base["split"] == "val"], "regions", PAIR)
    rule = load_rule("logistic")
    model = rule.fitted(wide_val, wide_val.index.get_level_values("label").to_numpy())
    wide, _ = side_by_side(jpeg[SCORE_COLUMNS], "regions", PAIR)
    want = roc_auc_score(wide.index.get_level_values("label"), rule.apply(wide, model))
    row = table[(table["perturbation"] == "jpeg") & (table["level"] == 50)]
    assert row.set_index("region").loc["logistic(eyes+mouth)", "auc"] == pytest.approx(want)
    md = (out / "robustness.md").read_text()
    assert "## jpeg" in md and "## rotate" in md and "logistic(eyes+mouth)" in md
    for name in levels:
        assert (out / f"auc_{name}.png").stat().st_size > 5000

    def refuse(*a, **k):
        raise AssertionError("a second run must not load a model")

    before = (out / "perturbed.parquet").read_bytes()
    with monkeypatch.context() as m:
        m.setattr("dffr.experiments.robustness.load_models", refuse)
        again = robustness(scored, cache, models, levels, out, FUSION, progress=False)
    assert again.scored == [] and len(again.skipped) == 4
    assert (out / "perturbed.parquet").read_bytes() == before
    pd.testing.assert_frame_equal(pd.read_csv(out / "robustness.csv"), table)
    more = robustness(scored, cache, models, {"jpeg": [0, 20, 50]}, out, progress=False)
    assert more.scored == [("jpeg", 20)] and more.skipped == [("jpeg", 0), ("jpeg", 50)]
    assert len(pd.read_parquet(out / "perturbed.parquet")) == 48 + 12


def _cli(*args):
    return CliRunner().invoke(main, ["--device", "cpu", "robustness", *map(str, args)])


def test_robustness_command_and_its_errors(cache, models, scored, tmp_path):
    common = ["--scores-from", scored, "--cache", cache, "--models", models]
    out = tmp_path / "o"
    r = _cli(
        *common,
        "--perturb",
        "noise",
        "--levels",
        "noise=0,10",
        "--fusion",
        "regions:mean",
        "--subset",
        "eyes,mouth",
        "--out",
        out,
    )
    assert r.exit_code == 0, r.output
    assert "## noise" in r.output and "mean(eyes+mouth)" in r.output
    assert (out / "auc_noise.png").is_file()
    noisy = pd.read_parquet(out / "perturbed.parquet")
    assert sorted(set(noisy["level"])) == [0, 10] and len(noisy) == 24
    for bad, message in [
        (["--perturb", "noise", "--levels", "blur=1"], "not among the perturbations"),
        (["--levels", "jpeg=abc"], "NAME=L1,L2"),
        (["--levels", "jpeg=100"], "jpeg level 100 is invalid"),
        (["--perturb", "fog"], "unknown perturbation 'fog'"),
        (["--fusion", "sideways:mean"], "OVER:RULE"),
    ]:
        r = _cli(*common, *bad, "--out", tmp_path / "x")
        assert r.exit_code == 2 and message in r.output, r.output
    test_only = tmp_path / "test_only.parquet"
    base = pd.read_parquet(scored)
    base[base["split"] == "test"].to_parquet(test_only)
    r = _cli(
        "--scores-from",
        test_only,
        "--cache",
        cache,
        "--models",
        models,
        "--perturb",
        "blur",
        "--fusion",
        "regions:logistic",
        "--out",
        tmp_path / "y",
    )
    assert r.exit_code == 1 and "holds no val rows" in r.output
    assert "dffr score --split val" in r.output


@pytest.mark.slow
def test_tta_identity_equals_plain_and_hflip_averages(cache, models, scored, tmp_path):
    base = pd.read_parquet(scored)
    plain = base[base["split"] == "test"]
    ident = tmp_path / "rotate0.parquet"
    score(cache, models, "CelebDF", ident, ("DSP-FWA",), ["eyes"], tta=["rotate0"], progress=False)
    same = pd.read_parquet(ident).merge(plain, on=ROW)
    assert len(same) == 6 and np.array_equal(same["score_x"], same["score_y"])
    assert set(same["tta_x"]) == {"rotate0"}
    flipped = tmp_path / "hflip.parquet"
    score(cache, models, "CelebDF", flipped, ("DSP-FWA",), ["eyes"], tta=["hflip"], progress=False)
    got = pd.read_parquet(flipped)
    assert set(got["tta"]) == {"hflip"}
    model = _model(models, "eyes")
    data = RegionData.from_cache(cache, "test", "eyes")
    images = data.images(range(len(data)))
    mirrored = np.stack([hflip(im) for im in images])
    mean = (model.predict(images).astype(np.float64) + model.predict(mirrored)) / 2
    want = data.rows[["video", "frame"]].assign(want=mean)
    got = got.merge(want, on=["video", "frame"])
    assert np.allclose(got["score"], got["want"], atol=1e-6)
    alone = got.merge(plain, on=ROW)
    assert not np.array_equal(alone["score_x"], alone["score_y"])  # the mirror did count
    # a mirror-symmetric image: the flipped view changes nothing
    symmetric = np.concatenate([images[:, :, :32], images[:, :, :32][:, :, ::-1]], axis=2)
    assert np.array_equal(
        predict_views(model, symmetric, tta_views(["hflip"])), model.predict(symmetric)
    )
    # one scores file never mixes TTA settings
    with pytest.raises(DffrError, match="without TTA; these would be with TTA hflip"):
        score(cache, models, "CelebDF", scored, ("DSP-FWA",), ["eyes"], tta=["hflip"])
    r = CliRunner().invoke(
        main,
        [
            "score",
            "--cache",
            str(cache),
            "--models",
            str(models),
            "--train-ddbb",
            "CelebDF",
            "--tta",
            "vflip",
            "--out",
            str(tmp_path / "z.parquet"),
        ],
    )
    assert r.exit_code == 2 and "unknown TTA view 'vflip'" in r.output
    # robustness re-scores with the scores file's own TTA
    rob = robustness(flipped, cache, models, {"blur": [0]}, tmp_path / "rob", progress=False)
    assert rob.mismatch == 0.0
    assert set(pd.read_parquet(tmp_path / "rob" / "perturbed.parquet")["tta"]) == {"hflip"}


class _Recorder:
    """A stand-in detector that keeps the data `fit` gets."""

    name, normalisation, val_auc, init = "DSP-FWA", "imagenet", None, {"kind": "random"}

    def fit(self, train, val, log, checkpoint=None, keep_checkpoint=False):
        self.train, self.val = train, val

    def save(self, path):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")

    def predict(self, images, batch=32):  # for the threshold chosen on val after fit
        return np.full(len(images), 0.5)


def test_training_augments_the_training_data_only(cache, tmp_path, monkeypatch):
    stub = _Recorder()
    monkeypatch.setattr("dffr.detectors.training.build_detector", lambda *a, **k: stub)
    cfg = DetectorConfig("DSP-FWA", region="eyes", augment=["jpeg", "flip"], augment_p=1.0)
    result = train(cfg, cache, tmp_path)
    assert isinstance(stub.train, Augmented) and stub.train.data is result.train_data
    assert stub.val is result.val_data and isinstance(stub.val, RegionData)
    b, plain_b = (next(d.batches(4, True, epoch=1)) for d in (stub.train, result.train_data))
    assert np.array_equal(b.labels, plain_b.labels) and not np.array_equal(b.images, plain_b.images)
    meta = json.loads(result.weights.with_suffix(".json").read_text())
    assert meta["config"]["augment"] == ["jpeg", "flip"] and meta["config"]["augment_p"] == 1.0
    plain = train(DetectorConfig("DSP-FWA", region="eyes"), cache, tmp_path / "plain")
    assert stub.train is plain.train_data  # nothing asked, nothing wrapped
    r = CliRunner().invoke(
        main,
        [
            "train",
            "--detector",
            "DSP-FWA",
            "--region",
            "eyes",
            "--cache",
            str(cache),
            "--augment",
            "jpeg,sharpen",
            "--out",
            str(tmp_path / "m"),
        ],
    )
    assert r.exit_code == 2 and "unknown augmentation(s) ['sharpen']" in r.output


@pytest.mark.slow
def test_resume_with_augmentation_continues_to_the_same_model(cache, tmp_path):
    def config(epochs):
        return DetectorConfig(
            "DSP-FWA",
            input_size=64,
            epochs=epochs,
            batch=4,
            pretrained=False,
            augment=["flip", "rotate", "blur", "color", "jpeg"],
            augment_p=0.5,
        )

    straight = train(config(2), cache, tmp_path / "a")
    train(config(1), cache, tmp_path / "b", keep_checkpoint=True)
    resumed = train(config(2), cache, tmp_path / "b", resume=True)
    a, b = straight.detector.model.state_dict(), resumed.detector.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_experiment_yaml_passes_augmentation_and_tta_on(tmp_path, monkeypatch):
    from dffr.experiments.runner import Experiment, run

    spec = tmp_path / "e.yaml"
    spec.write_text(
        "name: x\ncaches: {A: c}\ntrain: [A]\ntest: [A]\ndetectors: [DSP-FWA]\n"
        "regions: [eyes]\ntraining: {augment: [jpeg, flip], augment_p: 0.3, pretrained: false}\n"
        "tta: [hflip, rotate10]\n"
    )
    seen = {}

    class Stop(Exception):
        pass

    def spy_score(*args, **kwargs):
        seen["tta"] = kwargs["tta"]
        raise Stop

    monkeypatch.setattr("dffr.experiments.runner.preflight", lambda exp: None)  # no cache
    monkeypatch.setattr("dffr.detectors.training.train", lambda cfg, *a, **k: seen.update(cfg=cfg))
    monkeypatch.setattr("dffr.scoring.scores.score", spy_score)
    with pytest.raises(Stop):
        run(Experiment.load(spec), tmp_path / "out")
    assert seen["cfg"].augment == ["jpeg", "flip"] and seen["cfg"].augment_p == 0.3
    assert seen["tta"] == ["hflip", "rotate10"]
