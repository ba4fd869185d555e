"""DSP-FWA and Capsule-Forensics-v2: layouts, conventions, learning, saving, loading."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from dffr.detectors.base import DETECTORS, DetectorConfig, WeightsError, build_detector
from dffr.detectors.data import ArrayData
from dffr.detectors.model_files import load_detector
from dffr.detectors.training_log import TrainingLog
from dffr.errors import DffrError, MissingWeightsError

from .conftest import named

REFERENCE = {"DSP-FWA": "dsp_fwa_sppnet_resnet50.json", "Capsule": "capsule_net.json"}


def make(name, **kw):
    kw.setdefault("input_size", 64)
    kw.setdefault("pretrained", False)
    return build_detector(DetectorConfig(name, **kw), "cpu")


@pytest.mark.parametrize("name", ["DSP-FWA", "Capsule"])
def test_state_dict_layout_matches_the_seed_release(name, reference_dir):
    ref = json.loads((reference_dir / REFERENCE[name]).read_text())
    det = make(name, input_size=200)
    own = {
        k: list(v.shape) for k, v in det.model.state_dict().items() if not k.startswith("vgg.")
    }  # Capsule's front end is not in the release
    assert own == ref


def test_spp_width_follows_the_input_size():
    for size, expected in [(200, 2048 * (1 + 4 + 36)), (64, 2048 * (1 + 4 + 4))]:
        assert make("DSP-FWA", input_size=size).model.classifier.in_features == expected


def test_dsp_fwa_trunk_can_be_another_resnet_and_is_kept_in_the_sidecar(tiny_faces, tmp_path):
    det = make("DSP-FWA", options={"trunk": "resnet18"})
    assert det.model.classifier.in_features == 512 * (1 + 4 + 4)  # ResNet-18: 512 channels
    assert sum(p.numel() for p in det.model.parameters()) < 12e6  # ResNet-50's is 25M
    with torch.no_grad():
        det.model.train()
        det.model(det._tensor(tiny_faces[0][:8]))
    path = tmp_path / "DSP-FWA_DB_entire.pt"
    det.save(path)
    path.with_suffix(".json").write_text(json.dumps({"config": named(det, path)}))
    again = load_detector(path, "cpu")
    assert again.options.trunk == again.config.options["trunk"] == "resnet18"
    # a sidecar written before detectors had options of their own: flat keys, some of
    # them another detector's defaults
    old = {k: v for k, v in named(det, path).items() if k != "options"}
    old |= {"trunk": "resnet18", "head": "sigmoid", "warmup_epochs": 3, "extra": {}}
    path.with_suffix(".json").write_text(json.dumps({"config": old}))
    assert load_detector(path, "cpu").config.options == {"fake_index": 0, "trunk": "resnet18"}
    assert np.array_equal(det.predict(tiny_faces[0]), again.predict(tiny_faces[0]))


def test_an_option_a_detector_does_not_have_or_a_value_it_does_not_take_is_refused():
    with pytest.raises(DffrError, match="trunk = 'vgg16'.*'resnet50', 'resnet18'"):
        make("DSP-FWA", options={"trunk": "vgg16"})
    with pytest.raises(DffrError, match=r"Capsule has no option 'trunk' \(its options: fake_"):
        make("Capsule", options={"trunk": "resnet18"})
    with pytest.raises(DffrError, match="DSP-FWA has no option 'head'"):
        make("DSP-FWA", options={"head": "softmax"})


def test_capsule_front_end_keeps_the_signal_from_random_initialisation():
    # PyTorch's default initialisation shrinks it ~100x through the eight convolutions
    torch.manual_seed(0)
    out = make("Capsule").model.vgg(torch.randn(4, 3, 64, 64))
    assert out.std() > 0.05


@pytest.mark.parametrize("name", ["DSP-FWA", "Capsule"])
def test_scores_are_probabilities_of_fake_for_any_image_size(name, tiny_faces):
    det = make(name)
    images = tiny_faces[0][:5]
    p = det.predict(images)
    assert p.shape == (5,) and p.dtype == np.float32 and ((p >= 0) & (p <= 1)).all()
    assert np.allclose(
        det.predict(np.stack([np.pad(i, ((8, 8), (8, 8), (0, 0))) for i in images])).shape, (5,)
    )


def test_fake_is_class_zero_as_in_the_seed_release(tiny_faces):
    det = make("DSP-FWA")
    with torch.no_grad():
        det.model.classifier.weight.zero_()
        det.model.classifier.bias.copy_(torch.tensor([5.0, -5.0]))  # class 0 wins
    assert (det.predict(tiny_faces[0][:3]) > 0.99).all()
    det.options.fake_index = 1
    assert (det.predict(tiny_faces[0][:3]) < 0.01).all()


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, batch, epochs, lr", [("DSP-FWA", 16, 10, 3e-4), ("Capsule", 16, 6, 1e-3)]
)
def test_overfits_a_tiny_batch_of_real_faces(name, batch, epochs, lr, tiny_faces):
    images, labels, _ = tiny_faces
    data = ArrayData(images, labels)
    det = make(name, epochs=epochs, batch=batch, lr=lr, patience=epochs)
    log = TrainingLog(None)
    det.fit(data, data, log)
    scores = det.predict(images)
    assert roc_auc_score(labels, scores) == 1.0
    assert scores[labels == 1].mean() > scores[labels == 0].mean()  # orientation: P(fake)
    assert det.val_auc == 1.0
    assert log.rows[-1]["train_loss"] < log.rows[0]["train_loss"]


@pytest.mark.parametrize("name", ["DSP-FWA", "Capsule"])
def test_save_load_round_trip_gives_identical_scores(name, tiny_faces, tmp_path):
    det = make(name)
    with torch.no_grad():  # move BN statistics away from their defaults
        det.model.train()
        det.model(det._tensor(tiny_faces[0][:8]))
    path = tmp_path / f"{name}_DB_eyes.pt"
    det.save(path)
    path.with_suffix(".json").write_text(json.dumps({"config": named(det, path)}))
    again = load_detector(path, "cpu")
    assert np.array_equal(det.predict(tiny_faces[0]), again.predict(tiny_faces[0]))


def test_seed_released_dsp_fwa_file_loads_without_sidecar(tiny_faces, tmp_path):
    det = make("DSP-FWA", input_size=200)
    path = tmp_path / "DSP-FWA_FaceForensics_mouth.pt"
    torch.save({f"module.{k}": v for k, v in det.model.state_dict().items()}, path)
    loaded = load_detector(path, "cpu")  # DataParallel prefixes are tolerated
    assert (loaded.config.ddbb, loaded.config.region, loaded.config.input_size) == (
        "FaceForensics",
        "mouth",
        200,
    )
    assert np.array_equal(det.predict(tiny_faces[0][:4]), loaded.predict(tiny_faces[0][:4]))


def test_seed_released_capsule_file_needs_and_uses_imagenet_vgg(tiny_faces, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))
    det = make("Capsule", input_size=200)
    capsule_only = {k: v for k, v in det.model.state_dict().items() if not k.startswith("vgg.")}
    path = tmp_path / "Capsule_CelebDF_eyes.pt"
    torch.save(capsule_only, path)
    with pytest.raises(MissingWeightsError, match="vgg19-dcbb9e9d.pth"):
        load_detector(path, "cpu")
    # a stand-in for torchvision's ImageNet VGG19 file, holding the front end det has
    imagenet = tmp_path / "vgg19.pth"
    torch.save({f"features.{k}": v for k, v in det.model.vgg.state_dict().items()}, imagenet)
    loaded = load_detector(path, "cpu", imagenet=str(imagenet))
    assert np.array_equal(det.predict(tiny_faces[0][:4]), loaded.predict(tiny_faces[0][:4]))


def test_bad_weight_files_are_refused_clearly(tmp_path):
    bad = tmp_path / "DSP-FWA_X_eyes.pt"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(WeightsError, match="not a loadable PyTorch weights file"):
        load_detector(bad, "cpu")
    wrong = tmp_path / "Capsule_X_eyes.pt"
    torch.save(make("DSP-FWA").model.state_dict(), wrong)
    with pytest.raises(WeightsError, match="do not fit Capsule.*missing"):
        load_detector(wrong, "cpu")
    pickled = tmp_path / "DSP-FWA_X_nose.pt"
    torch.save({"model": object()}, pickled)  # needs unpickling arbitrary objects
    with pytest.raises(WeightsError):
        load_detector(pickled, "cpu")
    with pytest.raises(WeightsError, match="not found"):
        load_detector(tmp_path / "nope.pt")
    odd = tmp_path / "weights.pt"
    odd.write_bytes(b"x")
    with pytest.raises(WeightsError, match="no sidecar"):
        load_detector(odd)


def test_imagenet_is_the_default_and_its_absence_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    for name, file in (("DSP-FWA", "resnet50-0676ba61.pth"), ("Capsule", "vgg19-dcbb9e9d.pth")):
        with pytest.raises(MissingWeightsError, match=f"{file} is not in {tmp_path}") as e:
            build_detector(DetectorConfig(name, input_size=64), "cpu")  # no pretrained=...
        assert "could not fetch" in str(e.value) and "--from-scratch" in str(e.value)
    assert make("DSP-FWA").init == {"kind": "random"}  # pretrained=False: asked for


def test_registry():
    assert {"Xception", "Capsule", "DSP-FWA"} <= set(DETECTORS.names())
