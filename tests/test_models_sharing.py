"""Model sets to share: a set packed here, served on 127.0.0.1 and pulled elsewhere gives
the same scores; a tampered copy is refused naming its file; the Hub path verifies the
same way; each model records the threshold chosen on its validation faces."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
from click.testing import CliRunner

from dffr.cli import main
from dffr.detectors.imagenet import file_digest
from dffr.detectors.sharing import MANIFEST, ModelSetError, pack, pull
from dffr.scoring.scores import score

from .conftest import served

MODELS = ["DSP-FWA_CelebDF_eyes", "DSP-FWA_CelebDF_mouth"]


@pytest.fixture(scope="module")
def packed(models, tmp_path_factory):
    out = tmp_path_factory.mktemp("set") / "celebdf-set"
    r = CliRunner().invoke(
        main,
        [
            "models",
            "pack",
            str(models),
            "--ddbb",
            "CelebDF",
            "--out",
            str(out),
            "--licence",
            "CC-BY-4.0",
        ],
    )
    assert r.exit_code == 0, r.output
    return out


def test_each_model_records_its_validation_threshold(models):
    for name in MODELS:
        meta = json.loads((models / "CelebDF" / f"{name}.json").read_text())
        thr = meta["threshold"]
        assert thr["rule"] == "equal error rate on val"
        assert 0 <= thr["value"] <= 1 and 0 <= thr["eer"] <= 1 and thr["faces"] > 0


def test_a_packed_set_lists_every_file_with_its_hash_and_a_model_card(packed, models):
    manifest = json.loads((packed / MANIFEST).read_text())
    assert manifest["ddbb"] == "CelebDF" and manifest["licence"] == "CC-BY-4.0"
    expected = {f"CelebDF/{m}{ext}" for m in MODELS for ext in (".pt", ".json")}
    assert set(manifest["files"]) == expected | {"MODEL_CARD.md"}
    for name, entry in manifest["files"].items():
        assert file_digest(packed / name) == entry["sha256"]
    card = (packed / "MODEL_CARD.md").read_text()
    assert "Licence: CC-BY-4.0" in card
    for region in ("eyes", "mouth"):
        meta = json.loads((models / "CelebDF" / f"DSP-FWA_CelebDF_{region}.json").read_text())
        row = next(line for line in card.splitlines() if f"| DSP-FWA | {region} |" in line)
        assert f"{meta['val_auc']:.4f}" in row and f"{meta['threshold']['value']:.4f}" in row
        assert "random" in row  # its initialisation
    with pytest.raises(ModelSetError, match="not empty"):
        pack(models, "CelebDF", packed)


def test_a_pulled_set_gives_the_same_scores(packed, models, cache, tmp_path):
    with served(packed) as url:
        r = CliRunner().invoke(main, ["models", "pull", url, "--out", str(tmp_path / "m")])
    assert r.exit_code == 0, r.output
    pulled = tmp_path / "m"
    for name in MODELS:
        for ext in (".pt", ".json"):
            got = pulled / "CelebDF" / f"{name}{ext}"
            assert got.read_bytes() == (models / "CelebDF" / f"{name}{ext}").read_bytes()
    assert (pulled / "CelebDF" / "MODEL_CARD.md").is_file()
    tables = []
    for folder in (models, pulled):
        out = tmp_path / f"{folder.name}.parquet"
        score(cache, folder, "CelebDF", out, ("DSP-FWA",), ("eyes", "mouth"), progress=False)
        tables.append(pd.read_parquet(out))
    a, b = tables
    assert a["score"].equals(b["score"]) and a["model"].equals(b["model"])
    # and `dffr detect` takes the pulled set as it is
    from dffr.detect import Models

    image = next(cache.rglob("*.png"))
    here, there = Models(models, "CelebDF")(image), Models(pulled, "CelebDF")(image)
    assert here.faces and [f.to_dict() for f in here.faces] == [f.to_dict() for f in there.faces]


def test_a_tampered_set_is_refused_naming_the_file_and_nothing_is_placed(packed, tmp_path):
    copy = tmp_path / "tampered"
    shutil.copytree(packed, copy)
    model = copy / "CelebDF" / f"{MODELS[1]}.pt"
    model.write_bytes(model.read_bytes()[:-10] + b"0123456789")
    out = tmp_path / "m"
    with served(copy) as url:
        r = CliRunner().invoke(main, ["models", "pull", url, "--out", str(out)])
    assert r.exit_code == 1
    assert f"CelebDF/{MODELS[1]}.pt fails its sha256 check; set refused" in r.output
    assert list(out.rglob("*.pt")) == [] and list(out.rglob("*.json")) == []
    # a manifest naming a file outside the set is refused before anything is fetched
    manifest = json.loads((copy / MANIFEST).read_text())
    manifest["files"]["../../etc/evil.pt"] = {"sha256": "0" * 64, "bytes": 1}
    (copy / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ModelSetError, match="outside the set"):
        pull(str(copy), out)


def test_a_hub_repository_is_verified_the_same_way(packed, tmp_path, monkeypatch):
    import huggingface_hub

    asked = {}

    def snapshot_download(repo_id, revision=None, local_dir=None):
        asked.update(repo=repo_id, revision=revision)
        shutil.copytree(packed, local_dir, dirs_exist_ok=True)
        return local_dir

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    manifest = pull("hf://lab/dffr-celebdf@v1", tmp_path / "m")
    assert asked == {"repo": "lab/dffr-celebdf", "revision": "v1"}
    assert manifest["ddbb"] == "CelebDF"
    assert (tmp_path / "m" / "CelebDF" / f"{MODELS[0]}.pt").is_file()
