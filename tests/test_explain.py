"""Grad-CAM, guided backpropagation and guided Grad-CAM (`dffr explain`, `dffr
explain-summary`): on tiny networks whose decision rests on one known quadrant, built
identically in PyTorch and Keras; heat mapped back to the frame; heat shares per part."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from torch import nn

from dffr.cli import main
from dffr.detectors.base import DetectorConfig
from dffr.detectors.explain import (
    ExplainError,
    TorchExplainer,
    explain,
    explainer,
    gradcam,
    to_frame,
)
from dffr.detectors.model_files import load_detector
from dffr.detectors.torch_detector import TorchDetector
from dffr.experiments.explain_summary import (
    FACE_COLUMNS,
    SHARES,
    TEMPLATE,
    alignment,
    five_points,
    heat_shares,
)
from dffr.images import read_image, write_image
from dffr.regions import segment_image
from dffr.regions.crop import apply_affine, face_crop

S = 32  # the tiny networks' input size
QUADRANT = (slice(0, S // 2), slice(S // 2, S))  # top right: a transposition would miss it


def quadrant_mask(size: int = S) -> np.ndarray:
    m = np.zeros((size, size), np.float32)
    m[: size // 2, size // 2 :] = 1
    return m


class QuadrantNet(nn.Module):
    """conv -> in-place ReLU -> only the top-right quadrant kept -> conv -> in-place ReLU
    (`features`) -> mean -> two logits, FAKE at 0: the logit difference is the mean of
    `features`, which sees the top-right quadrant only."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.relu1 = nn.ReLU(inplace=True)
        self.register_buffer("mask", torch.from_numpy(quadrant_mask())[None, None])
        self.features = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1, bias=False), nn.ReLU(True))
        self.fc = nn.Linear(4, 2)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([[1.0] * 4, [0.0] * 4]))
            self.fc.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(self.relu1(self.conv1(x)) * self.mask).mean(dim=(2, 3)))


class TinyTorch(TorchDetector):
    """An unregistered TorchDetector subclass: explain works from the interface alone."""

    name = "TinyTorch"
    normalisation = "unit"

    def build(self) -> nn.Module:
        return QuadrantNet()

    def probabilities(self, outputs) -> torch.Tensor:
        return F.softmax(outputs.float(), dim=1)

    def loss(self, outputs, targets) -> torch.Tensor:
        return F.cross_entropy(outputs.float(), targets)


def tiny_torch(**config) -> TinyTorch:
    return TinyTorch(DetectorConfig("TinyTorch", input_size=S, pretrained=False, **config), "cpu")


def tiny_keras(**config):
    """The same network in Keras 3 (a KerasDetector with QuadrantNet's weights): one
    sigmoid unit whose logit is the torch logit difference."""
    from dffr.detectors.keras_detector import KerasDetector

    mask = quadrant_mask()[None, :, :, None]

    class TinyKeras(KerasDetector):
        name = "TinyKeras"
        normalisation = "unit"
        imagenet_file = "unused.h5"

        def body(self):
            k = self.keras
            x = k.Input((S, S, 3))
            a = k.layers.Conv2D(4, 3, padding="same", name="conv1")(x)
            a = k.layers.Activation("relu", name="relu1")(a)
            a = k.layers.Lambda(lambda t: t * mask, name="quadrant")(a)
            a = k.layers.Conv2D(4, 3, padding="same", use_bias=False, name="conv2")(a)
            a = k.layers.ReLU(name="features")(a)
            return k.Model(x, k.layers.GlobalAveragePooling2D(name="pool")(a))

    det = TinyKeras(DetectorConfig("TinyKeras", input_size=S, pretrained=False, **config), "cpu")
    net = QuadrantNet()
    w1, b1 = net.conv1.weight.detach().numpy(), net.conv1.bias.detach().numpy()
    det.model.get_layer("conv1").set_weights([w1.transpose(2, 3, 1, 0), b1])
    w2 = net.features[0].weight.detach().numpy()
    det.model.get_layer("conv2").set_weights([w2.transpose(2, 3, 1, 0)])
    fc = net.fc.weight.detach().numpy()
    det.model.get_layer("fake").set_weights([(fc[0] - fc[1])[:, None], np.zeros(1, np.float32)])
    return det


