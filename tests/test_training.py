"""`dffr train` end to end on a tiny face cache: splits respected, sidecar and log
written, resume, synthesised negatives, and DistributedDataParallel under torchrun."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from dffr.cli import main
from dffr.detectors.base import DetectorConfig
from dffr.detectors.model_files import load_detector
from dffr.detectors.negatives import NEGATIVES
from dffr.detectors.training import train
from dffr.errors import DffrError
from dffr.regions import region_masks


def _config(**kw):
    base = dict(input_size=64, epochs=1, batch=4, pretrained=False, patience=5)
    base.update(kw)
    return DetectorConfig(kw.pop("detector", "DSP-FWA"), **base)


def test_train_reads_train_and_val_only_and_writes_its_records(cache, tmp_path):
    index = pd.read_parquet(cache / "index.parquet")
    result = CliRunner().invoke(
        main,
        [
            "--device",
            "cpu",
            "train",
            "--detector",
            "DSP-FWA",
            "--region",
            "eyes",
            "--cache",
            str(cache),
            "--epochs",
            "2",
            "--batch",
            "4",
            "--input-size",
            "64",
            "--from-scratch",
            "--out",
            str(tmp_path / "models"),
            "--keep-checkpoint",
        ],
    )
    assert result.exit_code == 0, result.output
    weights = tmp_path / "models" / "folder" / "DSP-FWA_folder_eyes.pt"
    assert weights.is_file() and "best val AUC" in result.output
    assert (weights.parent / "checkpoints" / "DSP-FWA_folder_eyes.ckpt.pt").is_file()
    meta = json.loads(weights.with_suffix(".json").read_text())
    assert meta["config"]["region"] == "eyes" and meta["normalisation"] == "imagenet"
    assert meta["labels"].startswith("score = P(fake)")
    assert meta["init"] == {"kind": "random"} and meta["config"]["pretrained"] is False
    assert meta["data"]["train"] == {"faces": 12, "real": 6, "fake": 6, "videos": 4}
    assert meta["data"]["val"]["faces"] == 6 and len(meta["data"]["fingerprint"]) == 32
    log = pd.read_csv(weights.with_suffix(".log.csv"))
    assert list(log["epoch"]) == [1, 2] and {"train_loss", "val_loss", "val_auc"} <= set(log)
    assert list((weights.parent / "runs" / weights.stem).glob("events.out.tfevents*"))
    # the rows training touched: never a test row
    r = train(_config(region="eyes"), cache, tmp_path / "m2")
    test_rows = set(np.flatnonzero(index["split"] == "test"))
    touched = r.train_data.touched | r.val_data.touched
    assert touched and not touched & test_rows
    assert r.train_data.touched <= set(np.flatnonzero(index["split"] == "train"))
    assert r.val_data.touched <= set(np.flatnonzero(index["split"] == "val"))
    # the saved model scores like the trained one
    det = load_detector(r.weights, "cpu")
    imgs = r.train_data.images(range(4))
    assert np.array_equal(det.predict(imgs), r.detector.predict(imgs))


def test_resume_continues_to_the_same_model(cache, tmp_path):
    straight = train(_config(epochs=2), cache, tmp_path / "a")
    assert not (straight.weights.parent / "checkpoints").exists()  # removed once saved
    train(_config(epochs=1), cache, tmp_path / "b", keep_checkpoint=True)
    # its options spelt out as they were by default: the same training, so it resumes
    (side,) = (tmp_path / "b").glob("*/DSP-FWA_*.json")
    options = json.loads(side.read_text())
    resumed = train(
        _config(epochs=2, options=options["config"]["options"]), cache, tmp_path / "b", resume=True
    )
    log_a = pd.read_csv(straight.weights.with_suffix(".log.csv"))
    log_b = pd.read_csv(resumed.weights.with_suffix(".log.csv"))
    pd.testing.assert_frame_equal(log_a, log_b)
    a, b = straight.detector.model.state_dict(), resumed.detector.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not (resumed.weights.parent / "checkpoints").exists()
    # a checkpoint never goes on under other settings
    train(_config(epochs=1), cache, tmp_path / "c", keep_checkpoint=True)
    with pytest.raises(DffrError, match="trained with another input_size, lr; train without"):
        train(_config(epochs=2, input_size=72, lr=1e-3), cache, tmp_path / "c", resume=True)


def test_negatives_let_a_detector_learn_from_real_faces_only(cache, tmp_path):
    r = train(_config(negatives="sbi"), cache, tmp_path / "m")
    meta = json.loads(r.weights.with_suffix(".json").read_text())
    assert meta["data"]["train"]["real"] == meta["data"]["train"]["fake"] == 6
    assert set(
        r.train_data.rows.loc[list(r.train_data._samples[i][0] for i in range(6)), "label"]
    ) == {0}


@pytest.mark.parametrize(
    "name, where",
    [("fwa", "entire"), ("sbi", "entire"), ("sbi-eyes", "eyes"), ("sbi-mouth", "mouth")],
)
def test_negatives_change_only_the_face(name, where, tiny_faces):
    images, labels, lms = tiny_faces
    fn = NEGATIVES.get(name)
    for k in range(4):
        img, lm = images[k], lms[k]
        fake = fn(img, lm, np.random.default_rng(k))
        changed = np.abs(fake.astype(int) - img).max(axis=2) > 0
        inside = region_masks(lm, img.shape)[where]
        share = 0.2 if where == "entire" else 0.1  # the eyes/lips, not the whole region
        assert changed.sum() > share * inside.sum()  # a real change of the face (region)
        assert not (changed & ~inside).any()  # and nothing outside it
        if where != "entire":  # the blend seam lies inside the region image
            assert (inside & ~changed).sum() > 0.2 * inside.sum()


@pytest.mark.slow
def test_torchrun_two_processes_end_with_identical_weights(cache, tmp_path):
    script = tmp_path / "ddp.py"
    script.write_text(f"""
