"""ImageNet weights: the published files and hashes, fetched through the frameworks' own
downloaders from a local HTTP server (the tests never reach the internet), hash checks
that keep partial or tampered files out, what a model records, and `dffr weights`."""

from __future__ import annotations

import hashlib
import http.server
import inspect
from pathlib import Path

import pytest
import torch
import torchvision
from click.testing import CliRunner

from dffr.cli import main
from dffr.detectors.base import DetectorConfig, build_detector
from dffr.detectors.imagenet import (
    KERAS_FILES,
    MIRROR_ENV,
    WeightsFile,
    WeightsHashError,
    file_digest,
    locate,
    torch_weights,
)
from dffr.errors import MissingWeightsError

from .conftest import served


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder; a file named `*.cut` is sent half, with the full length
    announced (a download cut off)."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        path = Path(self.translate_path(self.path))
        cut = path.with_name(path.name + ".cut")
        if cut.is_file():
            data = cut.read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        super().do_GET()


@pytest.fixture
def server(tmp_path, monkeypatch):
    """(folder, base URL): an HTTP server on 127.0.0.1 serving the folder; files are
    fetched from their own addresses (no mirror) unless a test sets one."""
    monkeypatch.delenv(MIRROR_ENV, raising=False)
    folder = tmp_path / "served"
    folder.mkdir()
    with served(folder, _Handler) as url:
        yield folder, url


@pytest.fixture
def caches(tmp_path, monkeypatch):
    """Empty torch and Keras caches of this test's own."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    return tmp_path


def _torch_file(folder: Path, state: dict, stem: str) -> tuple[str, str]:
    """Save `state` as `<stem>-<its sha256 prefix>.pth`, torchvision's naming."""
    tmp = folder / "tmp.pth"
    torch.save(state, tmp)
    prefix = hashlib.sha256(tmp.read_bytes()).hexdigest()[:8]
    name = f"{stem}-{prefix}.pth"
    tmp.rename(folder / name)
    return name, prefix


def test_published_files_are_the_frameworks_own():
    spec = torch_weights("resnet50")
    assert spec.url == torchvision.models.ResNet50_Weights.IMAGENET1K_V1.url
    assert (spec.name, spec.file_hash) == ("resnet50-0676ba61.pth", "0676ba61")
    assert torch_weights("vgg19").name == "vgg19-dcbb9e9d.pth"
    import keras  # noqa: F401  (keras.src.applications is importable after keras)
    from keras.src.applications import densenet, efficientnet, resnet, vgg16, xception

    modules = {"xception": xception, "resnet50": resnet, "vgg16": vgg16}
    modules |= {"densenet121": densenet, "efficientnetb0": efficientnet}
    for spec in KERAS_FILES.values():
        source = inspect.getsource(modules[spec.name.split("_")[0]])
        assert spec.file_hash in source, spec.name  # the hash keras.applications checks
        assert spec.url.rsplit("/", 1)[0] in source.replace('"\n    "', "")


def test_fetch_goes_through_torch_hub_and_checks_the_hash(server, caches, monkeypatch):
    folder, url = server
    torch.manual_seed(0)
    state = torchvision.models.resnet18().state_dict()
    name, prefix = _torch_file(folder, state, "standin")
    spec = WeightsFile(name, f"{url}/{name}", "torch", prefix)
    got = spec.fetch(progress=False)
    assert got == caches / "torch" / "hub" / "checkpoints" / name
    loaded = torch.load(got, weights_only=True)
    assert torch.equal(loaded["conv1.weight"], state["conv1.weight"])
    # a file that is not the published one (its hash differs) never lands in the cache
    (folder / "other-0123abcd.pth").write_bytes(b"not the weights")
    bad = WeightsFile("other-0123abcd.pth", f"{url}/other-0123abcd.pth", "torch", "0123abcd")
    with pytest.raises(MissingWeightsError, match="invalid hash value"):
        bad.fetch(progress=False)
    assert sorted(p.name for p in got.parent.iterdir()) == [name]  # no partial file
    # a download cut off half-way: refused too, nothing left behind
    (folder / f"{name}.cut").write_bytes((folder / name).read_bytes())
    (folder / name).unlink()
    cut = WeightsFile(name, f"{url}/{name}", "torch", prefix)
    got.unlink()
    with pytest.raises(MissingWeightsError, match=f"could not fetch {name}"):
        cut.fetch(progress=False)
    assert not list(got.parent.iterdir())


