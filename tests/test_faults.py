"""Faults at the wrong moment and runs at the same time (issue 13, items 6, 11, 12, 13):
a worker that dies, a model file that does not load, a checkpoint cut off between its
writes, two runs into one file or cache, two caches of one name in one scores file."""

from __future__ import annotations

import fcntl
import importlib
import json
import os
import subprocess
import sys
import warnings
import zipfile

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from dffr.cli import main
from dffr.datasets import get_dataset
from dffr.datasets.cache import LOCK, build_index, read_videos
from dffr.datasets.preprocess import Settings, preprocess
from dffr.detectors.model_files import model_file_problem
from dffr.locks import LockedError, beside, locked
from dffr.scoring.scores import model_id, score

FAST = Settings(frames=2, size=64)


def _hold(path, shared=False):
    """Another process's lock on `path`, as a second open file (flock is per open file)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    return fd


# 12 -- a worker that dies: its video recorded as failed, the others done, no hang


def test_a_dead_worker_fails_its_video_and_the_others_go_on(tmp_path, place, monkeypatch):
    root = tmp_path / "db"
    place(root, "real/a.mp4", "real/crash.mp4", "fake/b.mp4", "fake/c.mp4")
    pp = importlib.import_module("dffr.datasets.preprocess")
    # by name: the spawned workers import tests.crashing and die in it
    monkeypatch.setattr(pp, "_work", importlib.import_module("tests.crashing").work)
    ds = get_dataset("folder", root)
    cache = tmp_path / "cache"
    summary = preprocess(ds.items(), root, cache, FAST, workers=2, progress=False)
    videos = read_videos(cache).set_index("video")
    assert summary.videos == 4 and len(videos) == 4
    assert "worker process died" in videos.loc["real/crash.mp4", "error"]
    assert (videos.drop("real/crash.mp4")["frames"] == 2).all()  # the others all done
    again = preprocess(ds.items(), root, cache, FAST, workers=2, progress=False)
    assert again.videos == 0 and again.skipped == 4  # recorded: not tried forever


def test_an_error_inside_a_library_fails_one_video_not_the_run(tmp_path, place, monkeypatch):
    root = tmp_path / "db"
    place(root, "real/a.mp4", "fake/b.mp4")
    pp = importlib.import_module("dffr.datasets.preprocess")
    real = pp.process_video

    def odd(item, *args):
        if item.video == "fake/b.mp4":
            raise ZeroDivisionError("in a decoder")
        return real(item, *args)

    monkeypatch.setattr(pp, "process_video", odd)
    ds = get_dataset("folder", root)
    preprocess(ds.items(), root, tmp_path / "cache", FAST, progress=False)
    videos = read_videos(tmp_path / "cache").set_index("video")
    assert videos.loc["fake/b.mp4", "error"] == "ZeroDivisionError while processing: in a decoder"
    assert videos.loc["real/a.mp4", "frames"] == 2


# 13 -- a run that finds its file or cache in use stops at once, saying by whom


def test_locks_keep_two_runs_apart(cache, models, tmp_path):
    out = tmp_path / "scores.parquet"
    fd = _hold(beside(out))
    try:
        with pytest.raises(LockedError, match=f"the scores file {out} is in use by another"):
            score(cache, models, "CelebDF", out, ("DSP-FWA",), ("eyes",), progress=False)
    finally:
        os.close(fd)
    assert not out.exists()
    score(cache, models, "CelebDF", out, ("DSP-FWA",), ("eyes",), progress=False)  # released
    assert out.is_file()

    from dffr.detectors.base import DetectorConfig
    from dffr.detectors.training import train

    weights = tmp_path / "m" / "A" / "DSP-FWA_A_eyes.pt"
    weights.parent.mkdir(parents=True)
    fd = _hold(beside(weights))
    try:
        config = DetectorConfig("DSP-FWA", "eyes", "A", input_size=32, pretrained=False)
        with pytest.raises(LockedError, match=f"the model {weights} is in use"):
            train(config, cache, tmp_path / "m")
    finally:
        os.close(fd)
    assert not (weights.parent / "checkpoints").exists()  # nothing begun

    fd = _hold(cache / LOCK)
    try:
        with pytest.raises(LockedError, match="the cache .* is in use by another dffr run"):
            build_index(cache)
        r = CliRunner().invoke(main, ["merge-cache", str(cache)])
        assert r.exit_code == 1 and "in use by another dffr run" in r.output
    finally:
        os.close(fd)


def test_preprocess_runs_exclude_each_other_but_shards_share(tmp_path, place):
    root = tmp_path / "db"
    place(root, "real/a.mp4", "fake/b.mp4")
    ds = get_dataset("folder", root)
    cache = tmp_path / "cache"
    cache.mkdir()
    fd = _hold(cache / LOCK, shared=True)  # a shard of this cache being processed
    try:
        with pytest.raises(LockedError, match=f"the cache {cache} is in use"):
            preprocess(ds.items(), root, cache, FAST, progress=False)
        done = preprocess(ds.items(), root, cache, FAST, shard=(1, 2), progress=False)
        assert done.index_rows is None  # a shard beside the other: allowed
        shard = _hold(cache / ".dffr-shard-1-of-2.lock")
        try:
            with pytest.raises(LockedError, match=f"shard 1/2 of the cache {cache}"):
                preprocess(ds.items(), root, cache, FAST, shard=(1, 2), progress=False)
        finally:
            os.close(shard)
    finally:
        os.close(fd)
    assert not list(cache.glob("parts/**/.tmp-*"))


def test_a_killed_holder_leaves_no_lock_and_the_holder_is_named(tmp_path):
    target = tmp_path / "scores.parquet"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom dffr.locks import locked, beside\n"
            f"with locked(beside({str(target)!r}), 'x'):\n"
            "    print('held', flush=True); time.sleep(600)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LockedError, match=f"process {holder.pid}"), locked(beside(target), "s"):
            pass
    finally:
        holder.kill()
        holder.wait()
    with locked(beside(target), "s"), locked(beside(target), "s"):  # free; re-entrant
        pass


# 6 -- two caches of one database name never share a scores file's rows unnoticed;
#      a model trained again is scored again


def test_scores_are_keyed_by_their_cache_and_their_model(cache, models, tmp_path):
    import shutil

    out = tmp_path / "scores.parquet"
    other = tmp_path / "other-cache"
    shutil.copytree(cache, other)  # another folder database: also named `folder`
    score(cache, models, "CelebDF", out, ("DSP-FWA",), ("eyes",), progress=False)
    with pytest.raises(Exception, match="--test-ddbb NAME") as e:
        score(other, models, "CelebDF", out, ("DSP-FWA",), ("eyes",), progress=False)
    assert str(cache.resolve()) in str(e.value)
    rep = score(other, models, "CelebDF", out, ("DSP-FWA",), ("eyes",), test_ddbb="second")
    assert rep.scored == [("DSP-FWA", "eyes")]
    df = pd.read_parquet(out)
    assert set(df.groupby("test_ddbb")["cache"].first()) == {
        str(cache.resolve()),
        str(other.resolve()),
    }
    weights = models / "CelebDF" / "DSP-FWA_CelebDF_eyes.pt"
    assert set(df["model"]) == {model_id(weights)}

    # the same model file: skipped; the file replaced (trained again): scored again
    assert score(cache, models, "CelebDF", out, ("DSP-FWA",), ("eyes",)).skipped
    moved = tmp_path / "models"
    shutil.copytree(models, moved)
    import torch

    state = torch.load(moved / "CelebDF" / weights.name, weights_only=True)
    state = {k: v + 0.01 if v.is_floating_point() else v for k, v in state.items()}
    torch.save(state, moved / "CelebDF" / weights.name)
    rep = score(cache, moved, "CelebDF", out, ("DSP-FWA",), ("eyes",), progress=False)
    assert rep.rescored == [("DSP-FWA", "eyes")] and rep.scored == [("DSP-FWA", "eyes")]
    after = pd.read_parquet(out)
    assert len(after) == len(df)  # the old rows replaced, not added to
    mine = after[after["test_ddbb"] == "folder"]
    assert set(mine["model"]) == {model_id(moved / "CelebDF" / weights.name)}
    before = df[df["test_ddbb"] == "folder"].set_index(["video", "frame"])["score"]
    now = mine.set_index(["video", "frame"])["score"]
    assert not np.allclose(before.sort_index(), now.sort_index())


# 11 -- a model file that does not load: named, set aside, trained again (from its
#       checkpoint when there is one); a Keras checkpoint cut off between its writes


def test_unreadable_model_files_are_named(models, tmp_path):
    good = models / "CelebDF" / "DSP-FWA_CelebDF_eyes.pt"
    assert model_file_problem("DSP-FWA", good) is None
    assert model_file_problem("DSP-FWA", tmp_path / "absent.pt") is None
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    assert "not a loadable PyTorch weights file" in model_file_problem("DSP-FWA", cut)
    keras = tmp_path / "m.keras"
    with zipfile.ZipFile(keras, "w") as z:
        z.writestr("config.json", "{}")
        z.writestr("model.weights.h5", b"x" * 5000)
    assert model_file_problem("Xception", keras) is None
    keras.write_bytes(keras.read_bytes()[:-200])
    assert "not a readable Keras model file" in model_file_problem("Xception", keras)
    h5 = tmp_path / "Xception_DB_eyes.hdf5"
    h5.write_bytes(b"not hdf5")
    assert "not a readable Keras model file" in model_file_problem("Xception", h5)


def test_a_keras_checkpoint_cut_between_its_writes_is_not_resumed(tmp_path):
    from dffr.detectors.imagenet import file_digest
    from dffr.detectors.keras_detector import _complete_checkpoint

    ckpt = tmp_path / "X.ckpt.keras"
    ckpt.write_bytes(b"epoch 3 model")
    best = ckpt.with_suffix(".best.npz")
    np.savez(best, np.zeros(3))
    state = {"state": {"epoch": 3}, "log": [], "files": {"model": "", "best": None}}
    state["files"] = {"model": file_digest(ckpt), "best": file_digest(best)}
    ckpt.with_suffix(".state.json").write_text(json.dumps(state))
    assert _complete_checkpoint(ckpt)["state"]["epoch"] == 3
    ckpt.write_bytes(b"epoch 4 model")  # killed after the model moved, before the state
    with pytest.warns(UserWarning, match="checkpoint incomplete .* from the first epoch"):
        assert _complete_checkpoint(ckpt) is None
    ckpt.with_suffix(".state.json").write_text("{}")  # a checkpoint of an older dffr
    with pytest.warns(UserWarning, match="checkpoint incomplete"):
        assert _complete_checkpoint(ckpt) is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _complete_checkpoint(tmp_path / "none.ckpt.keras") is None  # none: silent


# 16 -- images of extreme shapes: "no face found", never a cv2.error; a folder database
#       holding one finishes


def test_extreme_aspect_ratios_are_faceless_images(tmp_path, astronaut):
    from dffr.images import write_image

    root = tmp_path / "db"
    odd = {"wide": (10, 65535), "tall": (65535, 10), "dot": (1, 1), "strip": (300, 20000)}
    for name, shape in odd.items():
        write_image(root / "test" / "fake" / f"{name}.png", np.full((*shape, 3), 90, np.uint8))
    write_image(root / "test" / "real" / "face.png", astronaut)
    images = sorted(str(p) for p in root.rglob("*.png"))
    for command in (["segment", *images, "--out", str(tmp_path / "seg")], ["landmarks", *images]):
        r = CliRunner().invoke(main, command)
        assert "Traceback" not in r.output and "cv2.error" not in r.output, r.output
        assert "4 of 5 file(s) failed" in r.output
        assert "wide.png: no face found in the 65535x10 image" in r.output
        assert "tall.png: no face found in the 10x65535 image" in r.output
    assert len(list((tmp_path / "seg").rglob("*.png"))) >= 5  # the real face's regions

    ds = get_dataset("folder", root)
    cache = tmp_path / "cache"
    for _ in range(2):  # and again: the database can be finished
        preprocess(ds.items(), root, cache, Settings(frames=1, size=64), progress=False)
    videos = read_videos(cache).set_index("video")
    assert len(videos) == 5 and videos.loc["test/real/face.png", "frames"] == 1
    assert all(videos.loc[f"test/fake/{n}.png", "no_face"].tolist() == [0] for n in odd)


# 14 -- the cache follows the metadata: videos no longer listed dropped, labels and
#       splits taken from it on every run, saying how many


def test_the_cache_follows_corrected_metadata(tmp_path, place):
    from dataclasses import replace

    from dffr.datasets.cache import read_index

    root, cache = tmp_path / "dfdc", tmp_path / "cache"
    place(root, "dfdc_train_part_0/r.mp4", "test_videos/t1.mp4", "test_videos/t2.mp4")
    meta = {"r.mp4": {"label": "REAL", "split": "train"}}
    (root / "dfdc_train_part_0" / "metadata.json").write_text(json.dumps(meta))
    (root / "labels.csv").write_text("filename,label\nt1.mp4,0\nt2.mp4,1\n")

    def run(items=None):
        ds = get_dataset("DFDC", root)
        items = items or ds.items()
        return preprocess(items, root, cache, FAST, progress=False, database=ds), ds

    first, ds = run()
    assert first.videos == 3 and (first.dropped, first.redone, first.updated) == (0, 0, 0)
    assert (cache / "faces" / "test_videos" / "t2.mp4").is_dir()
    (root / "labels.csv").write_text("filename,label\nt1.mp4,1\n")  # t1 corrected, t2 gone
    second, ds = run()
    assert (second.dropped, second.redone, second.updated, second.videos) == (1, 1, 0, 1)
    index = read_index(cache)
    assert set(index["video"]) == {"dfdc_train_part_0/r.mp4", "test_videos/t1.mp4"}
    assert set(index.loc[index["video"] == "test_videos/t1.mp4", "label"]) == {1}
    assert not (cache / "faces" / "test_videos" / "t2.mp4").exists()
    assert "test_videos/t2.mp4" not in set(read_videos(cache)["video"])

    moved = [replace(it, split="val") if it.video.endswith("r.mp4") else it for it in ds.items()]
    third, _ = run(moved)  # a new split: written into the cache, nothing processed again
    assert (third.dropped, third.redone, third.updated, third.videos) == (0, 0, 1, 0)
    index = read_index(cache)
    assert set(index.loc[index["video"] == "dfdc_train_part_0/r.mp4", "split"]) == {"val"}
    assert set(read_videos(cache, "val")["video"]) == {"dfdc_train_part_0/r.mp4"}

    r = CliRunner().invoke(
        main,
        ["preprocess", "--ddbb", "DFDC", "--root", str(root), "--out", str(cache),
         "--frames", "2", "--size", "64", "--split", "test"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output  # --split test: the train video is still listed
    assert "1 moved to another split or method" in r.output  # r.mp4 back to its own split
    assert "dfdc_train_part_0/r.mp4" in set(read_index(cache)["video"])


# 21 -- a full or read-only disk: a message, not a traceback; no temporary file left; what
#       was finished kept, and the next run goes on


def test_a_full_disk_stops_the_run_cleanly_and_the_next_one_goes_on(tmp_path, place, monkeypatch):
    import errno

    root, cache = tmp_path / "db", tmp_path / "cache"
    place(root, "real/a.mp4", "real/b.mp4", "fake/c.mp4")
    real_replace, parts = os.replace, []

    def full(src, dst):
        if str(dst).endswith(".json") and "parts" in str(dst):
            parts.append(dst)
            if len(parts) == 2:  # the second video's record: the disk is full
                raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", full)
    command = ["preprocess", "--ddbb", "folder", "--root", str(root), "--out", str(cache)]
    command += ["--frames", "2", "--size", "64"]
    r = CliRunner().invoke(main, command)
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert f"cannot write {parts[1]}: no space left on the device" in r.output
    assert "What was finished before is kept" in r.output
    assert not [p for p in cache.rglob("*") if p.name.startswith(".tmp-")]
    assert len(list((cache / "parts").rglob("*.json"))) == 1  # the first video, complete
    monkeypatch.setattr(os, "replace", real_replace)
    r = CliRunner().invoke(main, command)
    assert r.exit_code == 0, r.output
    assert "2 video(s) processed, 1 already cached" in r.output
    assert len(read_videos(cache)) == 3 and (read_videos(cache)["frames"] == 2).all()


def test_a_read_only_scores_folder_keeps_the_old_scores(cache, models, tmp_path, monkeypatch):
    import errno

    out = tmp_path / "scores.parquet"
    score(cache, models, "CelebDF", out, ("DSP-FWA",), ("eyes",), progress=False)
    before = out.read_bytes()

    def read_only(path, *a, **k):
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(pq, "ParquetWriter", read_only)  # how scores are written
    r = CliRunner().invoke(
        main,
        ["score", "--cache", str(cache), "--models", str(models), "--train-ddbb", "CelebDF",
         "--detectors", "DSP-FWA", "--regions", "mouth", "--out", str(out)],
    )  # fmt: skip
    assert r.exit_code == 1 and "Traceback" not in r.output, r.output
    assert "the file system is read-only" in r.output
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp-")] == []


# 8 -- a face lost and found again on someone else starts a new track


class _Scripted:
    """A backend whose detector sees, per frame, the boxes it is given: `near` finds
    nothing (the face is lost), a full detection finds `boxes[frame]`."""

    locates = True

    def __init__(self, boxes):
        self.boxes, self.frame = boxes, -1
        self.detector = self

    def near(self, frame, prior):
        return None

    def find_faces(self, frame):
        self.frame += 1
        return [(np.array(b, float), 1.0) for b in self.boxes[self.frame]]

    def locate(self, frame, boxes):
        return [np.zeros((68, 2)) for _ in boxes]


def test_a_lost_face_found_on_someone_else_starts_a_new_track():
    from dffr.datasets.tracking import FaceTracker

    me, near_me, other = (100, 100, 200, 200), (130, 110, 230, 210), (600, 100, 700, 200)
    big_other = (500, 50, 750, 300)
    # frame 0: me; 1: lost, found where I could be; 2: me and a larger other person
    # (I am still taken, not the largest); 3: only the other one: a new track
    backend = _Scripted([[me], [near_me], [big_other, near_me], [other]])
    tracker = FaceTracker(backend)
    frame = np.zeros((400, 800, 3), np.uint8)
    tracks = [[t for t, _ in tracker(frame)] for _ in range(4)]
    assert tracks == [[0], [0], [0], [1]]
    assert list(tracker.tracks) == [1]


def test_the_dry_run_names_a_model_that_does_not_load(cache, models, tmp_path):
    import shutil

    from dffr.experiments.plan import plan
    from dffr.experiments.spec import Experiment

    from .conftest import models_study

    mine = tmp_path / "models"
    shutil.copytree(models, mine)
    eyes = mine / "CelebDF" / "DSP-FWA_CelebDF_eyes.pt"
    eyes.write_bytes(eyes.read_bytes()[:500])
    models_study(tmp_path / "x.yaml", cache, mine, [], "x")
    lines = "\n".join(plan(Experiment.load(tmp_path / "x.yaml")).lines)
    assert "CelebDF DSP-FWA mouth: trained" in lines
    assert "CelebDF DSP-FWA eyes: unreadable (not a loadable PyTorch weights file" in lines
    assert "to train again" in lines and "1 model(s) to train" in lines
