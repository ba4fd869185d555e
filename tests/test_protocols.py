"""The paper's protocol or a clear error: cache settings recorded and checked, test
videos without a face counted and scored, fusion fitted on its own database's val rows
only, Keras precision decided per model, experiment files checked against a schema,
and the dry run's plan."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from dffr.cli import main
from dffr.datasets import get_dataset
from dffr.datasets.cache import CacheSettingsError, read_settings, read_videos
from dffr.datasets.preprocess import Settings, preprocess
from dffr.experiments.metrics import evaluate, video_level
from dffr.experiments.spec import Experiment, SpecError
from dffr.experiments.tables import no_face_note
from dffr.fusion.fuse import fuse
from dffr.scoring.scores import score

from .conftest import write_face_video, write_video

# --- the cache records its settings ------------------------------------------------


def test_a_cache_refuses_other_settings_and_names_them(tmp_path, place):
    place(tmp_path / "db", "real/a.mp4", "fake/b.mp4")
    ds = get_dataset("folder", tmp_path / "db")
    cache = tmp_path / "cache"
    preprocess(ds.items(), ds.root, cache, Settings(frames=2, size=64), progress=False, database=ds)
    recorded = read_settings(cache)
    assert recorded["ddbb"] == "folder" and recorded["options"] == {"group": None}
    assert (recorded["frames"], recorded["size"], recorded["faces"]) == (2, 64, "largest")
    assert recorded["face_detector"] == "hog" and recorded["backend"] == "dlib"
    with pytest.raises(CacheSettingsError, match="size: 64 in the cache, 72 now"):
        preprocess(ds.items(), ds.root, cache, Settings(frames=2, size=72), progress=False)
    grouped = get_dataset("folder", tmp_path / "db", group="^[a-z]")
    with pytest.raises(CacheSettingsError, match="options: .*'group': None.* in the cache"):
        preprocess(
            grouped.items(), ds.root, cache, Settings(frames=2, size=64), False, database=grouped
        )
    # the same settings again: accepted, nothing redone
    again = preprocess(ds.items(), ds.root, cache, Settings(frames=2, size=64), progress=False)
    assert again.videos == 0 and again.skipped == 2
    # the command line says so too, and prints what each split holds
    args = ["preprocess", "--ddbb", "folder", "--root", str(ds.root), "--out", str(cache)]
    r = CliRunner().invoke(main, [*args, "--frames", "3", "--size", "64"])
    assert r.exit_code == 1 and "frames: 2 in the cache, 3 now" in r.output
    r = CliRunner().invoke(main, [*args, "--frames", "0"])
    assert r.exit_code == 2 and "--frames" in r.output
    # a cache made before settings.json: adopted with what its videos record, and the
    # defaults of its time (one face a video, database options unknown)
    (cache / "settings.json").unlink()
    preprocess(ds.items(), ds.root, cache, Settings(frames=2, size=64), progress=False, database=ds)
    adopted = read_settings(cache)
    assert adopted["options"] is None and adopted["faces"] == "largest"
    with pytest.raises(CacheSettingsError, match="faces: 'largest' in the cache, 'all' now"):
        preprocess(ds.items(), ds.root, cache, Settings(frames=2, size=64, faces="all"), False)
    # a shard made otherwise cannot be merged in, nor a folder that is not there
    other = tmp_path / "other"
    preprocess(ds.items(), ds.root, other, Settings(frames=3, size=64), progress=False)
    r = CliRunner().invoke(main, ["merge-cache", str(cache), str(other)])
    assert r.exit_code == 1 and "frames: 2 in the cache, 3 now" in r.output
    r = CliRunner().invoke(main, ["merge-cache", str(cache), str(tmp_path / "shard9")])
    assert r.exit_code == 1 and "no such cache folder" in r.output


def test_preprocess_prints_the_real_and_fake_videos_of_each_split(tmp_path, place):
    place(tmp_path / "db", "train/real/a.mp4", "train/fake/b.mp4", "train/fake/c.mp4")
    place(tmp_path / "db", "test/real/d.mp4")
    r = CliRunner().invoke(
        main,
        ["preprocess", "--ddbb", "folder", "--root", str(tmp_path / "db")]
        + ["--out", str(tmp_path / "c"), "--frames", "1", "--size", "64"],
    )
    assert r.exit_code == 0, r.output
    assert "folder videos: train 1 real / 2 fake, test 1 real / 0 fake" in r.output


# --- every test video counts -------------------------------------------------------


@pytest.fixture(scope="module")
def faceless_cache(tmp_path_factory, astronaut):
    """A test split with a face video, a video whose second half has no face, a video
    without a face, and a blank image (4 frames a video, 64 px)."""
    root = tmp_path_factory.mktemp("faceless")
    write_face_video(root / "test" / "real" / "a.mp4", astronaut)
    face = write_face_video(root / "half.mp4", astronaut)
    from dffr.datasets.video import read_frames

    frames = [f for _, f in read_frames(face, 12)]
    blank = np.full_like(frames[0], 40)
    write_video(root / "test" / "fake" / "b.mp4", frames[:6] + [blank] * 6)
    write_video(root / "test" / "fake" / "c.mp4", [blank] * 12)
    from dffr.images import write_image

    write_image(root / "test" / "real" / "d.png", np.full((120, 160, 3), 90, np.uint8))
    (root / "test" / "fake" / "e.mp4").write_bytes(b"not a video" * 100)  # unreadable
    face.unlink()
    ds = get_dataset("folder", root)
    out = tmp_path_factory.mktemp("faceless_cache")
    preprocess(ds.items(), root, out, Settings(frames=4, size=64), progress=False, database=ds)
    return out


def test_faceless_test_frames_and_videos_are_kept_counted_and_scored(
    faceless_cache, models, tmp_path
):
    videos = read_videos(faceless_cache).set_index("video")
    assert list(videos.loc["test/fake/b.mp4", "no_face"]) == [7, 11]
    assert videos.loc["test/fake/c.mp4", "frames"] == 0
    out = tmp_path / "scores.parquet"
    score(faceless_cache, models, "CelebDF", out, ("DSP-FWA",), ("eyes", "mouth"), progress=False)
    scores = pd.read_parquet(out)
    eyes = scores[scores["region"] == "eyes"]
    # 6 faces + 7 sampled frames without one (2 + 4 + 1) + the unreadable video (frame -1)
    assert len(eyes) == 14
    faceless = eyes[eyes["score"].isna()]
    assert (faceless["track"] == -1).all() and len(faceless) == 8
    assert set(faceless["video"]) == {
        "test/fake/b.mp4",
        "test/fake/c.mp4",
        "test/real/d.png",
        "test/fake/e.mp4",
    }
    assert faceless[faceless["video"] == "test/fake/e.mp4"]["frame"].tolist() == [-1]
    # frame level: faces only, the others counted
    frame = evaluate(scores, "frame", n_bootstrap=0).set_index("region")
    assert frame.loc["eyes", "n"] == 6 and frame.loc["eyes", "no_face_frames"] == 8
    assert frame.loc["eyes", "no_face_videos"] == 3 and frame.loc["eyes", "videos"] == 5
    # video level: every video, a faceless one at the stated fallback
    for fallback in (0.5, 0.9):
        video = evaluate(scores, "video", n_bootstrap=0, no_face_score=fallback)
        assert (video["n"] == 5).all() and (video["no_face_score"] == fallback).all()
        per = video_level(eyes, fallback).set_index("video")["score"]
        assert per["test/fake/c.mp4"] == per["test/real/d.png"] == per["test/fake/e.mp4"]
        assert per["test/fake/c.mp4"] == fallback
        half = eyes[(eyes["video"] == "test/fake/b.mp4") & eyes["score"].notna()]["score"]
        assert per["test/fake/b.mp4"] == pytest.approx(half.mean())  # its faces only
    note = no_face_note(frame.reset_index())
    assert note == (
        "folder: 8 test frame(s) had no face, and 3 of 5 test video(s) none at all "
        "(not in the frame-level figures)."
    )
    # fused: faceless frames stay, as NaN, to be counted
    fused = fuse(scores, "regions", "mean", ["eyes", "mouth"])
    assert len(fused) == 14 and fused["score"].isna().sum() == 8
    assert set(fused["inputs"]) == {"DSP-FWA/eyes+DSP-FWA/mouth"}
    r = CliRunner().invoke(
        main, ["evaluate", "--scores", str(out), "--level", "video", "--no-face-score", "0.2"]
    )
    assert r.exit_code == 0, r.output
    assert "3 of 5 test video(s) none at all (scored 0.2 at video level)" in r.output
    # a scores file written before these rows existed is not added to
    old = tmp_path / "old.parquet"
    scores.drop(columns=["track"]).to_parquet(old)
    with pytest.raises(Exception, match="written by an older dffr"):
        score(faceless_cache, models, "CelebDF", old, ("DSP-FWA",), ("nose",), progress=False)


def test_a_test_split_without_any_face_is_scored_and_counted(tmp_path, models):
    root = tmp_path / "db"
    blank = np.full((120, 160, 3), 40, np.uint8)
    write_video(root / "test" / "real" / "a.mp4", [blank] * 4)
    write_video(root / "test" / "fake" / "b.mp4", [blank] * 4)
    ds = get_dataset("folder", root)
    preprocess(ds.items(), root, tmp_path / "c", Settings(frames=2, size=64), False, database=ds)
    out = tmp_path / "s.parquet"
    score(tmp_path / "c", models, "CelebDF", out, ("DSP-FWA",), ("eyes",), progress=False)
    scores = pd.read_parquet(out)
    assert len(scores) == 4 and scores["score"].isna().all()
    row = evaluate(scores, "frame", n_bootstrap=0).iloc[0]
    assert row["n"] == 0 and np.isnan(row["auc"]) and row["no_face_videos"] == 2
    assert evaluate(scores, "video", n_bootstrap=0)["auc"].iloc[0] == 0.5  # both at 0.5


# --- fusion fits on the models' own database only ----------------------------------


def _scores(rng, rows):
    """Score rows of two inputs (eyes, mouth) for the given (test_ddbb, split, n, flip)."""
    out = []
    for test_ddbb, split, n, flip in rows:
        label = rng.integers(0, 2, n)
        for region, noise in (("eyes", 0.3), ("mouth", 0.6)):
            signal = (1 - label) if flip else label
            s = np.clip(0.5 * signal + rng.normal(0.25, noise, n), 0, 1)
            out.append(
                pd.DataFrame(
                    {
                        "video": [f"{test_ddbb}{split}{i}" for i in range(n)],
                        "frame": 0,
                        "track": 0,
                        "label": label,
                        "video_label": label,
                        "split": split,
                        "method": np.where(label == 1, "fake", "real"),
                        "test_ddbb": test_ddbb,
                        "train_ddbb": "A",
                        "detector": "DSP-FWA",
                        "region": region,
                        "score": s,
                    }
                )
            )
    return pd.concat(out, ignore_index=True)


def test_fusion_ignores_the_validation_rows_of_another_database():
    rng = np.random.default_rng(0)
    own = _scores(
        rng, [("A", "val", 60, False), ("A", "test", 40, False), ("B", "test", 40, False)]
    )
    # B's validation rows, scored by A's models, with the relation reversed: fitting on
    # them would learn the opposite rule
    foreign = _scores(rng, [("B", "val", 400, True)])
    for rule, norm in (("logistic", "none"), ("weighted_mean", "zscore")):
        a = fuse(own, "regions", rule, ["eyes", "mouth"], norm)
        b = fuse(pd.concat([own, foreign], ignore_index=True), "regions", rule, None, norm)
        b = b[b["split"] == "test"].reset_index(drop=True)
        pd.testing.assert_frame_equal(a[a["split"] == "test"].reset_index(drop=True), b)
    with pytest.raises(Exception, match="own training database \\(A\\)"):
        fuse(foreign.assign(train_ddbb="A"), "regions", "logistic")


# --- Keras precision per model -------------------------------------------------------


def test_keras_models_take_their_own_device_precision_whatever_came_before(tmp_path):
    import keras

    from dffr.detectors.base import DetectorConfig
    from dffr.detectors.keras_detector import KerasDetector
    from dffr.device import Device

    class Tiny(KerasDetector):
        name = "Tiny"
        normalisation = "unit"

        def body(self):
            k = self.keras
            x = k.Input((32, 32, 3))
            a = k.layers.BatchNormalization(name="bn")(k.layers.Conv2D(4, 3, name="conv")(x))
            return k.Model(x, k.layers.GlobalAveragePooling2D(name="pool")(a))

    def policies(device):
        det = Tiny(DetectorConfig("Tiny", input_size=32, pretrained=False), device)
        return {la.name: la.dtype_policy.name for la in det.model.layers[1:]}

    gpu = Device("cuda", 0)  # a GPU faked: only the precision policy is looked at
    for _ in range(2):  # the first model of a process as every later one
        assert policies(gpu) == {
            "conv": "mixed_float16",
            "bn": "mixed_float16",
            "pool": "mixed_float16",
            "fake": "float32",  # P(fake) in full precision
        }
    assert set(policies(Device("cpu")).values()) == {"float32"}
    assert keras.config.dtype_policy().name == "float32"  # the global policy restored
    # a model trained on a GPU, scored on a CPU: loaded in float32, with its weights
    trained = Tiny(DetectorConfig("Tiny", input_size=32, pretrained=False), gpu)
    trained.save(tmp_path / "tiny.keras")
    on_cpu = Tiny(DetectorConfig("Tiny", input_size=32, pretrained=False), Device("cpu"))
    on_cpu.load_weights(tmp_path / "tiny.keras")
    assert {la.dtype_policy.name for la in on_cpu.model.layers[1:]} == {"float32"}
    for a, b in zip(on_cpu.model.get_weights(), trained.model.get_weights(), strict=True):
        assert np.array_equal(a, b)
    x = np.random.default_rng(0).integers(0, 255, (2, 32, 32, 3), dtype=np.uint8)
    assert on_cpu.predict(x).dtype == np.float32 and on_cpu.predict(x).shape == (2,)


# --- experiment files are checked up front -------------------------------------------


BASE = "name: x\ncaches: {A: c}\ntrain: [A]\ntest: [A]\n"


@pytest.mark.parametrize(
    "extra, message",
    [
        ("training: {epoch: 3}", "unknown key 'training.epoch' (did you mean 'epochs'?)"),
        ("normalization: zscore", "unknown key 'normalization' (valid: name, caches"),
        ("fusion: [{rul: max}]", "unknown key 'fusion.0.rul' (did you mean 'rule'?)"),
        ("overrides: {DSPFWA: {epochs: 2}}", "unknown detector 'DSPFWA' (did you mean 'DSP-FWA'?)"),
        ("overrides: {DSP-FWA: {epoch: 2}}", "'overrides.DSP-FWA.epoch' (did you mean 'epochs'"),
        ("training: {lr: fast}", "training.lr: Input should be a valid number"),
        ("level: vid", "level: Input should be 'frame' or 'video' (got 'vid')"),
        ("metric: f1", "metric: Input should be 'auc', 'eer', 'ap' or 'acc' (got 'f1')"),
        ("bootstrap: abc", "bootstrap: Input should be a valid integer"),
        ("bootstrap: -5", "bootstrap: Input should be greater than or equal to 0"),
        ("training: {epochs: 0}", "training.epochs: Input should be greater than 0"),
        ("training: {negatives: fwx}", "unknown negatives 'fwx'"),
        ("overrides: {DSP-FWA: {trunk: resnet9}}", "trunk = 'resnet9': Input should be 'resnet50'"),
        (
            "overrides: {Capsule: {trunk: resnet18}}",
            "'overrides.Capsule.trunk' (options of Capsule: fake",
        ),
        (
            "detectors: [Capsule, DSP-FWA]\ntraining: {head: softmax}",
            "'training.head' (options of Capsule, DSP-FWA: fake_index, trunk)",
        ),
        ("training: {trunks: resnet18}", "unknown key 'training.trunks' (did you mean 'trunk'?)"),
        ("fusion: [{rule: nope.py:f}]", "nope.py not found"),
        ("fusion: [{norm: l2}]", "unknown normalisation 'l2'; choose one of none, minmax"),
        ("fusion: [{rule: maxx}]", "unknown fusion rule 'maxx'"),
        ("tta: [vflip]", "tta: unknown TTA view 'vflip'"),
        ("no_face_score: 2", "no_face_score: Input should be less than or equal to 1"),
        ("detectors: [Xceptoin]", "unknown detector 'Xceptoin' (did you mean 'Xception'?)"),
    ],
)
def test_experiment_files_are_checked_against_the_schema(tmp_path, extra, message):
    path = tmp_path / "e.yaml"
    path.write_text(BASE + extra + "\n")
    with pytest.raises(SpecError) as e:
        Experiment.load(path)
    assert message in str(e.value)


def test_experiment_file_shapes(tmp_path):
    path = tmp_path / "e.yaml"
    for text, message in (
        ("", "an experiment is a mapping"),
        ("name: x\ncaches: [A]\ntrain: [A]\ntest: [A]\n", "caches: Input should be a valid dict"),
        ("name: x\ncaches: {A: c}\ntrain: [A]\ntest: [B]\n", "no cache given for \\['B'\\]"),
        ("name: x\ncaches: {A: {pth: c}}\ntrain: [A]\ntest: [A]\n", "missing key 'caches.A.path'"),
    ):
        path.write_text(text)
        with pytest.raises(SpecError, match=message):
            Experiment.load(path)
    # relative paths are the file's: caches, models and rule files alike
    (tmp_path / "rules.py").write_text("def top(scores):\n    return scores.max(axis=1)\n")
    path.write_text(BASE + "fusion: [{rule: rules.py:top}]\n")
    exp = Experiment.load(path)
    assert exp.cache_path("A") == str(tmp_path / "c") and exp.models == str(tmp_path / "models")
    assert exp.fusion[0].rule == f"{tmp_path / 'rules.py'}:top" and not exp.needs_val()


def test_training_keys_are_the_detector_configs_own():
    from dataclasses import fields

    from dffr.detectors.base import DetectorConfig
    from dffr.experiments.spec import Training

    own = {f.name for f in fields(DetectorConfig)} - {"detector", "region", "ddbb", "options"}
    assert set(Training.model_fields) == own


# --- the dry run and the checks before training ---------------------------------------


def _experiment(tmp_path, cache, **over) -> Path:  # noqa: F821
    spec = {
        "name": "plan",
        "caches": {"A": str(cache)},
        "models": str(tmp_path / "models"),
        "train": ["A"],
        "test": ["A"],
        "detectors": ["DSP-FWA", "Xception"],
        "regions": ["eyes"],
        "fusion": [{"over": "detectors", "rule": "logistic", "norm": "zscore"}],
        **over,
    }
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_dry_run_prints_the_plan_and_stops_on_missing_weights(cache, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))

    def never(*a, **k):
        raise AssertionError("a dry run trains nothing")

    monkeypatch.setattr("dffr.detectors.training.train", never)
    path = _experiment(tmp_path, cache)
    r = CliRunner().invoke(main, ["experiment", str(path), "--dry-run"])
    assert r.exit_code == 1, r.output
    text = r.output
    assert f"A: {cache} (ddbb folder, frames 3, size 64" in text
    # per split: videos real / fake, faces real / fake
    lines = {line.split()[0]: line.split() for line in text.splitlines() if line[:4] == "    "}
    assert lines["train"][1:6] == ["2", "/", "2", "6", "/"] and lines["train"][6] == "6"
    assert lines["test"][1:4] == ["1", "/", "1"]
    assert "A DSP-FWA eyes: to train, from ImageNet resnet50-0676ba61.pth\n" in text
    assert "A Xception eyes: to train, from ImageNet xception_weights" in text
    assert "2 model(s) to train" in text
    assert "ImageNet resnet50-0676ba61.pth: MISSING (not here; not fetchable: URLError" in text
    assert "over detectors: logistic of default inputs, zscore normalisation (fitted on" in text
    assert (
        "errors (the run would stop)" in text and "dffr weights fetch --detectors DSP-FWA" in text
    )
    # from scratch: nothing missing, the plan passes
    path = _experiment(tmp_path, cache, training={"pretrained": False})
    r = CliRunner().invoke(main, ["experiment", str(path), "--dry-run"])
    assert r.exit_code == 0, r.output
    assert "A DSP-FWA eyes: to train, from random weights (pretrained: false)" in r.output
    assert "errors" not in r.output
    # the real run checks the same before it trains the first model
    path = _experiment(tmp_path, cache)
    r = CliRunner().invoke(main, ["experiment", str(path), "--out", str(tmp_path / "o")])
    assert r.exit_code == 1 and "resnet50-0676ba61.pth is not in" in r.output
    assert "xception_weights_tf_dim_ordering_tf_kernels_notop.h5 is not in" in r.output


def test_dry_run_warnings_and_cache_checks(tmp_path, place):
    root = tmp_path / "db"
    place(root, *[f"train/real/r{k}.mp4" for k in range(11)], "train/fake/f0.mp4")
    place(root, "val/real/v.mp4", "test/real/rt.mp4", "test/fake/t.mp4")
    ds = get_dataset("folder", root, group="^[a-z]")  # identities: the first letter
    cache = tmp_path / "c"
    preprocess(ds.items(), root, cache, Settings(frames=1, size=64), progress=False, database=ds)
    path = _experiment(
        tmp_path, cache, training={"pretrained": False}, caches={"A": {"path": str(cache)}}
    )
    r = CliRunner().invoke(main, ["experiment", str(path), "--dry-run"])
    assert r.exit_code == 0, r.output
    assert "A train: 11 real vs 1 fake videos (beyond 10:1)" in r.output
    assert "A val: no fake videos" in r.output
    assert "A: 1 identities appear in both training (train/val) and test (e.g. r)" in r.output
    # options the experiment asks for are checked against the cache's own
    for options, message in (
        ({"group": "^[0-9]"}, f"asks for group='^[0-9]', {cache} was made with '^[a-z]'"),
        ({"methods": ["Deepfakes"]}, "records no such option (it has: group)"),
        # and how it was preprocessed: the face detector its faces come from
        (
            {"face_detector": "mtcnn"},
            f"asks for face_detector='mtcnn', {cache} was made with 'hog': preprocess it "
            "again with `--face-detector mtcnn`",
        ),
    ):
        path = _experiment(
            tmp_path,
            cache,
            training={"pretrained": False},
            caches={"A": {"path": str(cache), **options}},
        )
        r = CliRunner().invoke(main, ["experiment", str(path), "--dry-run"])
        assert r.exit_code == 1
        assert message in r.output, r.output
    (cache / "settings.json").unlink()  # as made by an older dffr: options unknown
    preprocess(ds.items(), root, cache, Settings(frames=1, size=64), progress=False)
    path = _experiment(
        tmp_path,
        cache,
        training={"pretrained": False},
        caches={"A": {"path": str(cache), "group": "^[a-z]"}},
    )
    r = CliRunner().invoke(main, ["experiment", str(path), "--dry-run"])
    assert r.exit_code == 1 and "made before dffr recorded a database's options" in r.output
    path = _experiment(tmp_path, tmp_path / "nowhere", training={"pretrained": False})
    r = CliRunner().invoke(main, ["experiment", str(path), "--dry-run"])
    assert r.exit_code == 1 and "A: no cache at" in r.output and "dffr preprocess" in r.output


def test_metrics_carry_each_models_initialisation(tmp_path):
    from dffr.experiments.runner import initialisations

    models = tmp_path / "models" / "A"
    models.mkdir(parents=True)
    init = {"kind": "imagenet", "file": "resnet50-0676ba61.pth", "sha256": "ab" * 32}
    (models / "DSP-FWA_A_eyes.json").write_text(json.dumps({"init": init}))
    (models / "DSP-FWA_A_mouth.json").write_text(json.dumps({"init": {"kind": "random"}}))
    results = pd.DataFrame(
        {
            "train_ddbb": ["A", "A", "A"],
            "detector": ["DSP-FWA", "DSP-FWA", "DSP-FWA"],
            "region": ["eyes", "mouth", "mean(eyes+mouth)"],
        }
    )
    fused = pd.DataFrame(
        {
            "train_ddbb": ["A"],
            "detector": ["DSP-FWA"],
            "region": ["mean(eyes+mouth)"],
            "inputs": ["DSP-FWA/eyes+DSP-FWA/mouth"],
        }
    )
    got = initialisations(tmp_path / "models", results, fused)
    assert list(got["init"]) == ["imagenet", "random", "imagenet+random"]
    assert got["init_files"][0] == "resnet50-0676ba61.pth:" + "ab" * 32
    assert got["init_files"][2] == got["init_files"][0]
