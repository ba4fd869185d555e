"""The torchvision and keras.applications backbones: registered under their names, built
at small inputs, trained a step, saved and loaded with identical scores, fed as each
network expects, and initialised offline from ImageNet files under their usual names."""

from __future__ import annotations

import json
import re
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
import torchvision
from click.testing import CliRunner

from dffr.cli import main
from dffr.clickutil import RegistryChoice
from dffr.datasets.cache import read_index
from dffr.detectors.base import (
    DETECTORS,
    IMAGENET_STD,
    DetectorConfig,
    InputSizeError,
    WeightsError,
    build_detector,
)
from dffr.detectors.data import ArrayData
from dffr.detectors.model_files import load_detector, model_path
from dffr.detectors.networks.backbones import TORCHVISION
from dffr.detectors.networks.keras_backbones import KERAS_APPLICATIONS
from dffr.detectors.training import train
from dffr.detectors.training_log import TrainingLog
from dffr.errors import MissingWeightsError
from dffr.scoring.scores import score

from .conftest import named

TORCH = list(TORCHVISION)
KERAS = list(KERAS_APPLICATIONS)
HEAVY = {"ResNet-50", "VGG-16", "DenseNet-121", "EfficientNet-B0"}  # ResNet-18 runs by default
# torchvision's own names for the ImageNet files (IMAGENET1K_V1), written out here so
# that a change in how they are derived shows
TORCH_FILES = {
    "ResNet-18": "resnet18-f37072fd.pth",
    "ResNet-50": "resnet50-0676ba61.pth",
    "VGG-16": "vgg16-397923af.pth",
    "DenseNet-121": "densenet121-a639ec97.pth",
    "EfficientNet-B0": "efficientnet_b0_rwightman-7f5810bc.pth",
}
# what a pure red pixel becomes: BGR minus the Caffe means / standardised RGB / 0-255
RED = {
    "Keras-ResNet50": [-103.939, -116.779, 255 - 123.68],
    "Keras-VGG16": [-103.939, -116.779, 255 - 123.68],
    "Keras-DenseNet121": [(1 - 0.485) / 0.229, -0.456 / 0.224, -0.406 / 0.225],
    "Keras-EfficientNetB0": [255.0, 0.0, 0.0],
}


def make(name: str, **kw):
    base = dict(
        input_size=32 if name in KERAS else 64,
        batch=4,
        epochs=1,
        pretrained=False,
        bn_recalibration=4,
        options={"warmup_epochs": 0} if name in KERAS else {},
    )
    return build_detector(DetectorConfig(name, **{**base, **kw}), "cpu")


def heavy(names, slow=()):
    return [pytest.param(n, marks=pytest.mark.slow) if n in slow else n for n in names]


@pytest.fixture(scope="module")
def faces(tiny_faces):
    """2 real faces and 3 fakes: with batch 4, a full step and a step on one image."""
    images, labels, _ = tiny_faces
    pick = [0, 1, 8, 9, 10]
    return images[pick], labels[pick]


def round_trip(det, images, tmp_path):
    """Scores of `det` after save + load_detector (with the JSON sidecar)."""
    path = tmp_path / f"{det.name}_DB_eyes{det.suffix}"
    det.save(path)
    path.with_suffix(".json").write_text(json.dumps({"config": named(det, path)}))
    again = load_detector(path, "cpu")
    assert type(again) is type(det)
    return again.predict(images)


def test_registry_names_files_and_command_line_choice():
    assert set(TORCH) | set(KERAS) <= set(DETECTORS.names())
    choice = RegistryChoice(DETECTORS)
    assert choice.convert("resnet-18", None, None) == "ResNet-18"
    assert choice.convert("KERAS-efficientnetb0", None, None) == "Keras-EfficientNetB0"
    for name in TORCH + KERAS:
        path = model_path("models", name, "CelebDF", "eyes")
        assert path.suffix == (".keras" if name in KERAS else ".pt")
        assert path.stem.split("_")[0] == name  # load_detector can read it back


