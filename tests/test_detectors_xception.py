"""Xception (Keras 3): learning, P(fake) convention, saving and the seed's .hdf5 files."""

from __future__ import annotations

import warnings
import zipfile

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from dffr.detectors.base import DetectorConfig, WeightsError, build_detector
from dffr.detectors.data import ArrayData
from dffr.detectors.model_files import load_detector
from dffr.detectors.training_log import TrainingLog
from dffr.errors import MissingWeightsError

from .conftest import named

pytestmark = pytest.mark.slow  # TensorFlow start-up and graph building take ~10 s


@pytest.fixture(scope="module")
def trained(tiny_faces):
    images, labels, _ = tiny_faces
    data = ArrayData(images, labels)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        det = build_detector(
            DetectorConfig(
                "Xception",
                input_size=72,
                epochs=2,
                batch=8,
                pretrained=False,
                patience=5,
                options={"warmup_epochs": 1},
            ),
            "cpu",
        )
    log = TrainingLog(None)
    det.fit(data, data, log)
    return det, log


def test_overfits_a_tiny_batch_in_two_stages(trained, tiny_faces):
    det, log = trained
    images, labels, _ = tiny_faces
    scores = det.predict(images)
    assert scores.shape == (16,) and ((scores >= 0) & (scores <= 1)).all()
    assert roc_auc_score(labels, scores) == 1.0
    assert scores[labels == 1].mean() > scores[labels == 0].mean()
    assert [r["stage"] for r in log.rows] == ["head", "full", "full"]


def test_keras_round_trip_and_seed_hdf5(trained, tiny_faces, tmp_path):
    det, _ = trained
    images = tiny_faces[0]
    path = tmp_path / "Xception_DB_entire.keras"
    det.save(path)
    import json

    path.with_suffix(".json").write_text(json.dumps({"config": named(det, path)}))
    again = load_detector(path, "cpu")
    assert np.allclose(det.predict(images), again.predict(images), atol=1e-6)
    with zipfile.ZipFile(path) as z:  # scoring needs no Adam state: a third of the size
        assert "optimizer" not in z.read("model.weights.h5").decode("latin-1")
    # a seed system's Keras 2 style .hdf5: no sidecar, its sigmoid is P(real)
    seed = tmp_path / "Xception_CelebDF_mouth.hdf5"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        det.model.save(seed)
    loaded = load_detector(seed, "cpu")
    assert (loaded.config.ddbb, loaded.config.region) == ("CelebDF", "mouth")
    assert np.allclose(loaded.predict(images), 1.0 - det.predict(images), atol=1e-6)


def test_corrupt_keras_file_and_missing_imagenet(tmp_path, monkeypatch):
    import json

    bad = tmp_path / "Xception_DB_eyes.keras"
    bad.write_bytes(b"PK\x03\x04 broken zip")
    config = {"detector": "Xception", "ddbb": "DB", "region": "eyes", "input_size": 72}
    bad.with_suffix(".json").write_text(json.dumps({"config": config}))
    with pytest.raises(WeightsError, match="cannot load as an Xception model"):
        load_detector(bad, "cpu")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(MissingWeightsError, match="xception_weights_tf_dim_ordering"):
        build_detector(DetectorConfig("Xception", input_size=72, pretrained=True), "cpu")


def test_two_class_head_with_fake_at_index_zero(tiny_faces, tmp_path):
    images, labels, _ = tiny_faces
    data = ArrayData(images, labels)
    det = build_detector(
        DetectorConfig(
            "Xception",
            input_size=72,
            epochs=1,
            batch=8,
            pretrained=False,
            options={"warmup_epochs": 1, "head": "softmax"},
        ),
        "cpu",
    )
    assert det.model.output_shape[-1] == 2
    det.fit(data, data, TrainingLog(None))
    scores = det.predict(images)
    assert roc_auc_score(labels, scores) > 0.9
    raw = np.asarray(det.model(det.prepare(images), training=False))
    assert np.allclose(scores, raw[:, 0], atol=1e-6)  # P(fake) is class 0, as in the seed
    path = tmp_path / "Xception_DB_nose.keras"
    det.save(path)
    with pytest.raises(WeightsError, match="without its sidecar"):  # a dffr .keras
        load_detector(path, "cpu")
    import json

    # the head is read off the model, whatever the sidecar claims
    path.with_suffix(".json").write_text(
        json.dumps({"config": {**named(det, path), "head": "sigmoid"}})
    )
    again = load_detector(path, "cpu")
    assert again.options.head == "softmax"


def test_runs_on_the_torch_backend(tiny_faces, tmp_path):
    import subprocess
    import sys

    np.save(tmp_path / "x.npy", tiny_faces[0])
    np.save(tmp_path / "y.npy", tiny_faces[1])
    script = f"""
import warnings; warnings.simplefilter("ignore")
import keras, numpy as np
assert keras.config.backend() == "torch"
from dffr.detectors import DetectorConfig, build_detector, load_detector
from dffr.detectors.data import ArrayData
from dffr.detectors.training_log import TrainingLog
x, y = np.load({str(tmp_path / "x.npy")!r}), np.load({str(tmp_path / "y.npy")!r})
det = build_detector(DetectorConfig("Xception", input_size=72, epochs=1, batch=8,
                                    pretrained=False, options={{"warmup_epochs": 1}}), "cpu")
det.fit(ArrayData(x, y), ArrayData(x, y), TrainingLog(None))
p = det.predict(x)
assert p.shape == (16,) and ((p >= 0) & (p <= 1)).all()
det.save(__import__("pathlib").Path({str(tmp_path / "t.keras")!r}))
print("mean fake - real", p[y == 1].mean() - p[y == 0].mean())
"""
    env = {**__import__("os").environ, "KERAS_BACKEND": "torch"}
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert float(proc.stdout.split()[-1]) > 0
    assert (tmp_path / "t.keras").is_file()


def test_a_short_last_training_batch_is_filled_from_the_epoch_start():
    from dffr.detectors.data import Batch
    from dffr.detectors.keras_detector import full_batches

    x, y = np.arange(10)[:, None], np.arange(10) % 2
    masks = np.arange(10)[:, None, None] > 4  # what else a batch carries is filled alike
    batches = [Batch(x[s : s + 4], y[s : s + 4], "eyes", masks=masks[s : s + 4]) for s in (0, 4, 8)]
    out = list(full_batches(iter(batches), 4))
    assert [len(b) for b in out] == [4, 4, 4]  # one shape: no second trace
    assert out[2].images[:, 0].tolist() == [8, 9, 0, 1] and out[2].labels.tolist() == [0, 1, 0, 1]
    assert out[2].masks[:, 0, 0].tolist() == [True, True, False, False]
    single = list(full_batches(iter([Batch(x[:3], y[:3])]), 4))
    assert len(single[0]) == 3  # nothing to fill from: left as it is