def test_fetch_goes_through_keras_get_file_and_checks_the_hash(server, caches):
    folder, url = server
    data = b"\x89HDF\r\n\x1a\n" + bytes(range(256)) * 64
    (folder / "standin_notop.h5").write_bytes(data)
    md5 = hashlib.md5(data).hexdigest()
    spec = WeightsFile("standin_notop.h5", f"{url}/standin_notop.h5", "keras", md5)
    got = spec.fetch()
    assert got == caches / "keras" / "models" / "standin_notop.h5"
    assert got.read_bytes() == data and spec.hash_ok()
    wrong = WeightsFile("wrong_notop.h5", f"{url}/standin_notop.h5", "keras", "0" * 32)
    with pytest.raises(MissingWeightsError, match="could not fetch wrong_notop.h5"):
        wrong.fetch()
    # get_file writes straight to its target; ours is a temporary folder, removed
    assert sorted(p.name for p in got.parent.iterdir()) == ["standin_notop.h5"]
    # a partial file already in the cache does not count: it is fetched again
    got.write_bytes(data[:100])
    assert not spec.hash_ok()
    assert locate(spec, "Standin") == got and got.read_bytes() == data


def test_a_detector_fetches_its_weights_and_records_them(server, caches, monkeypatch):
    folder, url = server
    torch.manual_seed(3)
    state = torchvision.models.resnet18().state_dict()
    name, prefix = _torch_file(folder, state, "resnet18")
    monkeypatch.setattr(
        "dffr.detectors.networks.dsp_fwa.torch_weights",
        lambda arch: WeightsFile(name, f"https://download.example/{name}", "torch", prefix),
    )
    monkeypatch.setenv(MIRROR_ENV, url)  # a site mirror serves the published file
    det = build_detector(
        DetectorConfig("DSP-FWA", input_size=64, options={"trunk": "resnet18"}), "cpu"
    )
    path = caches / "torch" / "hub" / "checkpoints" / name
    assert path.is_file()
    assert torch.equal(det.model.resnet.resnet.conv1.weight.detach(), state["conv1.weight"])
    assert det.init == {
        "kind": "imagenet",
        "file": name,
        "sha256": file_digest(path),
        "source": "published",
    }
    # a tampered copy in the cache is neither used nor silently replaced when offline
    path.write_bytes(b"tampered")
    monkeypatch.setenv(MIRROR_ENV, "http://127.0.0.1:9")
    with pytest.raises(WeightsHashError, match=f"{path} fails its hash check"):
        build_detector(
            DetectorConfig("DSP-FWA", input_size=64, options={"trunk": "resnet18"}), "cpu"
        )


def test_weights_list_and_fetch_commands(server, caches, monkeypatch):
    folder, url = server
    spec = torch_weights("vgg19")
    spec.folder.mkdir(parents=True)
    spec.path.write_bytes(b"a partial download")
    r = CliRunner().invoke(main, ["weights", "list", "--detectors", "Capsule,DSP-FWA,Xception"])
    assert r.exit_code == 0, r.output
    lines = {line.split()[0].rstrip(","): line for line in r.output.splitlines()[2:]}
    assert "vgg19-dcbb9e9d.pth" in lines["Capsule"] and lines["Capsule"].split()[-2:] == [
        "yes",
        "FAILS",
    ]
    assert str(spec.folder) in lines["Capsule"]
    assert lines["DSP-FWA"].split()[-2:] == ["no", "-"]
    assert str(caches / "keras" / "models") in lines["Xception"]
    r = CliRunner().invoke(main, ["weights", "list", "--detectors", "Capsul"])
    assert r.exit_code == 2 and "unknown detector 'Capsul'" in r.output
    monkeypatch.setenv(MIRROR_ENV, url)  # serves nothing: every fetch fails, and says why
    r = CliRunner().invoke(main, ["weights", "fetch"])
    assert r.exit_code == 1
    for file in ("vgg19-dcbb9e9d.pth", "resnet50-0676ba61.pth", "xception_weights_tf"):
        assert f"could not fetch {file}" in r.output
    assert "404" in r.output and "3 file(s) could not be fetched" in r.output
    assert spec.path.read_bytes() == b"a partial download"  # no good copy to replace it


def test_from_scratch_is_asked_for_by_name_and_recorded(caches):
    det = build_detector(DetectorConfig("Capsule", input_size=64, pretrained=False), "cpu")
    assert det.init == {"kind": "random"} and not det.frozen_front
    with pytest.raises(MissingWeightsError, match="--imagenet file .*nope.pth not found"):
        build_detector(DetectorConfig("Capsule", input_size=64, imagenet="nope.pth"), "cpu")
