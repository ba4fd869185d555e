"""Face detectors as a registry of their own: each on the real samples, the dim-room DFDC
frame HOG misses, boxes redrawn for the landmark model, the choice recorded in a cache,
and S3FD's weights fetched and checked (a stand-in file served on 127.0.0.1)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from dffr.cli import main
from dffr.datasets.tracking import FaceTracker, overlap
from dffr.datasets.video import read_frames
from dffr.errors import DffrError, MissingWeightsError
from dffr.images import read_image
from dffr.regions import get_backend
from dffr.regions.backends.given import annotated_faces
from dffr.regions.face_detection import FACE_DETECTORS, convert, get_face_detector
from dffr.regions.landmarks import landmark_box
from dffr.transforms.perturbations import perturb

from .conftest import served


def frames_of(path, n):
    return [f for _, f in read_frames(path, n)]


@pytest.fixture(scope="module")
def ffpp_frames(shared):
    return [f for p in sorted((shared / "ffpp").rglob("*.mp4")) for f in frames_of(p, 2)]


@pytest.fixture(scope="module")
def hog():
    return get_face_detector("hog")


def test_the_registry_and_every_command_offer_the_face_detectors():
    assert {"hog", "mmod", "mtcnn", "sfd"} <= set(FACE_DETECTORS.names())
    for command in (["segment"], ["landmarks"], ["preprocess"]):
        r = CliRunner().invoke(main, [*command, "--help"])
        assert "--face-detector" in r.output and "mtcnn" in r.output, command


@pytest.mark.parametrize("name", ["hog", "mtcnn"])
def test_each_detector_finds_the_faces_of_the_real_videos(name, ffpp_frames, hog, shared):
    det = get_face_detector(name)
    crops = [read_image(p) for p in sorted((shared / "dfdc_face_crops").rglob("*.png"))]
    assert sum(bool(det(c)) for c in crops) >= 0.9 * len(crops)  # tight 50-126 px crops
    ious = []
    for frame in ffpp_frames:
        found = det(frame)
        assert found, f"{name}: no face in an FF++ frame"
        reference = hog(frame)
        if reference:  # where both find the face, the boxes agree once redrawn alike
            ious.append(max(overlap(convert(b, name, "hog"), reference[0][0]) for b, _ in found))
    assert len(ious) >= 10 and np.median(ious) > 0.7, ious


@pytest.mark.slow
def test_dlibs_cnn_detector_finds_the_faces_hog_finds(ffpp_frames, hog):
    det = get_face_detector("mmod")
    for frame in ffpp_frames[::5]:  # ~7 s a frame on one core
        found, reference = det(frame), hog(frame)
        assert found and reference
        assert max(overlap(convert(b, "mmod", "hog"), reference[0][0]) for b, _ in found) > 0.6


def test_mtcnn_finds_the_dfdc_face_in_a_dim_room_where_hog_does_not(shared, hog):
    video = shared / "dfdc" / "dfdc_train_part_0" / "brtujopkby.mp4"
    frame = frames_of(video, 3)[1]
    face = hog(frame)[0][0]
    # 85% of the light lost, and a sensor's grain: the case of a dark DFDC training video
    dark = perturb(perturb(frame, "dim", 0.85), "noise", 3.0, seed=1)
    assert hog(dark) == []
    found = get_face_detector("mtcnn")(dark)
    assert len(found) == 1
    assert overlap(convert(found[0][0], "mtcnn", "hog"), face) > 0.5
    # and the whole pipeline goes on from it: landmarks on the face, not elsewhere
    be = get_backend("dlib", face_detector="mtcnn")
    (points,) = be.locate(dark, [found[0][0]])
    assert overlap(landmark_box(points), face) > 0.3


def test_a_videos_frames_searched_together_give_the_faces_found_one_by_one(shared):
    """The GPU path (one MTCNN pass for a video's frames), run here on the CPU: the same
    faces as frame by frame, and the tracker gives the same tracks from them."""
    video = sorted((shared / "ffpp").rglob("*.mp4"))[0]
    frames = frames_of(video, 6)
    one, together = get_face_detector("mtcnn"), get_face_detector("mtcnn", batch_frames=True)
    assert not one.batch_frames  # the default on a CPU
    alone, batched = [one(f) for f in frames], together.detect_frames(frames)
    assert [len(f) for f in alone] == [len(f) for f in batched] and all(alone)
    for a, b in zip(alone, batched, strict=True):
        np.testing.assert_allclose([x for x, _ in a], [x for x, _ in b], atol=0.5)

    def tracked(batch_frames: bool):
        be = get_backend("dlib", face_detector="mtcnn")
        be.detector.batch_frames = batch_frames
        tracker = FaceTracker(be, all_faces=True)
        stream = [(k, f) for k, f in enumerate(frames)] + [(len(frames), None)]
        made = tracker.track(stream, batch=4)
        return [(i, [(t, f.landmarks) for t, f in found]) for i, _, found in made]

    plain, fed = tracked(False), tracked(True)
    assert [i for i, _ in plain] == [i for i, _ in fed] == list(range(len(frames) + 1))
    assert plain[-1][1] == [] and any(faces for _, faces in plain)
    for (_, a), (_, b) in zip(plain, fed, strict=True):
        assert [t for t, _ in a] == [t for t, _ in b]
        for (_, pa), (_, pb) in zip(a, b, strict=True):  # dlib rounds boxes to pixels
            np.testing.assert_allclose(pa, pb, atol=2)


def test_boxes_are_redrawn_as_the_landmark_model_expects(shared):
    """dlib's predictor was trained on HOG's boxes: MTCNN's box (which takes in the
    forehead) redrawn as HOG's gives points as good as HOG's own; given as it is, worse."""
    faces = annotated_faces(shared / "landmarks")
    be = get_backend("dlib", face_detector="mtcnn")
    hog_be = get_backend("dlib")

    def nme(backend, redraw: bool) -> float:
        errors = []
        for path, truth in faces:
            image = read_image(path)
            target = landmark_box(truth)
            found = [b for b, _ in backend.find_faces(image) if overlap(b, target) > 0.3]
            if not found:
                continue
            box = max(found, key=lambda b: overlap(b, target))
            pts = backend.locate(image, [box]) if redraw else backend.landmarks(image, [box])
            iod = np.linalg.norm(truth[36:42].mean(0) - truth[42:48].mean(0))
            errors.append(np.linalg.norm(pts[0] - truth, axis=1).mean() / iod)
        assert len(errors) >= 15
        return float(np.median(errors))

    hog_nme, redrawn, as_is = nme(hog_be, True), nme(be, True), nme(be, False)
    assert redrawn <= 1.2 * hog_nme
    assert as_is > 1.5 * redrawn


def test_conversion_round_trips_and_refuses_what_is_not_measured():
    box = np.array([100.0, 80.0, 220.0, 230.0])
    there = convert(box, "hog", "mtcnn")
    assert not np.allclose(there, box)
    assert np.allclose(convert(there, "mtcnn", "hog"), box)
    assert np.allclose(  # every route gives the 68 points' box the same way
        convert(convert(box, "hog", "mmod"), "mmod", "mtcnn"), there
    )
    with pytest.raises(DffrError, match="benchmarks/faces.py --detectors sfd"):
        convert(box, "sfd", "hog")
    with pytest.raises(DffrError, match="'sfd'.*not measured"):
        get_backend("dlib", face_detector="sfd")  # before any weights are looked for


def test_the_cache_records_the_face_detector_and_refuses_another(tmp_path, place):
    root = tmp_path / "db"
    place(root, "train/real/a.mp4", "train/fake/b.mp4")
    cache = tmp_path / "cache"
    args = ["preprocess", "--ddbb", "folder", "--root", str(root), "--out", str(cache)]
    r = CliRunner().invoke(main, [*args, "--frames", "2", "--face-detector", "MTCNN"])
    assert r.exit_code == 0, r.output
    assert json.loads((cache / "settings.json").read_text())["face_detector"] == "mtcnn"
    r = CliRunner().invoke(main, [*args, "--frames", "2"])
    assert r.exit_code == 1
    assert "face_detector: 'mtcnn' in the cache, 'hog' now" in r.output


def test_s3fd_weights_are_fetched_hash_checked_and_loaded(tmp_path, monkeypatch):
    import hashlib

    from face_alignment.detection.sfd.net_s3fd import s3fd

    from dffr.regions.face_detectors import sfd

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(MissingWeightsError, match="dffr weights fetch --face-detectors sfd"):
        get_face_detector("sfd")
    # a stand-in for the published file: S3FD's own layout, random weights
    served_dir = tmp_path / "served"
    served_dir.mkdir()
    torch.manual_seed(0)
    staged = served_dir / "staged.pth"
    torch.save(s3fd().state_dict(), staged)
    name = f"s3fd-{hashlib.sha256(staged.read_bytes()).hexdigest()[:10]}.pth"
    staged.rename(served_dir / name)
    with served(served_dir) as url:
        monkeypatch.setenv("DFFR_WEIGHTS_MIRROR", url)
        monkeypatch.setattr(sfd, "URL", f"https://example.org/{name}")
        r = CliRunner().invoke(
            main, ["weights", "fetch", "--detectors", "none", "--face-detectors", "sfd"]
        )
    assert r.exit_code == 0, r.output
    path = tmp_path / "torch" / "hub" / "checkpoints" / name
    assert path.is_file() and f"fetched: {path} (face detector sfd)" in r.output
    det = get_face_detector("sfd")
    found = det.search(np.zeros((64, 64, 3), np.uint8), 1.0)  # random weights: runs
    assert all(len(b) == 4 and 0 <= s <= 1 for b, s in found)
    # and its batch (the GPU path) finds what it finds one image at a time
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (96, 128, 3), dtype=np.uint8) for _ in range(3)]
    for alone, together in zip(map(det.find, images), det.find_batch(images), strict=True):
        assert len(alone) == len(together)
        np.testing.assert_allclose([b for b, _ in alone], [b for b, _ in together], atol=1e-3)
    path.write_bytes(b"tampered")
    with pytest.raises(MissingWeightsError, match="not the published S3FD file"):
        get_face_detector("sfd")