@pytest.mark.parametrize("name", heavy(TORCH, HEAVY))
def test_torchvision_backbone_trains_and_round_trips(name, faces, tmp_path):
    images, labels = faces
    det = make(name)
    assert det.model.get_submodule(det.backbone.head).out_features == 2
    params = dict(det.model.named_parameters())
    first, last = next(iter(params)), f"{det.backbone.head}.weight"
    before = {k: params[k].detach().clone() for k in (first, last)}
    log = TrainingLog(None)
    det.fit(ArrayData(images, labels), ArrayData(images, labels), log)
    assert np.isfinite(log.rows[0]["train_loss"]) and len(log.rows) == 1
    after = dict(det.model.named_parameters())
    assert not torch.equal(before[first], after[first])  # the body learns
    assert not torch.equal(before[last], after[last])  # and the new head
    p = det.predict(images)
    assert p.shape == (5,) and ((p >= 0) & (p <= 1)).all()
    assert np.array_equal(round_trip(det, images, tmp_path), p)


def test_fake_is_class_zero_by_default(faces):
    det = make("ResNet-18")
    with torch.no_grad():
        det.model.fc.weight.zero_()
        det.model.fc.bias.copy_(torch.tensor([5.0, -5.0]))
    assert (det.predict(faces[0][:2]) > 0.99).all()
    det.options.fake_index = 1
    assert (det.predict(faces[0][:2]) < 0.01).all()


