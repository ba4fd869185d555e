"""`dffr score` over a tiny cache, and the seed system's command lines."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from dffr.cli import main
from dffr.detectors.base import load_detector
from dffr.experiments.scoring import SCORE_COLUMNS, score
from dffr.experiments.seed_cli import main as seed_main
from dffr.images import read_image, write_image
from dffr.regions import segment_image


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
