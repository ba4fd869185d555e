"""Hostile or broken input, and faults at the wrong moment: nothing escapes the cache,
nothing is silently wrong, nothing needs a traceback to be understood (issue 13)."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from dffr.cli import main
from dffr.datasets import get_dataset
from dffr.datasets.cache import build_index, face_path, read_index, read_videos
from dffr.datasets.preprocess import Settings, preprocess
from dffr.detectors.base import DetectorConfig, InputSizeError, WeightsError, build_detector
from dffr.detectors.model_files import load_detector
from dffr.fusion.fuse import fuse
from dffr.fusion.rules import FusionError


def _inside(folder, root) -> bool:
    return os.path.realpath(folder).startswith(os.path.realpath(root) + os.sep)


# 1 -- a path in a database's metadata never leaves its root, nothing is written outside


@pytest.mark.parametrize(
    "hostile",
    ["../../../../ESCAPED/evil.mp4", "..\\..\\..\\..\\ESCAPED\\evil.mp4", "a/../../../evil.mp4"],
)
def test_metadata_paths_stay_inside_the_root_and_the_cache(tmp_path, place, hostile):
    root, out = tmp_path / "db" / "dfdc", tmp_path / "work" / "cache"
    part = root / "dfdc_train_part_0"
    place(root, "dfdc_train_part_0/ok.mp4")
    place(tmp_path, "ESCAPED/evil.mp4")  # a real video where the path points
    meta = {
        "ok.mp4": {"label": "REAL", "split": "train"},
        hostile: {"label": "FAKE", "split": "train", "original": "../../x.mp4"},
    }
    part.mkdir(parents=True, exist_ok=True)
    (part / "metadata.json").write_text(json.dumps(meta))
    (root / "test_videos").mkdir()
    (root / "labels.csv").write_text(f"filename,label\n{hostile},1\n")
    ds = get_dataset("DFDC", root)
    preprocess(ds.items(), root, out, Settings(frames=1, size=64), progress=False, database=ds)
    written = [p for p in (tmp_path).rglob("*") if p.is_file() and "cache" in str(p)]
    assert written and all(_inside(p, out) for p in written), [
        p for p in written if not _inside(p, out)
    ]
    assert not (tmp_path / "ESCAPED" / "evil.mp4.json").exists()
    fails = pd.read_csv(out / "failures.csv")
    refused = fails[fails["reason"].str.startswith("refused")]
    assert len(refused) == 2 and refused["video"].str.startswith("refused/").all()
    assert all("evil.mp4" in r and "leaves the database root" in r for r in refused["reason"])
    assert set(read_index(out)["video"]) == {"dfdc_train_part_0/ok.mp4"}
    with pytest.raises(Exception, match="not a relative path inside the database"):
        face_path("../../x.mp4", 0)


def test_celebdf_list_paths_stay_inside_the_root(tmp_path, place):
    (tmp_path / "List_of_testing_videos.txt").write_text(
        "1 Celeb-real/id0_0001.mp4\n0 ../../outside/id1_id2_0001.mp4\n1 /etc/id3_0001.mp4\n"
    )
    place(tmp_path, "Celeb-real/id0_0001.mp4")
    items = {i.video: i for i in get_dataset("CelebDF", tmp_path).items()}
    refused = [i for i in items.values() if i.refused]
    assert len(refused) == 2 and all(i.video.startswith("refused/") for i in refused)
    assert all("leaves the database root" in i.refused and not i.identities for i in refused)


# 2, 5, 18 -- a model and its sidecar: together, consistent, valid


def _tiny_model(tmp_path, region="eyes", ddbb="A"):
    from dffr.detectors.training import save_model

    det = build_detector(
        DetectorConfig("DSP-FWA", region=region, ddbb=ddbb, input_size=64, pretrained=False),
        "cpu",
    )
    path = tmp_path / ddbb / f"DSP-FWA_{ddbb}_{region}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_model(det, path, {"config": det.config.to_dict(), "init": det.init})
    return det, path


def test_a_model_and_its_sidecar_appear_together_or_not_at_all(tmp_path, monkeypatch):
    det, path = _tiny_model(tmp_path)
    assert path.is_file() and path.with_suffix(".json").is_file()
    assert not list(path.parent.glob(".tmp-*"))
    before = path.read_bytes()
    from dffr.detectors import training

    def killed(src, dst):  # the machine dies as the sidecar is moved into place
        raise KeyboardInterrupt

    monkeypatch.setattr(training.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        training.save_model(det, path, {"config": det.config.to_dict()})
    # the old model is gone with its sidecar untouched: no model means train again,
    # never a model read with another model's sidecar
    assert not path.exists() or path.read_bytes() == before
    assert not list(path.parent.glob(".tmp-*"))


def test_a_dffr_keras_model_without_its_sidecar_is_refused(tmp_path):
    bare = tmp_path / "Xception_A_eyes.keras"
    bare.write_bytes(b"PK\x03\x04")
    with pytest.raises(WeightsError, match="without its sidecar .* 1 - P\\(fake\\)"):
        load_detector(bare, "cpu")


def test_a_sidecar_must_describe_the_file_it_sits_beside(tmp_path):
    _, mouth = _tiny_model(tmp_path, "mouth")
    eyes = mouth.with_name("DSP-FWA_A_eyes.pt")
    eyes.write_bytes(mouth.read_bytes())
    eyes.with_suffix(".json").write_text(mouth.with_suffix(".json").read_text())
    with pytest.raises(
        WeightsError, match="named for DSP-FWA / A / eyes .* says DSP-FWA / A / mouth"
    ):
        load_detector(eyes, "cpu")
    side = eyes.with_suffix(".json")
    good = json.loads(mouth.with_suffix(".json").read_text())
    for bad, message in (
        ("[1, 2]", "a JSON object with a 'config' object"),
        ("{}", "a JSON object with a 'config' object"),
        ('{"config": {"region": "eyes"}}', "config has no 'detector'"),
        (json.dumps({**good, "config": {**good["config"], "input_size": "abc"}}), "input_size"),
        (json.dumps({**good, "config": {**good["config"], "options": {"fake_index": 7}}}), "7"),
        (json.dumps({**good, "config": {**good["config"], "options": []}}), "options = \\[\\]"),
        (json.dumps({**good, "config": {**good["config"], "detector": "Nope"}}), "'Nope'"),
        ("{not json", "unreadable sidecar"),
    ):
        side.write_text(bad)
        with pytest.raises(WeightsError, match=message):
            load_detector(eyes, "cpu")


# 3, 9, 22 -- a fusion rule's result: aligned, finite, one number per row


def _scores():
    rng = np.random.default_rng(1)
    rows = []
    for i in range(20):
        for region in ("eyes", "mouth"):
            rows.append(
                {
                    "video": f"v{i}",
                    "frame": 0,
                    "track": 0,
                    "label": i % 2,
                    "video_label": i % 2,
                    "split": "val" if i < 10 else "test",
                    "method": "m",
                    "test_ddbb": "A",
                    "train_ddbb": "A",
                    "detector": "D",
                    "region": region,
                    "score": (i % 2) * 0.5 + rng.uniform(0, 0.4),
                }
            )
    return pd.DataFrame(rows)


def test_fusion_rule_results_are_aligned_checked_and_refused_clearly(tmp_path):
    scores = _scores()
    rules = tmp_path / "rules.py"
    rules.write_text(
        "import numpy as np, pandas as pd\n"
        "def sorted_mean(s):\n    return s.mean(axis=1).sort_values()\n"
        "def other_index(s):\n    return pd.Series(s.mean(axis=1).to_numpy())\n"
        "def words(s):\n    return ['high'] * len(s)\n"
        "def table(s):\n    return np.stack([s.mean(axis=1)] * 2, axis=1)\n"
        "def nans(s):\n    return s.mean(axis=1) / 0 * 0\n"
        "class Broken:\n"
        "    def fit(self, X, y):\n        raise RuntimeError('no convergence')\n"
        "    def __call__(self, X):\n        return X.mean(axis=1)\n"
    )
    plain = fuse(scores, rule="mean", subset=["eyes", "mouth"])
    aligned = fuse(scores, rule=f"{rules}:sorted_mean", subset=["eyes", "mouth"])
    assert np.allclose(aligned["score"], plain["score"])  # by index, not by position
    for name, message in (
        ("other_index", "a Series whose index is not the rows'"),
        ("words", "returned non-numbers"),
        ("table", "returned shape \\(20, 2\\)"),
        ("nans", "returned 20 NaN or infinite score"),
    ):
        with pytest.raises(FusionError, match=message):
            fuse(scores, rule=f"{rules}:{name}", subset=["eyes", "mouth"])
    from dffr.fusion.rules import FUSION

    @FUSION.register("test_broken_fit")
    class Broken:
        def fit(self, scores, labels):
            raise RuntimeError("no convergence")

        def predict_proba(self, scores):
            raise AssertionError("never fitted")

    with pytest.raises(FusionError, match="could not be fitted: RuntimeError: no convergence"):
        fuse(scores, rule="test_broken_fit", subset=["eyes", "mouth"])


# 4 -- two videos with one stem: their own crops


def test_videos_with_the_same_stem_keep_their_own_crops(tmp_path, place, face_video):
    import shutil

    root = tmp_path / "db"
    place(root, "real/clip.mp4")
    shutil.copy(face_video, root / "real" / "clip.avi")  # another container, same stem
    ds = get_dataset("folder", root)
    preprocess(ds.items(), root, tmp_path / "c", Settings(frames=2, size=64), False, database=ds)
    df = read_index(tmp_path / "c")
    assert set(df["video"]) == {"real/clip.mp4", "real/clip.avi"} and df["face"].is_unique
    for video, g in df.groupby("video"):
        assert all(f.startswith(f"faces/{video}/") for f in g["face"])


# 10 -- a killed write never becomes a record


def test_leftover_temporary_records_are_never_read_and_are_cleaned(tmp_path, place):
    root = tmp_path / "db"
    place(root, "real/a.mp4", "fake/b.mp4")
    ds = get_dataset("folder", root)
    cache = tmp_path / "c"
    preprocess(ds.items(), root, cache, Settings(frames=3, size=64), False, database=ds)
    rows = len(read_index(cache))
    part = next((cache / "parts").rglob("*.json"))
    (part.parent / ".tmp-abc123.json").write_text(part.read_text())  # a complete leftover
    (part.parent / ".tmp-def456.json").write_text("")  # an empty one
    (cache / "faces" / ".tmp-x.png").parent.mkdir(exist_ok=True)
    (cache / "faces" / ".tmp-x.png").write_bytes(b"")
    assert build_index(cache)[0] == rows  # neither counted nor a crash
    assert not list(cache.rglob(".tmp-*"))
    part.write_text("{truncated")  # a damaged record: its video is done again
    assert build_index(cache)[0] < rows and not part.exists()
    again = preprocess(ds.items(), root, cache, Settings(frames=3, size=64), False, database=ds)
    assert again.videos == 1 and len(read_index(cache)) == rows
    assert len(read_videos(cache)) == 2


# 17 -- numbers out of range are refused at the command line, or by the detector


def test_numeric_options_out_of_range_are_refused(cache, tmp_path):
    base = ["train", "--detector", "DSP-FWA", "--region", "eyes", "--cache", str(cache)]
    for option, value in (("--epochs", "0"), ("--batch", "0"), ("--lr", "-1")):
        r = CliRunner().invoke(main, [*base, option, value, "--out", str(tmp_path)])
        assert r.exit_code == 2 and option in r.output
    r = CliRunner().invoke(
        main, [*base, "--input-size", "16", "--from-scratch", "--out", str(tmp_path)]
    )
    assert r.exit_code == 1 and "DSP-FWA needs an input of at least 32x32 px, not 16" in r.output
    with pytest.raises(InputSizeError, match="Xception needs an input of at least 71x71"):
        build_detector(DetectorConfig("Xception", input_size=64, pretrained=False), "cpu")
    r = CliRunner().invoke(
        main,
        ["score", "--cache", str(cache), "--train-ddbb", "A", "--batch", "0", "--out", "x"],
    )
    assert r.exit_code == 2 and "--batch" in r.output
    pre = ["preprocess", "--ddbb", "folder", "--root", str(tmp_path), "--out", str(tmp_path / "c")]
    for option, value in (("--scale", "0"), ("--frames", "0"), ("--size", "0")):
        r = CliRunner().invoke(main, [*pre, option, value])
        assert r.exit_code == 2 and option in r.output
    assert not (tmp_path / "c").exists()  # refused before anything is made
    r = CliRunner().invoke(
        main, ["evaluate", "--scores", str(cache / "index.parquet"), "--bootstrap", "-1"]
    )
    assert r.exit_code == 2 and "--bootstrap" in r.output


# 28 -- $DFFR_DEVICE is the command line's default too


def test_dffr_device_environment_variable_is_honoured(monkeypatch, tmp_path):
    monkeypatch.setenv("DFFR_DEVICE", "cuda:3")
    r = CliRunner().invoke(main, ["weights", "list"])
    assert r.exit_code == 2 and "$DFFR_DEVICE" in r.output and "cuda:3" in r.output
    monkeypatch.setenv("DFFR_DEVICE", "cpu")
    assert CliRunner().invoke(main, ["weights", "list"]).exit_code == 0


# 20 -- metadata, indexes and score tables of the wrong shape: clear errors


def test_metadata_and_tables_of_the_wrong_shape_are_named(tmp_path, place):
    from dffr.datasets import DatasetError
    from dffr.scoring.scores import read_scores

    part = tmp_path / "dfdc" / "dfdc_train_part_0"
    part.mkdir(parents=True)
    for meta, message in (
        ("[1, 2]", "expected an object of video -> {label, split, original}, not a list"),
        ('{"a.mp4": "FAKE"}', "'a.mp4' is not an object"),
        ('{"a.mp4": {"label": "MAYBE"}}', "a.mp4 has no FAKE/REAL label"),
    ):
        (part / "metadata.json").write_text(meta)
        with pytest.raises(DatasetError, match=message.replace("{", "\\{").replace("}", "\\}")):
            get_dataset("DFDC", tmp_path / "dfdc").items()
    (part / "metadata.json").write_text("{}")
    (tmp_path / "dfdc" / "test_videos").mkdir()
    for csv, message in (("name,score\na.mp4,1\n", "expected the columns filename,label"),
                         ("filename,label\na.mp4,yes\n", "labels.csv:2: label 'yes'")):  # fmt: skip
        (tmp_path / "dfdc" / "labels.csv").write_text(csv)
        with pytest.raises(DatasetError, match=message):
            get_dataset("DFDC", tmp_path / "dfdc").items()
    splits = tmp_path / "ff" / "splits"
    splits.mkdir(parents=True)
    for name in ("train", "val", "test"):
        (splits / f"{name}.json").write_text('[["001", "002"]]')
    (splits / "val.json").write_text('{"001": "002"}')
    with pytest.raises(DatasetError, match="val.json: expected a list of \\[target, source\\]"):
        get_dataset("FaceForensics", tmp_path / "ff")
    # a damaged index, a YAML given as scores, a table without scores
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "index.parquet").write_bytes(b"PAR1 truncated")
    with pytest.raises(Exception, match="not a readable cache index .* merge-cache"):
        read_index(tmp_path / "c")
    yaml_file = tmp_path / "e.yaml"
    yaml_file.write_text("name: x\n")
    with pytest.raises(Exception, match="not a readable scores file"):
        read_scores(yaml_file)
    pd.DataFrame({"video": ["a"], "frame": [0]}).to_parquet(tmp_path / "s.parquet")
    r = CliRunner().invoke(main, ["evaluate", "--scores", str(tmp_path / "s.parquet")])
    assert r.exit_code == 1 and "needs the column(s) ['label', 'split'" in r.output
    r = CliRunner().invoke(
        main, ["fuse", "--scores", str(yaml_file), "--rule", "mean", "--out", "x.parquet"]
    )
    assert r.exit_code == 1 and "not a readable scores file" in r.output


# 30, 31 -- multi-frame images are said to be read as one frame; huge ones refused early


def test_multi_frame_images_are_said_once_and_huge_images_refused(tmp_path, caplog):
    import struct
    import zlib

    from PIL import Image

    from dffr import images
    from dffr.errors import ImageReadError

    frames = [Image.new("RGB", (40, 30), (v, 0, 0)) for v in (10, 200, 90)]
    for name in ("a.gif", "b.gif"):
        frames[0].save(tmp_path / name, save_all=True, append_images=frames[1:])
    images._SAID_FIRST_FRAME = False
    with caplog.at_level("WARNING", logger="dffr.images"):
        first = images.read_image(tmp_path / "a.gif")
        images.read_image(tmp_path / "b.gif")
    said = [r.getMessage() for r in caplog.records if "only the first is read" in r.message]
    assert len(said) == 1 and "a.gif holds 3 frames" in said[0]
    assert first.shape == (30, 40, 3) and abs(int(first[0, 0, 0]) - 10) <= 2

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", 19000, 19000, 8, 2, 0, 0, 0)  # 19000 x 19000 RGB
    huge = tmp_path / "huge.png"
    huge.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))
    with pytest.raises(ImageReadError, match="image too large: more than 100 Mpixel"):
        images.read_image(huge)  # refused from its header, before any decoding


# 27 -- symlinked sub-folders of a folder database are followed, link loops end


def test_folder_databases_follow_symlinked_folders_once(tmp_path, place):
    elsewhere = tmp_path / "other_disk"
    place(elsewhere, "x.png", "deeper/y.png")
    place(tmp_path / "db", "real/a.png", "fake/b.png")
    (tmp_path / "db" / "real" / "linked").symlink_to(elsewhere, target_is_directory=True)
    (elsewhere / "deeper" / "loop").symlink_to(elsewhere, target_is_directory=True)
    videos = {i.video for i in get_dataset("folder", tmp_path / "db").items()}
    assert videos == {"real/a.png", "fake/b.png", "real/linked/x.png", "real/linked/deeper/y.png"}


# 23 -- given landmarks far outside the image, or not numbers: a message, not a crash


def test_given_landmarks_far_outside_the_image_are_refused(astronaut, dlib_backend):
    from dffr.errors import DffrError
    from dffr.regions import get_backend

    good = dlib_backend.detect(astronaut)[0].landmarks
    assert len(get_backend("given", landmarks=good).detect(astronaut)) == 1
    for bad, message in (
        (good * 1e9, "far outside the 512x512 image"),
        (good + 1e6, "far outside"),
        (np.where(np.arange(68)[:, None] == 3, np.nan, good), "not all finite"),
    ):
        with pytest.raises(DffrError, match=message):
            get_backend("given", landmarks=bad).detect(astronaut)
