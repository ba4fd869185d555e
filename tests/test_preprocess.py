"""Preprocessing: evenly spaced frames decoded once, tracked faces, a resumable and
shardable cache, and every broken file recorded as a failure."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from dffr.cli import main
from dffr.datasets import get_dataset
from dffr.datasets.cache import INDEX, iter_regions, merge_caches, read_index, region_image
from dffr.datasets.preprocess import Settings, in_shard, preprocess
from dffr.datasets.tracking import FaceTracker
from dffr.datasets.video import VideoError, read_frames, sample_indices
from dffr.regions import apply_mask, region_masks

from .conftest import write_face_video, write_video

FAST = Settings(frames=4, size=96)


def _layout(root, place, n_real=3, n_fake=3):
    place(
        root, *[f"real/v{k}.mp4" for k in range(n_real)], *[f"fake/v{k}.mp4" for k in range(n_fake)]
    )
    return get_dataset("folder", root)


def test_sample_indices_span_the_whole_video():
    assert sample_indices(100, 5) == [0, 25, 50, 74, 99]
    assert sample_indices(3, 20) == [0, 1, 2]
    assert sample_indices(0, 5) == []


def test_read_frames_decodes_the_frames_it_claims(tmp_path, astronaut):
    video = write_face_video(tmp_path / "v.mp4", astronaut, n_frames=12)
    got = list(read_frames(video, 4))
    assert [i for i, _ in got] == [0, 4, 7, 11]
    for i, frame in got:
        assert frame.shape == (240, 320, 3)
        assert abs(int(frame[2:6, 2:6].mean()) - 10 * i) <= 4, i  # the frame's own marker


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"", "empty file"),
        (os.urandom(4000), "cannot open as a video"),
        ("truncated", "cannot open as a video"),
    ],
)
def test_broken_videos_raise_specific_errors(tmp_path, face_video, content, reason):
    bad = tmp_path / "bad.mp4"
    data = face_video.read_bytes()
    bad.write_bytes(data[: len(data) // 2] if content == "truncated" else content)
    with pytest.raises(VideoError, match=reason):
        list(read_frames(bad, 4))


def test_tracker_detects_once_and_follows_the_face(face_video, dlib_backend):
    tracker = FaceTracker(dlib_backend)
    tracked = [tracker(f) for _, f in read_frames(face_video, 12)]
    assert all(len(t) == 1 and t[0][0] == 0 for t in tracked)  # one face, track 0
    faces = [t[0][1] for t in tracked]
    assert tracker.full_detections == 1
    xs = [f.landmarks[30, 0] for f in faces]  # the nose moves right with the face
    assert np.all(np.diff(xs) > 0)


def test_preprocess_index_failures_and_regions(tmp_path, place, face_video):
    root = tmp_path / "db"
    ds = _layout(root, place, 2, 2)
    (root / "fake" / "empty.mp4").write_bytes(b"")
    (root / "real" / "junk.mp4").write_bytes(os.urandom(3000))
    data = face_video.read_bytes()
    (root / "fake" / "cut.mp4").write_bytes(data[: len(data) // 3])
    (root / "real" / "noface.png").write_bytes(b"")
    from dffr.images import write_image

    write_image(root / "real" / "blank.png", np.full((120, 160, 3), 90, np.uint8))
    s = preprocess(ds.items(), root, tmp_path / "cache", FAST, progress=False)
    assert s.index_rows == 16 and s.frames == 16
    df = read_index(tmp_path / "cache")
    assert list(df.columns[:7]) == ["ddbb", "video", "frame", "label", "split", "method", "face"]
    assert set(df["video"]) == {"real/v0.mp4", "real/v1.mp4", "fake/v0.mp4", "fake/v1.mp4"}
    assert sorted(set(df["frame"])) == [0, 4, 7, 11]
    assert df["landmarks"][0].shape == (68, 2) and (df["label"] == (df["method"] != "real")).all()
    fails = pd.read_csv(tmp_path / "cache" / "failures.csv").set_index("video")
    assert "empty file" in fails.loc["fake/empty.mp4", "reason"]
    assert "cannot open" in fails.loc["real/junk.mp4", "reason"]
    assert "cannot open" in fails.loc["fake/cut.mp4", "reason"]
    assert fails.loc["real/blank.png", "reason"] == "no face found"
    assert fails.loc["real/blank.png", "frame"] == 0
    # region images from crop + landmarks, on the fly
    row = df.iloc[0]
    eyes = region_image(tmp_path / "cache", row, "eyes")
    from dffr.images import read_image

    crop = read_image(tmp_path / "cache" / row["face"])
    assert crop.shape == (96, 96, 3)
    assert np.array_equal(
        eyes, apply_mask(crop, region_masks(row["landmarks"], crop.shape)["eyes"])
    )
    assert sum(1 for _ in iter_regions(tmp_path / "cache", "mouth", split=None)) == 16


def test_rerun_skips_finished_videos(tmp_path, place):
    ds = _layout(tmp_path / "db", place, 2, 1)
    first = preprocess(ds.items(), ds.root, tmp_path / "c", FAST, progress=False)
    again = preprocess(ds.items(), ds.root, tmp_path / "c", FAST, progress=False)
    assert (first.videos, again.videos, again.skipped) == (3, 0, 3)
    assert again.index_rows == first.index_rows


def test_shards_partition_the_videos_and_merge_to_the_full_index(tmp_path, place):
    ds = _layout(tmp_path / "db", place, 3, 3)
    items = ds.items()
    assert sorted(
        v for i in range(3) for v in [it.video for it in items if in_shard(it.video, (i, 3))]
    ) == sorted(it.video for it in items)
    full = preprocess(items, ds.root, tmp_path / "full", FAST, progress=False)
    for i in range(2):
        s = preprocess(items, ds.root, tmp_path / f"shard{i}", FAST, shard=(i, 2), progress=False)
        assert s.index_rows is None and not (tmp_path / f"shard{i}" / INDEX).exists()
    rows, _ = merge_caches(tmp_path / "merged", [tmp_path / "shard0", tmp_path / "shard1"])
    assert rows == full.index_rows
    a = pd.read_parquet(tmp_path / "full" / INDEX)
    b = pd.read_parquet(tmp_path / "merged" / INDEX)
    pd.testing.assert_frame_equal(a, b)


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_index(tmp_path, place):
    ds = _layout(tmp_path / "db", place, 4, 4)
    args = [
        sys.executable,
        "-m",
        "dffr",
        "preprocess",
        "--ddbb",
        "folder",
        "--root",
        str(ds.root),
        "--frames",
        "6",
        "--size",
        "96",
    ]
    subprocess.run(args + ["--out", str(tmp_path / "straight")], check=True, capture_output=True)
    victim = tmp_path / "killed"
    proc = subprocess.Popen(
        args + ["--out", str(victim)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 120
    while time.time() < deadline and len(list((victim / "parts").rglob("*.json"))) < 3:
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    done_before = len(list((victim / "parts").rglob("*.json")))
    assert 0 < done_before < 8, "the run was not interrupted mid-way"
    assert not (victim / INDEX).exists()
    result = CliRunner().invoke(main, args[3:] + ["--out", str(victim)])
    assert result.exit_code == 0, result.output
    assert f"{8 - done_before} video(s) processed, {done_before} already cached" in result.output
    a = pd.read_parquet(tmp_path / "straight" / INDEX)
    b = pd.read_parquet(victim / INDEX)
    pd.testing.assert_frame_equal(a, b)
    for face in a["face"]:
        assert (tmp_path / "straight" / face).read_bytes() == (victim / face).read_bytes()
    assert not list(victim.rglob(".tmp-*"))


@pytest.mark.slow
def test_workers_give_the_same_index(tmp_path, place):
    ds = _layout(tmp_path / "db", place, 2, 2)
    preprocess(ds.items(), ds.root, tmp_path / "one", FAST, workers=1, progress=False)
    preprocess(ds.items(), ds.root, tmp_path / "two", FAST, workers=2, progress=False)
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "one" / INDEX), pd.read_parquet(tmp_path / "two" / INDEX)
    )


@pytest.mark.slow
def test_real_ffpp_and_dfdc_samples(shared, tmp_path):
    ff = get_dataset("FaceForensics", shared / "ffpp")
    import json

    official = {}
    for split in ("train", "val", "test"):
        for pair in json.loads((shared / "ffpp" / "splits" / f"{split}.json").read_text()):
            official.update({v: split for v in pair})
    items = ff.items()
    assert len(items) == 7
    for it in items:
        stem = it.video.rsplit("/", 1)[1].split(".")[0]
        assert it.split == official[stem.split("_")[0]]
        assert it.label == (0 if it.video.startswith("original_sequences") else 1)
        assert it.method == ("real" if it.label == 0 else it.video.split("/")[1])
    s = preprocess(items, ff.root, tmp_path / "ff", Settings(frames=3), progress=False)
    df = read_index(tmp_path / "ff")
    assert s.failures == 0 and len(df) == 21  # a face in every sampled frame of every video
    assert (df["face_size"] > 60).all()
    dfdc = get_dataset("DFDC", shared / "dfdc")
    s = preprocess(dfdc.items(), dfdc.root, tmp_path / "dfdc", Settings(frames=3), progress=False)
    fails = pd.read_csv(tmp_path / "dfdc" / "failures.csv")
    missing = fails[fails["reason"].str.startswith("missing: listed in")]
    assert set(missing["video"]) == {
        "dfdc_train_part_0/awnfpubqmo.mp4",
        "dfdc_train_part_1/vtfpbtmgfh.mp4",
        "dfdc_train_part_1/zvqinhzeah.mp4",
    }
    assert len(read_index(tmp_path / "dfdc")) == 3  # brtujopkby.mp4: face in all 3 frames


def _two_faces(astronaut, right_face, n=6):
    """Frames of two people side by side, drifting a little."""
    import cv2
    from matplotlib import cbook

    from dffr.images import read_image

    hopper = read_image(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    left = cv2.resize(astronaut[30:330, 100:400], (150, 150))
    right = cv2.resize(right_face if right_face is not None else hopper[40:440, 60:460], (150, 150))
    frames = []
    for i in range(n):
        frame = np.full((220, 420, 3), 30, np.uint8)
        frame[30 + i : 180 + i, 20 + 2 * i : 170 + 2 * i] = left
        frame[35 - i : 185 - i, 240 - 2 * i : 390 - 2 * i] = right
        frames.append(frame)
    return frames


def test_every_dfdc_face_is_tracked_and_only_the_swapped_one_is_fake(tmp_path, astronaut):
    import json

    part = tmp_path / "dfdc_train_part_0"
    write_video(part / "orig.mp4", _two_faces(astronaut, None))
    # the fake: the right-hand person's face swapped for another (the astronaut's)
    write_video(part / "fake.mp4", _two_faces(astronaut, astronaut[30:330, 100:400]))
    meta = {
        "orig.mp4": {"label": "REAL", "split": "train"},
        "fake.mp4": {"label": "FAKE", "split": "train", "original": "orig.mp4"},
    }
    (part / "metadata.json").write_text(json.dumps(meta))
    ds = get_dataset("DFDC", tmp_path)
    s = preprocess(
        ds.items(), tmp_path, tmp_path / "c", Settings(frames=3, size=96), False, database=ds
    )
    assert s.failures == 0
    df = read_index(tmp_path / "c")
    assert len(df) == 12 and set(df["track"]) == {0, 1}  # two faces in each of 3 frames x 2
    x = [(m[0, 2] - 48) / -m[0, 0] for m in df["matrix"]]  # the crop centre in the frame
    df["side"] = np.where(np.array(x) > 210, "right", "left")
    assert (df.groupby(["video", "track"])["side"].nunique() == 1).all()  # tracks never swap
    fake = df[df["video"] == "dfdc_train_part_0/fake.mp4"].groupby("side")
    assert fake["label"].unique().to_dict() == {"left": [0], "right": [1]}
    assert (df["video_label"] == (df["video"] == "dfdc_train_part_0/fake.mp4")).all()
    sources = df[df["video"].str.endswith("fake.mp4")]["label_source"]
    assert sources.str.startswith("difference from original").all()
    diffs = df[df["video"].str.endswith("fake.mp4")].groupby("side")["diff"].median()
    assert diffs["left"] < 4.0 < 20 < diffs["right"]  # untouched: encoding noise only
    original = df[df["video"] == "dfdc_train_part_0/orig.mp4"]
    assert (original["label"] == 0).all() and (original["label_source"] == "video").all()
    assert (tmp_path / "c" / "faces/dfdc_train_part_0/fake.mp4/000000_1.png").is_file()
    # without the original on disk, every face of the fake is fake, and the cache says why
    (part / "orig.mp4").unlink()
    preprocess(
        ds.items(), tmp_path, tmp_path / "c2", Settings(frames=3, size=96), False, database=ds
    )
    df = read_index(tmp_path / "c2")
    assert (df["label"] == 1).all() and len(df) == 6
    assert (df["label_source"] == "video (original dfdc_train_part_0/orig.mp4 not on disk)").all()


def test_largest_face_only_unless_every_face_is_asked_for(tmp_path, astronaut):
    video = write_video(tmp_path / "db" / "real" / "two.mp4", _two_faces(astronaut, None))
    ds = get_dataset("folder", tmp_path / "db")
    preprocess(
        ds.items(), ds.root, tmp_path / "one", Settings(frames=2, size=96), False, database=ds
    )
    assert set(read_index(tmp_path / "one")["track"]) == {0}
    preprocess(
        ds.items(), ds.root, tmp_path / "all", Settings(frames=2, size=96, faces="all"), False
    )
    assert len(read_index(tmp_path / "all")) == 4 and video.is_file()