@pytest.fixture(scope="module")
def noise() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (4, S, S, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def keras_det():
    return tiny_keras()


def quadrant_share(heat: np.ndarray, halo: int = 0) -> float:
    """The share of the heat in the top-right quadrant grown by `halo` pixels."""
    h = heat.shape[-1]
    return float(heat[..., : h // 2 + halo, h // 2 - halo :].sum() / heat.sum())


def test_gradcam_puts_the_heat_in_the_quadrant_the_torch_decision_rests_on(noise):
    det = tiny_torch()
    ex = explainer(det)
    assert isinstance(ex, TorchExplainer) and ex.layer == "features"  # last conv block
    e = ex.explain(noise)
    assert e.heat.shape == (4, S, S) and e.heat.dtype == np.float32
    assert np.allclose(e.heat.max(axis=(1, 2)), 1.0) and e.heat.min() >= 0
    # the last conv sees 1 px beyond the quadrant, and nothing further
    assert quadrant_share(e.heat) > 0.85 and quadrant_share(e.heat, halo=1) == 1.0
    assert np.allclose(e.scores, det.predict(noise), atol=1e-6)
    # the decision does rest on that quadrant alone (and the 1 px the first conv sees)
    other = 255 - noise
    other[:, : S // 2 + 1, S // 2 - 1 :] = noise[:, : S // 2 + 1, S // 2 - 1 :]
    assert np.allclose(det.predict(other), det.predict(noise), atol=1e-6)
    # larger images are resized in and the heat map comes back at their size
    big = np.repeat(np.repeat(noise, 2, axis=1), 2, axis=2)
    e2 = ex.explain(big, batch=3)
    assert e2.heat.shape == (4, 2 * S, 2 * S) and quadrant_share(e2.heat) > 0.85
    assert quadrant_share(e2.heat, halo=3) == pytest.approx(1.0)
    # any 4-D module can be named; hooks never outlive a pass
    assert quadrant_share(explain(det, noise, layer="features.0").heat, halo=1) == 1.0
    assert not any(m._forward_hooks for m in det.model.modules())
    with pytest.raises(ExplainError, match="no module 'nope'.*features"):
        explainer(det, "nope")
    with pytest.raises(ExplainError, match="4-D feature map"):
        explain(det, noise, layer="fc")


def test_gradcam_explains_p_fake_in_the_detector_s_class_layout(noise):
    """With FAKE at class 1, the same evidence speaks against fake: no heat at all."""
    det = tiny_torch(options={"fake_index": 1})
    e = explain(det, noise)
    assert np.allclose(e.scores, det.predict(noise), atol=1e-6)
    assert np.allclose(e.scores, 1 - explain(tiny_torch(), noise).scores, atol=1e-6)
    assert e.heat.max() == 0


def test_guided_methods_have_the_image_shape_and_stay_in_the_quadrant(noise):
    det = tiny_torch()
    cam = explain(det, noise, "gradcam")
    guided = explain(det, noise, "guided")
    both = explain(det, noise, "guided-gradcam")
    for e in (guided, both):
        assert e.gradients.shape == (4, S, S, 3) and e.heat.shape == (4, S, S)
        assert e.heat.min() >= 0 and np.allclose(e.heat.max(axis=(1, 2)), 1.0)
        # the input sees the quadrant through two 3x3 convolutions: 2 px of halo
        outside = np.ones((S, S), bool)
        outside[: S // 2 + 2, S // 2 - 2 :] = False
        assert np.abs(e.gradients[:, outside]).max() == 0
        assert np.abs(e.gradients[:, : S // 2, S // 2 :]).max() > 0
    assert np.allclose(both.gradients, guided.gradients * cam.heat[..., None], atol=1e-7)
    # guided is not the plain gradient: negative gradients stop at every ReLU
    x = det._tensor(noise).requires_grad_(True)
    logits = det.model(x)
    (plain,) = torch.autograd.grad((logits[:, 0] - logits[:, 1]).sum(), x)
    plain = plain.permute(0, 2, 3, 1).numpy()
    assert not np.allclose(plain, guided.gradients, atol=1e-6)
    assert not any(m._forward_hooks for m in det.model.modules())


def test_gradcam_is_the_positive_gradient_weighted_sum_of_the_maps():
    acts = np.array([[[[1.0, 2.0]], [[3.0, 0.0]]]])  # (1, 2, 1, 2): two positions, 2 channels
    grads = np.array([[[[1.0, -1.0]], [[1.0, -3.0]]]])  # channel means 1 and -2
    assert np.allclose(gradcam(acts, grads), [[[0.0], [3.0]]])


def test_keras_gradcam_and_guided_match_the_torch_twin(noise, keras_det):
    """The same network in both frameworks: hooks and GradientTape give the same maps."""
    torch_det = tiny_torch()
    ex = explainer(keras_det)
    assert ex.layer == "features"  # the last 4-D activation
    before = keras_det.predict(noise)
    assert np.allclose(before, torch_det.predict(noise), atol=1e-5)
    for method in ("gradcam", "guided", "guided-gradcam"):
        k, t = ex.explain(noise, method), explain(torch_det, noise, method)
        assert np.allclose(k.scores, before, atol=1e-5)
        assert np.allclose(k.heat, t.heat, atol=1e-4), method
        if method == "gradcam":
            assert quadrant_share(k.heat, halo=1) == pytest.approx(1.0)
        else:
            assert np.allclose(k.gradients, t.gradients, atol=1e-5 * np.abs(t.gradients).max())
    # the guided clone left the model as it was: same layers, plain ReLUs, same scores
    assert keras_det.model.get_layer("relu1").get_config()["activation"] == "relu"
    assert np.allclose(keras_det.predict(noise), before, atol=1e-7)
    with pytest.raises(ExplainError, match="no layer 'nope'.*features"):
        explainer(keras_det, "nope")
    with pytest.raises(ExplainError, match="not a 4-D map"):
        explainer(keras_det, "pool")


def test_keras_sigmoid_meaning_p_real_is_turned_around(noise, keras_det):
    seed_like = tiny_keras(options={"sigmoid_means": "real"})
    e = explain(seed_like, noise)
    assert np.allclose(e.scores, seed_like.predict(noise), atol=1e-5)
    assert np.allclose(e.scores, 1 - keras_det.predict(noise), atol=1e-5)
    assert e.heat.max() == 0  # the quadrant's evidence is for P(real) now


def test_heat_maps_map_back_to_the_frame_through_the_crop():
    rng = np.random.default_rng(1)
    frame = np.zeros((120, 160, 3), np.uint8)
    landmarks = rng.uniform([60, 30], [120, 95], (68, 2))
    crop = face_crop(frame, landmarks, size=64)
    yy, xx = np.mgrid[:64, :64]
    spot = (40.0, 20.0)  # x, y in the crop
    heat = np.exp(-((xx - spot[0]) ** 2 + (yy - spot[1]) ** 2) / 4.0).astype(np.float32)
    on_frame = to_frame(heat, crop.matrix, frame.shape)
    assert on_frame.shape == (120, 160)
    peak = np.unravel_index(np.argmax(on_frame), on_frame.shape)[::-1]
    assert np.allclose(peak, crop.to_input(np.array([spot]))[0], atol=1.0)
    # a uniform map covers exactly the crop's window of the frame
    window = to_frame(np.ones((64, 64), np.float32), crop.matrix, frame.shape)
    corners = crop.to_input(np.array([[0.0, 0.0], [63.0, 63.0]]))
    (x0, y0), (x1, y1) = np.ceil(corners[0]).astype(int), np.floor(corners[1]).astype(int)
    assert np.allclose(window[y0 : y1 + 1, x0 : x1 + 1], 1.0)
    # bilinear edges reach less than one crop pixel (1.4 frame pixels here) further out
    assert window[:, : max(x0 - 2, 0)].max() == 0 and window[y1 + 3 :].max() == 0
    assert window.sum() == pytest.approx((x1 - x0 + 1) * (y1 - y0 + 1), rel=0.1)


@pytest.fixture(scope="module")
def face(astronaut):
    return segment_image(astronaut)[0]


def test_heat_shares_split_the_face_heat_between_the_parts(face):
    masks = face.masks
    rng = np.random.default_rng(2)
    heat = rng.random(masks["entire"].shape)
    s = heat_shares(heat, masks)
    assert sum(s[p] for p in ("eyes", "nose", "mouth", "rest")) == pytest.approx(s["entire"])
    assert s["entire"] + s["outside"] == pytest.approx(1.0) and 0 < s["outside"] < 1
    inside = heat_shares(heat * masks["entire"], masks)
    assert inside["entire"] == pytest.approx(1.0) and inside["outside"] == 0
    assert sum(inside[p] for p in ("eyes", "nose", "mouth", "rest")) == pytest.approx(1.0)
    assert heat_shares(heat * masks["mouth"], masks)["mouth"] == pytest.approx(1.0)
    assert all(np.isnan(v) for v in heat_shares(np.zeros_like(heat), masks).values())


def test_alignment_takes_any_pose_of_a_face_to_the_same_template_frame(face):
    lm = face.crop.landmarks
    base = alignment(lm)
    assert np.abs(apply_affine(base, five_points(lm)) - TEMPLATE * 128).max() < 12
    a, t = 0.3, np.array([15.0, -7.0])
    moved = 1.7 * lm @ np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]]) + t
    assert np.allclose(apply_affine(alignment(moved), moved), apply_affine(base, lm), atol=1e-6)
    with pytest.raises(ExplainError, match="degenerate"):
        alignment(np.zeros((68, 2)))


def run(*args: str):
    return CliRunner().invoke(main, list(args))


@pytest.mark.slow  # a model trained on the tiny cache, face detection, figures
def test_explain_command_writes_heat_over_region_and_frame(models, face, astronaut, tmp_path):
    photo, bad, out = tmp_path / "face.png", tmp_path / "bad.png", tmp_path / "out"
    write_image(photo, astronaut)
    bad.write_bytes(b"not an image")
    common = ["--detector", "DSP-FWA", "--region", "eyes", "--ddbb", "CelebDF"]
    common += ["--models", str(models), "--out", str(out)]
    r = run("explain", str(photo), str(bad), *common)
    assert r.exit_code == 1  # the bad file, after the good one was done
    assert "bad.png: not an image" in r.output and "1 of 2 file(s) failed" in r.output
    det = load_detector(models / "CelebDF" / "DSP-FWA_CelebDF_eyes.pt", "cpu")
    region = face.regions["eyes"]  # the same photograph, segmented here
    e = explain(det, region[None])
    assert f"face.png: P(fake) = {e.scores[0]:.2f}" in r.output
    heat = read_image(out / "face_gradcam_heat.png")[..., 0]
    assert heat.shape == region.shape[:2]
    assert np.abs(heat.astype(int) - np.round(255 * e.heat[0])).max() <= 1
    for name in ("face_gradcam_region.png", "face_gradcam_frame.png"):
        assert read_image(out / name).shape[2] == 3
    # a region image as it is (no frame to map back to), guided Grad-CAM at another layer
    write_image(tmp_path / "eyes.png", region)
    guided = ["--method", "guided-gradcam", "--layer", "resnet.resnet.layer3", "--pre-segmented"]
    r = run("explain", str(tmp_path / "eyes.png"), *common, *guided)
    assert r.exit_code == 0, r.output
    e = explain(det, region[None], "guided-gradcam", "resnet.resnet.layer3")
    heat = read_image(out / "eyes_guided-gradcam_heat.png")[..., 0]
    assert np.abs(heat.astype(int) - np.round(255 * e.heat[0])).max() <= 1
    assert (out / "eyes_guided-gradcam_region.png").is_file()
    assert not (out / "eyes_guided-gradcam_frame.png").exists()
    r = run("explain", str(photo), *common, "--layer", "nope")
    assert r.exit_code == 2 and "no module 'nope'" in r.output
    r = run("explain", str(photo), *common[:5], "DFDC", *common[6:])
    assert r.exit_code == 1 and "model not found" in r.output and "dffr train" in r.output


@pytest.mark.slow  # a model trained on the tiny cache, figures
def test_explain_summary_tables_maps_and_recorded_failures(models, cache, tmp_path):
    broken = tmp_path / "cache"
    shutil.copytree(cache, broken)
    index = pd.read_parquet(broken / "index.parquet")
    test_rows = index[index["split"] == "test"]
    victim = test_rows.iloc[0]
    (broken / victim["face"]).write_bytes(b"truncated")
    out = tmp_path / "summary"
    r = run(
        "explain-summary",
        "--cache",
        str(broken),
        "--models",
        str(models),
        "--ddbb",
        "CelebDF",
        "--detectors",
        "DSP-FWA,Capsule",
        "--regions",
        "eyes,mouth",
        "--batch",
        "4",
        "--out",
        str(out),
    )
    assert r.exit_code == 0, r.output
    assert "missing model:" in r.output and "Capsule_CelebDF_eyes.pt" in r.output
    failures = pd.read_csv(out / "failures.csv")
    assert len(failures) == 1 and failures["video"][0] == victim["video"]
    assert "not an image" in failures["reason"][0]
    faces = pd.read_csv(out / "faces.csv")
    assert list(faces.columns) == FACE_COLUMNS
    assert len(faces) == 2 * (len(test_rows) - 1)  # two models, the readable faces
    hot = faces.dropna(subset=["entire"])
    assert len(hot) > 0
    parts = hot[["eyes", "nose", "mouth", "rest"]].sum(axis=1)
    assert np.allclose(parts, hot["entire"]) and np.allclose(parts + hot["outside"], 1.0)
    right = (faces["score"] >= 0.5) == (faces["label"] == 1)
    assert (faces["decision"] == np.where(right, "correct", "wrong")).all()
    shares = pd.read_csv(out / "shares.csv")
    keys = ["train_ddbb", "test_ddbb", "detector", "region", "label", "decision", "n"]
    assert list(shares.columns[:7]) == keys
    assert set(SHARES) <= set(shares.columns)
    alls = shares[shares["decision"] == "all"]
    assert alls["n"].sum() == len(faces)
    split = shares[shares["decision"] != "all"].groupby(["region", "label"])["n"].sum()
    assert (split.sort_index() == alls.set_index(["region", "label"])["n"].sort_index()).all()
    with_heat = alls.dropna(subset=["entire"])
    assert np.allclose(with_heat[["entire", "outside"]].sum(axis=1), 1.0, atol=2e-3)
    md = (out / "shares.md").read_text()
    assert "Share of Grad-CAM heat" in md and "| DSP-FWA" in md and md.split("\n\n")[1] in r.output
    maps = np.load(out / "mean_maps.npz")
    mean = maps["DSP-FWA|mouth|fake|all"]
    assert mean.shape == (128, 128) and mean.min() >= 0 and mean.max() <= 1
    for region in ("eyes", "mouth"):
        assert read_image(out / f"mean_maps_{region}.png").shape[2] == 3
    bad = run(
        "explain-summary", "--cache", str(cache), "--ddbb", "X", "--detectors", "Nope", "--out", "x"
    )
    assert bad.exit_code == 2 and "choose from" in bad.output
