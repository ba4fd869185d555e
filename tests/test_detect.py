"""`dffr detect` and `dffr.detect`: unlabelled files in, a verdict per face with its
stated threshold, per-model and per-frame scores, JSON and a self-contained report."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest
from click.testing import CliRunner

from dffr.cli import main
from dffr.detect import Models, detect
from dffr.errors import DffrError
from dffr.images import write_image

KEYS = ["DSP-FWA/eyes", "DSP-FWA/mouth"]


@pytest.fixture(scope="module")
def loaded(models):
    return Models(models, "CelebDF")


@pytest.fixture(scope="module")
def photo(astronaut, tmp_path_factory):
    path = tmp_path_factory.mktemp("in") / "astronaut.png"
    write_image(path, astronaut)
    return path


def _thresholds(models):
    return [
        json.loads((models / "CelebDF" / f"DSP-FWA_CelebDF_{r}.json").read_text())["threshold"]
        for r in ("eyes", "mouth")
    ]


def test_an_image_gets_a_verdict_at_the_models_own_threshold(loaded, models, photo):
    d = loaded(photo)
    assert d.error == "" and d.kind == "image" and d.frames == [0]
    (face,) = d.faces
    assert list(face.scores) == KEYS and all(0 <= v <= 1 for v in face.scores.values())
    assert face.fused == pytest.approx(np.mean(list(face.scores.values())))
    expected = np.mean([t["value"] for t in _thresholds(models)])
    assert face.threshold == pytest.approx(expected)
    assert face.threshold_source.startswith("mean of the 2 models' equal-error-rate")
    assert face.verdict == ("FAKE" if face.fused >= face.threshold else "REAL")
    assert set(face.regions) == {"entire", "eyes", "nose", "mouth", "rest"}
    # the scores are the models' on the region images, computed apart
    for key in KEYS:
        model, region = loaded.models[key]
        assert face.scores[key] == pytest.approx(
            float(model.predict(face.regions[region][None])[0])
        )


def test_a_video_is_tracked_and_scored_per_frame(loaded, face_video):
    d = loaded(face_video, frames=4)
    assert d.kind == "video" and len(d.frames) == 4
    (face,) = d.faces
    assert face.frames == d.frames
    assert set(face.per_frame) == {*KEYS, "fused"}
    assert all(len(v) == 4 for v in face.per_frame.values())
    assert face.scores["DSP-FWA/eyes"] == pytest.approx(np.mean(face.per_frame["DSP-FWA/eyes"]))


def test_the_command_line_json_report_and_failures(models, photo, face_video, tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    report = tmp_path / "report.html"
    args = ["detect", str(photo), str(face_video), str(text), "--models", str(models)]
    r = CliRunner().invoke(
        main, [*args, "--ddbb", "CelebDF", "--frames", "3", "--json", "--report", str(report)]
    )
    assert r.exit_code == 1  # one input gave no verdict; the others did
    lines = [json.loads(x) for x in r.output.splitlines() if x.startswith("{")]
    assert [x["kind"] for x in lines] == ["image", "video", "image"]
    assert "not an image" in lines[2]["error"] or "notes.png" in lines[2]["error"]
    # the same numbers as the Python call, which loads the models once per process
    api = detect(photo, models=models, ddbb="CelebDF")
    assert lines[0]["faces"][0]["scores"] == pytest.approx(api.faces[0].scores, abs=1e-6)
    detect(photo, models=models, ddbb="CelebDF")
    from dffr.detect import _models

    assert _models.cache_info().hits >= 1
    # one self-contained page: the face, its five regions, the scores and the verdict
    page = report.read_text()
    assert not re.search(r"src=\"(?!data:)", page)  # every image embedded
    photo_face = page.split('<article class="input">')[1]
    assert photo_face.count('class="region"') == 5
    for key, value in lines[0]["faces"][0]["scores"].items():
        assert f"<td>{key}</td><td class='score'>{value:.4f}</td>" in photo_face
    assert "Grad-CAM DSP-FWA/" in photo_face
    video = page.split('<article class="input">')[2]
    assert "P(fake) over the sampled frames" in video
    assert "no face" in page or "not an image" in page or "notes.png" in page
    assert oct(os.stat(report).st_mode & 0o777) == oct(0o666 & ~_umask())
    plain = CliRunner().invoke(
        main,
        ["detect", str(photo), "--models", str(models), "--ddbb", "CelebDF", "--threshold", "0"],
    )
    assert (
        plain.exit_code == 0 and "face 0: FAKE" in plain.output and "(--threshold)" in plain.output
    )


def _umask() -> int:
    old = os.umask(0)
    os.umask(old)
    return old


def test_folders_are_searched_for_images_and_videos(photo, face_video, tmp_path):
    from dffr.detect import inputs

    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "clip.MP4").write_bytes(face_video.read_bytes())
    (tmp_path / "a" / "face.png").write_bytes(photo.read_bytes())
    (tmp_path / "a" / "notes.txt").write_text("skipped: not a media file")
    got = inputs([tmp_path / "a", photo])
    assert got == [tmp_path / "a" / "b" / "clip.MP4", tmp_path / "a" / "face.png", photo]


def test_what_cannot_be_followed_is_refused(models):
    with pytest.raises(DffrError, match="learns from labelled validation scores"):
        Models(models, "CelebDF", fusion="logistic")
    with pytest.raises(DffrError, match="DSP-FWA_CelebDF_nose.pt"):
        Models(models, "CelebDF", regions=["eyes", "nose"])
    with pytest.raises(DffrError, match="no model for 'UADFV'"):
        Models(models, "UADFV")
