"""The experiment runner on a tiny cache: tables with the expected rows and columns,
ROC plots, a second run that reuses every model and score, and a model file cut off by
a killed run set aside and trained again from its checkpoint."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
import yaml
from click.testing import CliRunner

from dffr.cli import main
from dffr.detectors.base import DetectorConfig
from dffr.detectors.training import train
from dffr.experiments.runner import Experiment


@pytest.mark.slow
def test_experiment_tables_and_reuse(cache, tmp_path, monkeypatch):
    spec = {
        "name": "tiny",
        "caches": {"A": str(cache), "B": str(cache)},
        "models": str(tmp_path / "models"),
        "train": ["A", "B"],
        "test": ["A", "B"],
        "detectors": ["DSP-FWA"],
        "regions": ["eyes", "mouth"],
        "training": {"epochs": 1, "batch": 4, "input_size": 64, "pretrained": False},
        "overrides": {"dsp-fwa": {"input_size": 72}, "Capsule": {"input_size": 99}},
        "fusion": [
            {"over": "regions", "rule": "mean", "subset": ["eyes", "mouth"]},
            {"over": "regions", "rule": "logistic", "subset": ["eyes", "mouth"]},
        ],
        "bootstrap": 20,
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(spec))
    out = tmp_path / "results"
    r = CliRunner().invoke(main, ["--device", "cpu", "experiment", str(path), "--out", str(out)])
    assert r.exit_code == 0, r.output
    intra = pd.read_csv(out / "intra.csv")
    assert list(intra.columns) == ["detector", "region", "A", "B"]
    assert set(intra["region"]) == {"eyes", "mouth", "mean(eyes+mouth)", "logistic(eyes+mouth)"}
    inter = pd.read_csv(out / "inter.csv")
    assert set(inter["train_ddbb"]) == {"A", "B"} and len(inter) == 8
    assert "A" in inter.columns and "B" in inter.columns
    assert (out / "intra.md").read_text().startswith("tiny: intra-database AUC (%)")
    assert "\\begin{tabular}" in (out / "intra.tex").read_text()
    assert (out / "roc_A_to_B.png").stat().st_size > 1000
    assert "tiny: intra-database AUC" in r.output
    sidecar = json.loads((tmp_path / "models" / "A" / "DSP-FWA_A_eyes.json").read_text())
    assert sidecar["input_size"] == 72  # the detector's own override, matched by name
    assert sidecar["init"] == {"kind": "random"}
    metrics = pd.read_csv(out / "metrics.csv")
    assert set(metrics["init"]) == {"random"}  # fused rows too: from their inputs
    scores = pd.read_parquet(out / "scores.parquet")
    assert set(scores["split"]) == {"test", "val"}  # val scored for the learned fusion
    assert len(scores[scores["split"] == "val"]["train_ddbb"].unique()) == 2

    def refuse(*a, **k):
        raise AssertionError("a second run must not train again")

    monkeypatch.setattr("dffr.detectors.training.train", refuse)
    before = (out / "scores.parquet").read_bytes()
    r2 = CliRunner().invoke(main, ["experiment", str(path), "--out", str(out)])
    assert r2.exit_code == 0, r2.output
    assert (out / "scores.parquet").read_bytes() == before  # nothing re-scored
    pd.testing.assert_frame_equal(pd.read_csv(out / "intra.csv"), intra)


@pytest.mark.slow
def test_experiment_resumes_a_model_a_killed_run_cut_off(cache, tmp_path):
    models = tmp_path / "models"
    settings = {"batch": 4, "input_size": 64, "pretrained": False}
    first = train(
        DetectorConfig("DSP-FWA", region="eyes", ddbb="A", epochs=1, **settings),
        cache,
        models,
        keep_checkpoint=True,
    )
    # killed while writing the model: a truncated file, its checkpoint intact beside it
    first.weights.write_bytes(first.weights.read_bytes()[:1000])
    ckpt = models / "A" / "checkpoints" / "DSP-FWA_A_eyes.ckpt.pt"
    state = torch.load(ckpt, weights_only=True)
    state["log"][0]["train_loss"] = 123.0  # marks the epoch the killed run did
    torch.save(state, ckpt)
    spec = {
        "name": "cut",
        "caches": {"A": str(cache)},
        "models": str(models),
        "train": ["A"],
        "test": ["A"],
        "detectors": ["DSP-FWA"],
        "regions": ["eyes"],
        "training": {"epochs": 2, **settings},
    }
    path = tmp_path / "cut.yaml"
    path.write_text(yaml.safe_dump(spec))
    with pytest.warns(UserWarning) as said:
        r = CliRunner().invoke(main, ["experiment", str(path), "--out", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    note = " ".join(str(w.message) for w in said)
    assert f"{first.weights}: does not load (not a loadable PyTorch weights file" in note
    assert "moved to DSP-FWA_A_eyes.pt.unreadable and trained again from its checkpoint" in note
    assert (models / "A" / "DSP-FWA_A_eyes.pt.unreadable").stat().st_size == 1000
    log = pd.read_csv(first.weights.with_suffix(".log.csv"))
    assert list(log["epoch"]) == [1, 2] and log["train_loss"][0] == 123.0
    assert first.weights.is_file() and not ckpt.parent.exists()


def test_experiment_spec_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ncaches: {A: c}\ntrain: [A]\ntest: [B]\n")
    with pytest.raises(Exception, match="no cache given for \\['B'\\]"):
        Experiment.load(bad)
    bad.write_text("name: x\ncaches: {}\ntrain: []\ntest: []\ntypo: 1\n")
    with pytest.raises(Exception, match="unknown key"):
        Experiment.load(bad)


def test_paper_experiment_describes_the_full_study():
    from pathlib import Path

    exp = Experiment.load(Path(__file__).resolve().parents[1] / "experiments" / "paper.yaml")
    assert len(exp.train) == len(exp.test) == 4 and len(exp.detectors) == 3
    assert len(exp.regions) == 5 and exp.fusion
    assert exp.cache_options("FaceForensics")["methods"] == [
        "Deepfakes",
        "Face2Face",
        "FaceSwap",
        "NeuralTextures",
    ]
    assert exp.cache_options("CelebDF") == {"protocol": "official"}
    assert all(exp.config(d, "eyes", "DFDC").pretrained for d in exp.detectors)
