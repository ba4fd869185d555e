"""Hostile media and hostile targets (issue 13, items 24-26): the seed command lines name
the file behind every error and check --save before scoring; a video whose codec
OpenCV cannot decode says so, and a header that overstates the frame count does not
cost the sample its last frames."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest

from dffr.datasets.video import VideoError, frame_indices, read_frames
from dffr.detectors.model_files import model_path
from dffr.errors import DffrError
from dffr.images import write_image
from dffr.seed_cli import main as seed_main

from .conftest import write_face_video

# 24 -- the seed CLIs: every error names its file; --save is checked before any work

SEED = ("DSP-FWA", "Capsule")


class _Model:
    """A stand-in detector: P(fake) is the region's mean grey level / 255; an all-black
    region is refused with a message that does not name the image."""

    def predict(self, x: np.ndarray) -> np.ndarray:
        if not x.any():
            raise DffrError("the region is all black")
        return x.reshape(len(x), -1).mean(axis=1) / 255.0


@pytest.fixture
def fake_models(tmp_path, monkeypatch):
    """A models folder whose DSP-FWA CelebDF eyes model loads as `_Model`; `loads`
    counts the loads, so a test can tell whether any work was done."""
    out = tmp_path / "models"
    weights = model_path(out, "DSP-FWA", "CelebDF", "eyes")
    weights.parent.mkdir(parents=True)
    weights.write_bytes(b"")
    loads: list[str] = []

    def load(path, device=None):
        loads.append(str(path))
        return _Model()

    monkeypatch.setattr("dffr.detectors.model_files.load_detector", load)
    return out, loads


def _seed(fake_models, *extra: str) -> int:
    args = ["--detector", "DSP-FWA", "--region", "eyes", "--ddbb", "CelebDF"]
    return seed_main([*args, "--models", str(fake_models[0]), *extra], SEED, "dfr.py")


def test_seed_cli_names_each_failed_image_and_scores_the_rest(
    fake_models, tmp_path, astronaut, dlib_backend, capsys
):
    face, blank, junk, missing = (
        tmp_path / n for n in ("face.png", "blank.png", "junk.png", "gone.png")
    )
    write_image(face, astronaut)
    write_image(blank, np.full((240, 240, 3), 128, np.uint8))  # no face in it
    junk.write_bytes(b"not an image at all")
    code = _seed(fake_models, "--image", str(blank), str(junk), str(missing), str(face))
    out, err = capsys.readouterr()
    assert code == 1
    assert out.strip().startswith(f"{face}: Prediction (0 - Real, 1 - Fake): ")
    lines = err.strip().splitlines()
    assert len(lines) == 3
    for bad, line in zip((blank, junk, missing), lines, strict=True):
        assert line.startswith(f"error: {bad}: "), line
    assert "no face" in lines[0] and "not an image" in lines[1] and "no such file" in lines[2]


def test_seed_cli_names_the_image_when_the_error_does_not(fake_models, tmp_path, capsys):
    black, grey = tmp_path / "black.png", tmp_path / "grey.png"
    write_image(black, np.zeros((64, 64, 3), np.uint8))
    write_image(grey, np.full((64, 64, 3), 51, np.uint8))
    code = _seed(fake_models, "--pre-segmented", "--image", str(black), str(grey))
    out, err = capsys.readouterr()
    assert code == 1
    assert err.strip() == f"error: {black}: the region is all black"
    assert out.strip() == f"{grey}: Prediction (0 - Real, 1 - Fake): 0.20"


def _not_writable(tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    return folder / "fig.png"


@pytest.mark.parametrize(
    "target, reason",
    [
        (lambda t: t / "out.xyz", "unknown figure format '.xyz'"),
        (lambda t: t / "out", "no extension"),
        (lambda t: t / "afile.txt" / "out.png", "is a file"),
        (lambda t: t / "adir.png", "is a folder"),
        pytest.param(
            _not_writable,
            "is not writable",
            marks=pytest.mark.skipif(os.geteuid() == 0, reason="root writes read-only folders"),
        ),
    ],
    ids=["extension", "no-extension", "parent-is-a-file", "target-is-a-folder", "read-only"],
)
def test_seed_cli_refuses_a_bad_save_target_before_any_work(
    fake_models, tmp_path, capsys, target, reason
):
    (tmp_path / "afile.txt").write_text("x")
    (tmp_path / "adir.png").mkdir()
    photo = tmp_path / "eyes.png"
    write_image(photo, np.full((64, 64, 3), 90, np.uint8))
    fig = target(tmp_path)
    with pytest.raises(SystemExit) as e:
        _seed(fake_models, "--pre-segmented", "--image", str(photo), "--save", str(fig))
    out, err = capsys.readouterr()
    assert e.value.code == 2
    assert f"argument --save: {fig}: " in err and reason in err and "Traceback" not in err
    assert out == "" and fake_models[1] == []  # nothing scored, no model even loaded
    assert not fig.is_file()


def test_seed_cli_makes_a_missing_save_folder(fake_models, tmp_path, capsys):
    photo, fig = tmp_path / "eyes.png", tmp_path / "new" / "sub" / "fig.pdf"
    write_image(photo, np.full((64, 64, 3), 90, np.uint8))
    assert _seed(fake_models, "--pre-segmented", "--image", str(photo), "--save", str(fig)) == 0
    assert fig.read_bytes().startswith(b"%PDF")
    capsys.readouterr()


def test_seed_cli_reports_a_save_that_fails_late(fake_models, tmp_path, capsys, monkeypatch):
    def full(*_args, **_kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("dffr.seed_cli.save_figure", full)
    photo, fig = tmp_path / "eyes.png", tmp_path / "fig.png"
    write_image(photo, np.full((64, 64, 3), 90, np.uint8))
    assert _seed(fake_models, "--pre-segmented", "--image", str(photo), "--save", str(fig)) == 1
    out, err = capsys.readouterr()
    assert out.startswith("Prediction")
    assert err.strip().startswith(f"error: {fig}: cannot save the figure") and "No space" in err


# 25, 26 -- a capture over a real file with some answers changed (fault injection)

_REAL_CAPTURE = cv2.VideoCapture


class _Capture:
    """cv2.VideoCapture of a real file whose properties in `props` are overridden; with
    `decodes=False` it opens but gives no frame, as OpenCV does for AV1. It counts the
    frames it decodes."""

    decoded = 0

    def __init__(self, path: str, props: dict[int, float], decodes: bool) -> None:
        self.cap, self.props, self.decodes = _REAL_CAPTURE(path), props, decodes

    def isOpened(self) -> bool:  # noqa: N802 (OpenCV's name)
        return self.cap.isOpened()

    def get(self, prop: int) -> float:
        return self.props.get(prop, self.cap.get(prop))

    def grab(self) -> bool:
        ok = self.decodes and self.cap.grab()
        _Capture.decoded += ok
        return ok

    def read(self):
        ok, frame = self.cap.read() if self.decodes else (False, None)
        _Capture.decoded += ok
        return ok, frame

    def release(self) -> None:
        self.cap.release()


@pytest.fixture
def capture(monkeypatch):
    """capture(props, decodes=True): make video.py open every file with `_Capture`."""

    def patch(props: dict[int, float], decodes: bool = True) -> type[_Capture]:
        _Capture.decoded = 0
        monkeypatch.setattr(cv2, "VideoCapture", lambda p: _Capture(p, props, decodes))
        return _Capture

    return patch


def _marker(frame: np.ndarray) -> int:
    """The frame's own index, from write_face_video's top-left grey level 10*i."""
    return round(float(frame[2:6, 2:6].mean()) / 10)


# 25 -- a codec OpenCV cannot decode is named; a truncated file is still called truncated


def test_an_undecodable_codec_is_named(tmp_path, astronaut, capture):
    clip = write_face_video(tmp_path / "clip.mp4", astronaut, n_frames=12)
    capture({cv2.CAP_PROP_FOURCC: float(cv2.VideoWriter_fourcc(*"av01"))}, decodes=False)
    for sample in (lambda: read_frames(clip, 4), lambda: read_frames(clip, indices=[0, 5])):
        with pytest.raises(VideoError) as e:
            list(sample())
        msg = str(e.value)
        assert msg.startswith(f"{clip}: cannot decode its 'av01' video"), msg
        assert "truncated" not in msg and "shorter" not in msg


def test_a_file_with_no_codec_tag_and_no_count_says_unknown(tmp_path, astronaut, capture):
    clip = write_face_video(tmp_path / "clip.mkv", astronaut, n_frames=6)
    capture({cv2.CAP_PROP_FOURCC: 0.0, cv2.CAP_PROP_FRAME_COUNT: 0.0}, decodes=False)
    with pytest.raises(VideoError, match=r"cannot decode its 'unknown' video"):
        frame_indices(clip, 4)


def test_a_file_cut_before_its_first_frame_is_called_truncated(tmp_path, astronaut, capture):
    clip = write_face_video(tmp_path / "clip.mp4", astronaut, n_frames=12)
    # its header promises 100 times the frames (and so the bytes) the file holds
    capture({cv2.CAP_PROP_FRAME_COUNT: 1200.0}, decodes=False)
    with pytest.raises(VideoError, match=rf"^{clip}: truncated: no frame decodes"):
        list(read_frames(clip, 4))


def test_a_truncated_mp4_is_still_called_truncated(tmp_path, face_video):
    data = face_video.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoError, match="truncated") as e:
        list(read_frames(cut, 4))
    assert "cannot decode its" not in str(e.value)


# 26 -- the sample comes from the frames that exist, decoded once when the header is right


def test_the_normal_case_decodes_each_frame_once(tmp_path, astronaut, capture):
    clip = write_face_video(tmp_path / "clip.mkv", astronaut, n_frames=12)
    cap = capture({})
    got = list(read_frames(clip, 4))
    assert [i for i, _ in got] == [0, 4, 7, 11]
    assert cap.decoded == 12


def test_an_overstated_frame_count_still_gives_the_last_frames(tmp_path, astronaut, capture):
    clip = write_face_video(tmp_path / "vfr.mkv", astronaut, n_frames=12)
    capture({cv2.CAP_PROP_FRAME_COUNT: 15.0})  # a VFR .mkv's duration x rate estimate
    assert frame_indices(clip, 4) == [0, 5, 9, 14]  # what the header alone suggests
    got = list(read_frames(clip, 4))
    assert [i for i, _ in got] == [0, 5, 9, 11]  # 14 does not exist: the last real does
    assert all(f is not None and _marker(f) == i for i, f in got)
    six = sorted(i for i, _ in read_frames(clip, 6))
    assert len(six) == 6 and len(set(six)) == 6 and six[-1] == 11 and max(six) < 12
    assert max(np.diff([0, *six, 11])) <= 3  # spread over the real frames, no long gap


def test_preprocess_samples_the_frames_that_exist(tmp_path, astronaut, capture):
    from dffr.datasets import get_dataset
    from dffr.datasets.cache import read_index, read_videos
    from dffr.datasets.preprocess import Settings, preprocess

    root = tmp_path / "db"
    clip = write_face_video(root / "real" / "vfr.mkv", astronaut, n_frames=12)
    capture({cv2.CAP_PROP_FRAME_COUNT: 15.0})  # the header overstates: 15 for 12
    ds = get_dataset("folder", root)
    summary = preprocess(ds.items(), root, tmp_path / "c", Settings(frames=4, size=64))
    assert summary.failures == 0, clip
    assert sorted(read_index(tmp_path / "c")["frame"]) == [0, 5, 9, 11]
    assert read_videos(tmp_path / "c")["no_face"].iloc[0].tolist() == []


def test_explicit_indices_past_the_real_end_stay_missing(tmp_path, astronaut, capture):
    """A fake's frames must match its original's, so given indices are never moved."""
    clip = write_face_video(tmp_path / "vfr.mkv", astronaut, n_frames=12)
    capture({cv2.CAP_PROP_FRAME_COUNT: 15.0})
    got = list(read_frames(clip, indices=frame_indices(clip, 4)))
    assert [(i, f is None) for i, f in got] == [(0, False), (5, False), (9, False), (14, True)]


def test_a_really_truncated_avi_samples_its_real_frames(tmp_path):
    rng = np.random.default_rng(0)
    frames = []
    for i in range(20):
        frame = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
        frame[:8, :8] = 10 * i
        frames.append(frame)
    full = tmp_path / "full.avi"
    writer = cv2.VideoWriter(str(full), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for frame in frames:
        writer.write(frame)
    writer.release()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    cap = cv2.VideoCapture(str(cut))
    header, real = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), 0
    while cap.grab():
        real += 1
    cap.release()
    assert header == 20 and 4 < real < 20  # the header still promises all 20
    got = list(read_frames(cut, 4))
    assert len(got) == 4 and all(f is not None for _, f in got)
    assert max(i for i, _ in got) == real - 1
    assert all(abs(_marker(f) - i) <= 1 for i, f in got)
