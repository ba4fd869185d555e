"""`dffr score` over a tiny cache, and the seed system's command lines."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from dffr.cli import main
from dffr.detectors.model_files import load_detector
from dffr.images import read_image, write_image
from dffr.regions import segment_image
from dffr.scoring.scores import SCORE_COLUMNS, score
from dffr.seed_cli import main as seed_main


def test_score_rows_values_and_rerun(cache, models, tmp_path):
    out = tmp_path / "scores.parquet"
    rep = score(
        cache,
        models,
        "CelebDF",
        out,
        detectors=("DSP-FWA",),
        regions=("eyes", "mouth", "nose"),
        progress=False,
    )
    assert sorted(rep.scored) == [("DSP-FWA", "eyes"), ("DSP-FWA", "mouth")]
    assert rep.missing == [str(models / "CelebDF" / "DSP-FWA_CelebDF_nose.pt")]
    df = pd.read_parquet(out)
    assert list(df.columns) == SCORE_COLUMNS and len(df) == 12  # 6 test frames x 2 models
    assert set(df["split"]) == {"test"} and set(df["train_ddbb"]) == {"CelebDF"}
    assert set(df["test_ddbb"]) == {"folder"}
    # the same numbers as the model on the region images, built independently
    from dffr.detectors.data import RegionData

    data = RegionData.from_cache(cache, "test", "mouth")
    model = load_detector(models / "CelebDF" / "DSP-FWA_CelebDF_mouth.pt", "cpu")
    expected = model.predict(data.images(range(len(data))))
    got = df[df["region"] == "mouth"].sort_values(["video", "frame"])["score"].to_numpy()
    order = data.rows.sort_values(["video", "frame"]).index.to_numpy()
    assert np.allclose(got, expected[order], atol=1e-6)
    again = score(
        cache,
        models,
        "CelebDF",
        out,
        detectors=("DSP-FWA",),
        regions=("eyes", "mouth"),
        progress=False,
    )
    assert again.scored == [] and len(again.skipped) == 2
    assert len(pd.read_parquet(out)) == 12


def test_scores_are_written_a_part_at_a_time_with_the_same_rows(
    cache, models, tmp_path, monkeypatch
):
    """Flat memory: the index is read and the rows written a few at a time (here 4 index
    rows, 5 score rows), and the file holds what one pass at once would have written."""
    from dffr.datasets.cache import count_index, iter_index, read_index
    from dffr.scoring import scores as scoring

    chunks = list(iter_index(cache, "test", rows=4))
    assert len(chunks) > 1 and max(map(len, chunks)) <= 4
    whole = read_index(cache, "test")
    assert pd.concat(chunks, ignore_index=True)[["video", "frame"]].equals(
        whole[["video", "frame"]]
    )
    assert count_index(cache, "test") == len(whole) and count_index(cache) == len(read_index(cache))
    args = (cache, models, "CelebDF")
    kw = {"detectors": ("DSP-FWA",), "regions": ("eyes", "mouth"), "progress": False}
    score(*args, tmp_path / "at_once.parquet", **kw)
    monkeypatch.setattr(scoring, "INDEX_ROWS", 4)
    monkeypatch.setattr(scoring, "WRITE_ROWS", 5)
    score(*args, tmp_path / "parts.parquet", **{**kw, "regions": ("eyes",)})
    rep = score(*args, tmp_path / "parts.parquet", **kw)  # the eyes' rows copied over in parts
    assert rep.scored == [("DSP-FWA", "mouth")] and rep.skipped == [("DSP-FWA", "eyes")]
    assert pq.ParquetFile(tmp_path / "parts.parquet").num_row_groups > 2
    key = ["region", "video", "frame", "track"]
    at_once = pd.read_parquet(tmp_path / "at_once.parquet").sort_values(key, ignore_index=True)
    parts = pd.read_parquet(tmp_path / "parts.parquet").sort_values(key, ignore_index=True)
    assert rep.rows == len(parts) == len(at_once)
    pd.testing.assert_frame_equal(parts, at_once)


def test_score_command_reports_missing_models(cache, models, tmp_path):
    r = CliRunner().invoke(
        main,
        [
            "score",
            "--cache",
            str(cache),
            "--models",
            str(models),
            "--train-ddbb",
            "CelebDF",
            "--detectors",
            "DSP-FWA,Capsule",
            "--regions",
            "eyes",
            "--out",
            str(tmp_path / "s.parquet"),
        ],
    )
    assert r.exit_code == 0, r.output
    assert "missing model:" in r.output and "Capsule_CelebDF_eyes.pt" in r.output
    bad = CliRunner().invoke(
        main,
        [
            "score",
            "--cache",
            str(cache),
            "--train-ddbb",
            "X",
            "--detectors",
            "Nope",
            "--out",
            str(tmp_path / "t.parquet"),
        ],
    )
    assert bad.exit_code == 2 and "choose from" in bad.output


def seed(models, *extra: str) -> int:
    """deepfakes_facial_regions.py with the tiny CelebDF eyes model."""
    args = ["--detector", "DSP-FWA", "--region", "eyes", "--ddbb", "CelebDF", "--models"]
    return seed_main([*args, str(models), *extra], ("DSP-FWA", "Capsule"), "dfr.py")


def test_seed_cli_scores_a_real_face(models, astronaut, tmp_path, capsys):
    photo = tmp_path / "face.png"
    write_image(photo, astronaut)
    assert seed(models, "--image", str(photo)) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("Prediction (0 - Real, 1 - Fake): ")
    model = load_detector(models / "CelebDF" / "DSP-FWA_CelebDF_eyes.pt", "cpu")
    region = segment_image(read_image(photo))[0].regions["eyes"]
    expected = float(model.predict(region[None])[0])
    assert float(line.rsplit(" ", 1)[1]) == pytest.approx(expected, abs=0.005)
    # JSON, a figure, and an already-segmented region image
    write_image(tmp_path / "eyes.png", region)
    fig = tmp_path / "fig.png"
    extra = ["--pre-segmented", "--json", "--save", str(fig)]
    assert seed(models, "--image", str(tmp_path / "eyes.png"), *extra) == 0
    out = json.loads(capsys.readouterr().out)
    assert out[0]["score"] == pytest.approx(expected, abs=1e-3)
    assert read_image(fig).shape[2] == 3


def test_seed_cli_validation_and_missing_model(models, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        seed_main(
            ["--detector", "Xception", "--region", "eyes", "--ddbb", "CelebDF"],
            ("DSP-FWA", "Capsule"),
            "dfr.py",
        )
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'Xception' (choose from 'DSP-FWA', 'Capsule')" in err
    with pytest.raises(SystemExit):
        seed_main(["--region", "lips", "--ddbb", "CelebDF"], ("Xception",), "x.py")
    assert "choose from 'entire', 'eyes', 'nose', 'mouth', 'rest'" in capsys.readouterr().err
    code = seed_main(
        ["--region", "nose", "--ddbb", "DFDC", "--models", str(models)], ("Xception",), "x.py"
    )
    err = capsys.readouterr().err
    assert code == 1 and "DFDC/Xception_DFDC_nose.keras" in err and "dffr train" in err
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nope")
    assert seed(models, "--image", str(bad)) == 1
    assert "not an image" in capsys.readouterr().err


def test_top_level_scripts_run(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    top = Path(__file__).resolve().parents[1]
    for script in ("deepfakes_facial_regions.py", "deepfakes_facial_regions_xception.py"):
        r = subprocess.run(
            [sys.executable, str(top / script), "--help"], capture_output=True, text=True
        )
        assert r.returncode == 0 and "--region" in r.stdout


def test_crops_are_decoded_once_and_read_again_when_the_file_changes(tmp_path, monkeypatch):
    from dffr.datasets import cache as cache_module

    path = tmp_path / "face.png"
    write_image(path, np.full((8, 8, 3), 10, np.uint8))
    first = cache_module.read_crop(path)
    assert cache_module.read_crop(path) is first and not first.flags.writeable
    write_image(path, np.full((8, 8, 3), 200, np.uint8))
    os.utime(path, ns=(1, 1))  # another mtime, whatever the clock's resolution
    assert int(cache_module.read_crop(path)[0, 0, 0]) == 200
    monkeypatch.setattr(cache_module, "_CROPS", cache_module._Crops(0))  # no memory for it
    assert cache_module.read_crop(path) is not cache_module.read_crop(path)