@pytest.mark.parametrize("name", TORCH)
def test_torchvision_imagenet_file_required_but_absent(name, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    folder = tmp_path / "hub" / "checkpoints"
    expected = f"{TORCH_FILES[name]} is not in {folder}"
    with pytest.raises(MissingWeightsError, match=re.escape(expected)) as e:
        make(name, pretrained=True)
    assert f"dffr weights fetch --detectors {name}" in str(e.value)


def test_torchvision_imagenet_files_are_hash_checked_and_recorded(tmp_path, monkeypatch):
    from dffr.detectors.imagenet import WeightsHashError, file_digest

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    folder = tmp_path / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    torch.manual_seed(1)
    resnet = torchvision.models.resnet18().state_dict()
    # a stand-in under the published name is not the published file: refused
    torch.save(resnet, folder / TORCH_FILES["ResNet-18"])
    with pytest.raises(WeightsHashError, match="fails its hash check"):
        make("ResNet-18", pretrained=True)
    # the user's own file (--imagenet) is used as it is, and recorded
    own = tmp_path / "my_resnet18.pth"
    torch.save(resnet, own)
    det = make("ResNet-18", pretrained=True, imagenet=str(own))
    assert torch.equal(det.model.conv1.weight, resnet["conv1.weight"])
    assert det.model.fc.out_features == 2  # the ImageNet classifier is replaced
    assert det.init == {
        "kind": "imagenet",
        "file": "my_resnet18.pth",
        "sha256": file_digest(own),
        "source": "--imagenet",
    }
    # torchvision's DenseNet file keeps the old key names (norm.1, conv.2, ...)
    dense = torchvision.models.densenet121().state_dict()
    old = {re.sub(r"(denselayer\d+\.(?:norm|relu|conv))([12])\.", r"\1.\2.", k): v
           for k, v in dense.items()}  # fmt: skip
    assert "features.denseblock1.denselayer1.norm.1.weight" in old
    torch.save(old, tmp_path / "densenet.pth")
    det = make("DenseNet-121", pretrained=True, imagenet=str(tmp_path / "densenet.pth"))
    key = "features.denseblock4.denselayer16.conv2.weight"
    assert torch.equal(det.model.state_dict()[key], dense[key])
    with pytest.raises(WeightsError, match="do not fit torchvision's densenet121"):
        make("DenseNet-121", pretrained=True, imagenet=str(own))


def test_inputs_too_small_are_refused_clearly():
    with pytest.raises(InputSizeError, match="VGG-16 needs an input of at least 64x64"):
        make("VGG-16", input_size=48)
    with pytest.raises(InputSizeError, match="Keras-ResNet50 needs an input of at least 32x32"):
        make("Keras-ResNet50", input_size=31)


@pytest.mark.slow  # TensorFlow graph building: a few seconds each
@pytest.mark.parametrize("name", KERAS)
def test_keras_backbone_trains_and_round_trips(name, faces, tmp_path):
    images, labels = faces[0][:4], faces[1][:4]  # one batch shape: one graph to build
    det = make(name)
    assert det.model.output_shape == (None, 1) and det.model.layers[-1].name == "fake"
    first, last = det.model.trainable_weights[0], det.model.layers[-1].kernel
    before = [np.array(first), np.array(last)]
    log = TrainingLog(None)
    det.fit(ArrayData(images, labels), ArrayData(images, labels), log)
    assert np.isfinite(log.rows[0]["train_loss"]) and log.rows[0]["stage"] == "full"
    assert not np.array_equal(before[0], np.array(first))
    assert not np.array_equal(before[1], np.array(last))
    p = det.predict(images)
    assert p.shape == (4,) and ((p >= 0) & (p <= 1)).all()
    assert np.allclose(round_trip(det, images, tmp_path), p, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("name", KERAS)
def test_keras_inputs_are_normalised_as_each_application_expects(name):
    det = make(name)
    red = np.zeros((1, 40, 40, 3), np.uint8)
    red[..., 0] = 255
    x = det.prepare(red)
    assert x.shape == (1, 32, 32, 3) and x.dtype == np.float32
    assert np.allclose(x[0, 5, 5], RED[name], atol=1e-4)


@pytest.mark.slow
def test_keras_imagenet_files(tmp_path, monkeypatch):
    import keras

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    for name, app in KERAS_APPLICATIONS.items():
        expected = f"{app.imagenet} is not in {tmp_path / 'models'}"
        with pytest.raises(MissingWeightsError, match=re.escape(expected)):
            make(name, pretrained=True)
    # an EfficientNet no-top file: its extra ImageNet rescaling is folded into the
    # Normalization variance, so the body computes what Keras' ImageNet model does
    ref = keras.applications.EfficientNetB0(
        include_top=False, weights=None, input_shape=(32, 32, 3), pooling="avg"
    )
    norm = next(la for la in ref.layers if isinstance(la, keras.layers.Normalization))
    norm.adapt_mean.assign(np.float32([0.485, 0.456, 0.406]))
    norm.adapt_variance.assign(np.float32([0.229, 0.224, 0.225]) ** 2)
    norm.finalize_state()
    own = tmp_path / "efficientnetb0_notop.h5"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras' notice that .h5 is a legacy format
        ref.save(own)
    det = make("Keras-EfficientNetB0", pretrained=True, imagenet=str(own))
    assert det.init["kind"] == "imagenet" and det.init["file"] == own.name
    got = next(la for la in det.model.layers if isinstance(la, keras.layers.Normalization))
    assert np.allclose(np.array(got.adapt_variance), IMAGENET_STD**2 * IMAGENET_STD)
    conv = "stem_conv"
    assert np.array_equal(
        np.array(det.model.get_layer(conv).kernel), np.array(ref.get_layer(conv).kernel)
    )
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    layer = ref.layers.index(norm)
    ref_out = keras.Model(ref.input, ref.layers[layer].output)(x)
    got_out = keras.Model(det.model.input, got.output)(x)
    scale = 1 / np.sqrt(IMAGENET_STD)  # Keras' extra ImageNet Rescaling
    assert np.allclose(np.array(got_out), np.array(ref_out) * scale, atol=1e-4)


@pytest.mark.slow
def test_train_and_score_with_a_torchvision_and_a_keras_backbone(cache, tmp_path):
    models = tmp_path / "models"
    common = ["--region", "eyes", "--cache", str(cache), "--epochs", "1", "--batch", "4"]
    result = CliRunner().invoke(
        main,
        ["--device", "cpu", "train", "--detector", "resnet-18", *common]
        + ["--input-size", "64", "--from-scratch", "--out", str(models)],
    )
    assert result.exit_code == 0, result.output
    weights = models / "folder" / "ResNet-18_folder_eyes.pt"
    assert weights.is_file()
    config = DetectorConfig(
        "Keras-VGG16",
        region="eyes",
        input_size=32,
        epochs=1,
        batch=4,
        pretrained=False,
        options={"warmup_epochs": 1},
    )
    r = train(config, cache, models)
    assert r.weights == models / "folder" / "Keras-VGG16_folder_eyes.keras"
    meta = json.loads(r.weights.with_suffix(".json").read_text())
    assert meta["normalisation"] == "keras.applications.vgg16.preprocess_input"
    assert [h["stage"] for h in meta["history"]] == ["head", "full"]
    imgs = r.train_data.images(range(4))
    assert np.allclose(load_detector(r.weights, "cpu").predict(imgs), r.detector.predict(imgs))
    out = tmp_path / "scores.parquet"
    rep = score(
        cache, models, "folder", out, ("ResNet-18", "Keras-VGG16"), ("eyes",), progress=False
    )
    assert not rep.missing
    rows = pd.read_parquet(out)
    assert set(rows["detector"]) == {"ResNet-18", "Keras-VGG16"}
    assert rows["score"].between(0, 1).all()
    n = len(read_index(cache, "test"))
    assert n and rows.groupby("detector").size().tolist() == [n, n]
