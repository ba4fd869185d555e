"""Xception (Keras 3): learning, P(fake) convention, saving and the seed's .hdf5 files."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from dffr.detectors.base import DetectorConfig, WeightsError, build_detector, load_detector
from dffr.detectors.data import ArrayData
from dffr.detectors.training_log import TrainingLog
from dffr.errors import MissingWeightsError

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
                warmup_epochs=1,
                batch=8,
                pretrained=False,
                patience=5,
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

    path.with_suffix(".json").write_text(json.dumps({"config": det.config.to_dict()}))
    again = load_detector(path, "cpu")
    assert np.allclose(det.predict(images), again.predict(images), atol=1e-6)
    # a seed system's Keras 2 style .hdf5: no sidecar, its sigmoid is P(real)
    seed = tmp_path / "Xception_CelebDF_mouth.hdf5"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        det.model.save(seed)
    loaded = load_detector(seed, "cpu")
    assert (loaded.config.ddbb, loaded.config.region) == ("CelebDF", "mouth")
    assert np.allclose(loaded.predict(images), 1.0 - det.predict(images), atol=1e-6)


def test_corrupt_keras_file_and_missing_imagenet(tmp_path, monkeypatch):
    bad = tmp_path / "Xception_DB_eyes.keras"
    bad.write_bytes(b"PK\x03\x04 broken zip")
    with pytest.raises(WeightsError, match="cannot load as an Xception model"):
        load_detector(bad, "cpu")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(MissingWeightsError, match="xception_weights_tf_dim_ordering"):
        build_detector(DetectorConfig("Xception", input_size=72, pretrained=True), "cpu")