import os, warnings, torch
warnings.simplefilter("ignore")
from dffr.detectors.base import DetectorConfig
from dffr.detectors.training import train
from dffr.errors import DffrError
cfg = DetectorConfig("DSP-FWA", input_size=64, epochs=1, batch=2, pretrained=False)
r = train(cfg, {str(cache)!r}, {str(tmp_path / "models")!r}, device="cpu")
torch.save(r.detector.model.state_dict(), {str(tmp_path)!r} + f"/rank{{os.environ['RANK']}}.pt")
print("touched", len(r.train_data.touched))
""")
    torchrun = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(script),
    ]
    proc = subprocess.run(torchrun, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a = torch.load(tmp_path / "rank0.pt", weights_only=True)
    b = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)
    single = train(
        DetectorConfig("DSP-FWA", input_size=64, epochs=1, batch=2, pretrained=False),
        cache,
        tmp_path / "single",
    )
    s = single.detector.model.state_dict()
    assert not all(torch.equal(a[k], s[k]) for k in a)  # the ranks did train, on shards
    assert (tmp_path / "models" / "folder" / "DSP-FWA_folder_entire.pt").is_file()


def test_precision_is_asked_for_by_name():
    from dffr.detectors.base import build_detector
    from dffr.device import Device, compute_dtype
    from dffr.errors import DeviceError

    assert compute_dtype("auto", Device("cpu")) == "float32"
    assert compute_dtype("auto", Device("cuda")) == "float16"
    with pytest.raises(DeviceError, match="float16 needs a GPU"):
        compute_dtype("float16", Device("cpu"))
    with pytest.raises(DeviceError, match="unknown precision"):
        compute_dtype("half", Device("cpu"))
    images = np.random.default_rng(0).integers(0, 255, (4, 40, 40, 3), dtype=np.uint8)
    kw = {"region": "entire", "input_size": 32, "pretrained": False}
    kw["options"] = {"trunk": "resnet18"}
    full = build_detector(DetectorConfig("DSP-FWA", **kw), "cpu")
    mixed = build_detector(DetectorConfig("DSP-FWA", precision="bfloat16", **kw), "cpu")
    mixed.model.load_state_dict(full.model.state_dict())
    assert (full.dtype, mixed.dtype) == ("float32", "bfloat16")
    a, b = full.predict(images), mixed.predict(images)
    assert np.all((b >= 0) & (b <= 1)) and np.abs(a - b).max() < 3e-2
