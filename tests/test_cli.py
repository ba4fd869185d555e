"""`dffr segment`, `dffr landmarks` and `dffr demo` as a user runs them."""

from __future__ import annotations

import json

import numpy as np
from click.testing import CliRunner
from PIL import Image

from dffr.cli import main
from dffr.images import read_image, write_image
from dffr.regions import REGIONS


def _inputs(tmp_path, astronaut):
    good = tmp_path / "astro.png"
    write_image(good, astronaut)
    gray = tmp_path / "gray.png"
    Image.fromarray(astronaut.mean(axis=2).astype(np.uint8)).save(gray)
    rgba16 = tmp_path / "rgba16.png"
    Image.fromarray(astronaut[..., 0].astype(np.uint16) * 257).save(rgba16)
    trunc = tmp_path / "truncated.png"
    trunc.write_bytes(good.read_bytes()[:5000])
    noface = tmp_path / "noface.png"
    write_image(noface, np.full((300, 400, 3), 127, np.uint8))
    return good, gray, rgba16, trunc, noface


def test_segment_writes_regions_overlay_and_input_grid_masks(tmp_path, astronaut):
    good, gray, rgba16, trunc, noface = _inputs(tmp_path, astronaut)
    missing = tmp_path / "missing.jpg"
    out = tmp_path / "out"
    args = [
        "segment",
        str(good),
        str(trunc),
        str(gray),
        str(missing),
        str(noface),
        str(rgba16),
        "--out",
        str(out),
        "--masks",
        "--size",
        "128",
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    err = result.stderr
    assert "truncated.png: truncated or corrupt" in err
    assert "missing.jpg: no such file" in err
    assert "noface.png: no face found" in err
    assert "3 of 6 file(s) failed" in err
    assert "Traceback" not in result.output
    for stem in ("astro", "gray", "rgba16"):  # the good files after the bad ones were done
        for r in REGIONS:
            region = read_image(out / f"{stem}_{r}.png")
            assert region.shape == (128, 128, 3)
            mask = np.asarray(Image.open(out / f"{stem}_{r}_mask.png"))
            assert mask.shape == (512, 512) and set(np.unique(mask)) <= {0, 255}
        assert read_image(out / f"{stem}_overlay.png").shape == (512, 512, 3)
    assert not list(out.glob("truncated_*"))
    masks = {r: np.asarray(Image.open(out / f"astro_{r}_mask.png")) > 0 for r in REGIONS}
    assert np.array_equal(
        masks["rest"] | masks["eyes"] | masks["nose"] | masks["mouth"], masks["entire"]
    )


def test_landmarks_json_lines(tmp_path, astronaut):
    good, *_, noface = _inputs(tmp_path, astronaut)
    result = CliRunner().invoke(main, ["landmarks", str(good), str(noface), "--json"])
    assert result.exit_code == 1
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines[0]["image"] == str(good) and lines[0]["width"] == 512
    face = lines[0]["faces"][0]
    assert len(face["landmarks"]) == 68 and len(face["box"]) == 4
    x0, y0, x1, y1 = face["box"]
    assert x0 < np.mean([p[0] for p in face["landmarks"]]) < x1
    assert "no face found" in lines[1]["error"]
    text = CliRunner().invoke(main, ["landmarks", str(good)])
    assert text.exit_code == 0 and "1 face(s) in 512x512" in text.stdout


def test_invalid_choices_and_devices_are_rejected():
    r = CliRunner().invoke(main, ["segment", "x.png", "--out", "o", "--backend", "nope"])
    assert r.exit_code == 2 and "dlib" in r.output and "face-alignment" in r.output
    r = CliRunner().invoke(main, ["--device", "tpu", "segment", "x.png", "--out", "o"])
    assert r.exit_code == 2 and "unknown device" in r.output
