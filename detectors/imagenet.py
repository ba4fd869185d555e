"""The ImageNet weights the detectors start from: which file each needs, where it is
looked for, how it is fetched, and what a trained model records of it.

Files live where the frameworks keep them, so a file a user already has is reused:
torchvision's in torch's hub cache (`$TORCH_HOME/hub/checkpoints/`, named by
torchvision's weights enums, whose names carry the first hex digits of the file's
sha256), Keras' in `$KERAS_HOME/models/` (named and hashed as `keras.applications`
does). Fetching goes through the frameworks' own downloaders with their hash checks:
`torch.hub.download_url_to_file` (which writes a `.partial` file and moves it into
place only once its hash checks) and `keras.utils.get_file` (run into a temporary folder
and moved into place once its hash checks, since it writes to the target directly). A
partial or corrupt file therefore never counts as a weights file, and one found in a
cache is checked before it is used.

`$DFFR_WEIGHTS_MIRROR` (a base URL) fetches every file from `<mirror>/<file name>`
instead of its official address: for a site mirror, and for tests on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import socket
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from dffr.errors import MissingWeightsError

MIRROR_ENV = "DFFR_WEIGHTS_MIRROR"
FETCH_TIMEOUT_S = 60  # per socket operation: a firewall that drops packets must not hang us
CHECK_TIMEOUT_S = 5  # `reachable`: a dry run asks every address


class WeightsHashError(MissingWeightsError):
    """A weights file whose hash is not the published one (partial, corrupt or another)."""


@dataclass(frozen=True)
class WeightsFile:
    """One published ImageNet weights file.

    `file_hash` is what the framework checks: for torchvision the sha256 prefix in the
    file name, for Keras the md5 (or sha256) that keras.applications passes to get_file."""

    name: str
    url: str
    framework: str  # "torch" or "keras"
    file_hash: str

    @property
    def folder(self) -> Path:
        if self.framework == "torch":
            import torch

            return Path(torch.hub.get_dir()) / "checkpoints"
        return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"

    @property
    def path(self) -> Path:
        return self.folder / self.name

    @property
    def origin(self) -> str:
        mirror = os.environ.get(MIRROR_ENV, "").strip()
        return f"{mirror.rstrip('/')}/{self.name}" if mirror else self.url

    def hash_ok(self, path: Path | None = None) -> bool:
        """Whether the file (default: the cached one) has the published hash."""
        p = Path(path or self.path)
        if not self.file_hash:  # nothing to check against: never taken on trust
            return False
        if len(self.file_hash) == 32:  # keras.applications' md5
            return file_digest(p, "md5") == self.file_hash
        return file_digest(p, "sha256").startswith(self.file_hash)

    def fetch(self, progress: bool = True) -> Path:
        """Download into the framework's cache (hash-checked), unless a good copy is there.

        Raises MissingWeightsError naming the address and the reason when it fails."""
        if self.path.is_file() and self.hash_ok():
            return self.path
        self.folder.mkdir(parents=True, exist_ok=True)
        try:
            with _socket_timeout(FETCH_TIMEOUT_S):
                if self.framework == "torch":
                    self._fetch_torch(progress)
                else:
                    self._fetch_keras()
        except Exception as e:  # the frameworks raise URLError, RuntimeError, ValueError...
            raise MissingWeightsError(
                f"could not fetch {self.name} from {self.origin}: {_reason(e)}"
            ) from None
        return self.path

    def _fetch_torch(self, progress: bool) -> None:
        import torch

        # writes <name>.<uuid>.partial and moves it into place once its sha256 checks
        torch.hub.download_url_to_file(
            self.origin, str(self.path), hash_prefix=self.file_hash, progress=progress
        )

    def _fetch_keras(self) -> None:
        import keras

        with tempfile.TemporaryDirectory(dir=self.folder, prefix=".fetch-") as tmp:
            got = keras.utils.get_file(
                self.name, self.origin, file_hash=self.file_hash, cache_dir=tmp, cache_subdir="."
            )
            os.replace(got, self.path)


def _reason(e: BaseException) -> str:
    text = str(getattr(e, "reason", None) or e)
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


@contextlib.contextmanager
def _socket_timeout(seconds: float):
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(old)


@lru_cache(maxsize=64)
def _digest(path: str, algorithm: str, size: int, mtime_ns: int) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """The file's hex digest, computed once per (file, size, modification time)."""
    st = Path(path).stat()
    return _digest(str(Path(path).resolve()), algorithm, st.st_size, st.st_mtime_ns)


def torch_weights(arch: str) -> WeightsFile:
    """torchvision's ImageNet file for `arch`: its IMAGENET1K_V1 weights (the seed
    system's, and what nearly every torchvision classifier has), else its DEFAULT."""
    import torchvision

    weights = torchvision.models.get_model_weights(arch)
    chosen = weights.IMAGENET1K_V1 if hasattr(weights, "IMAGENET1K_V1") else weights.DEFAULT
    return hub_weights(chosen.url)


def hub_weights(url: str) -> WeightsFile:
    """A file published for torch's hub cache, whose name carries the first hex digits of
    its sha256 (`s3fd-619a316812.pth`), as torchvision's and face-alignment's do."""
    name = url.rsplit("/", 1)[-1]
    found = re.search(r"-([a-f0-9]{8,})\.", name)
    if found is None:
        raise MissingWeightsError(f"{url}: the file's name carries no hash to check")
    return WeightsFile(name, url, "torch", found.group(1))


_KERAS = "https://storage.googleapis.com/tensorflow/keras-applications/"
# keras.applications' own addresses and hashes of the no-top files (a test checks them
# against the installed Keras' source)
KERAS_FILES = {
    f.name: f
    for f in (
        WeightsFile(
            "xception_weights_tf_dim_ordering_tf_kernels_notop.h5",
            _KERAS + "xception/xception_weights_tf_dim_ordering_tf_kernels_notop.h5",
            "keras",
            "b0042744bf5b25fce3cb969f33bebb97",
        ),
        WeightsFile(
            "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
            _KERAS + "resnet/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
            "keras",
            "4d473c1dd8becc155b73f8504c6f6626",
        ),
        WeightsFile(
            "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
            _KERAS + "vgg16/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
            "keras",
            "6d6bbae143d832006294945121d1f1fc",
        ),
        WeightsFile(
            "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5",
            _KERAS + "densenet/densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5",
            "keras",
            "30ee3e1110167f948a6b9946edeeb738",
        ),
        WeightsFile(
            "efficientnetb0_notop.h5",
            "https://storage.googleapis.com/keras-applications/efficientnetb0_notop.h5",
            "keras",
            "50bc09e76180e00e4465e1a485ddc09d",
        ),
    )
}


def fetch_hint(detector: str) -> str:
    return f"dffr weights fetch --detectors {detector}"


def locate(spec: WeightsFile, detector: str) -> Path:
    """The checked local copy of `spec`, fetched when absent (or failing its hash).

    MissingWeightsError says which file, where it is looked for, why it could not be
    fetched, and the ways out (the fetch command on a machine with a network,
    --imagenet FILE, --from-scratch)."""
    if spec.path.is_file() and spec.hash_ok():
        return spec.path
    bad = spec.path.is_file()
    try:
        return spec.fetch()
    except MissingWeightsError as e:
        why = str(e)
    state = (
        f"{spec.path} fails its hash check (partial or corrupt; expected {spec.file_hash})"
        if bad
        else f"{spec.name} is not in {spec.folder}"
    )
    error = WeightsHashError if bad else MissingWeightsError
    raise error(
        f"ImageNet weights for {detector}: {state}, and {why}. Fetch them where there is "
        f"a network with `{fetch_hint(detector)}` (then copy {spec.name} into "
        f"{spec.folder} here), give a file with --imagenet FILE, or train from random "
        "weights with --from-scratch (YAML: pretrained: false)"
    )


def reachable(spec: WeightsFile) -> str:
    """ "" when the file's address answers (a HEAD request), else the reason."""
    import urllib.request

    req = urllib.request.Request(spec.origin, method="HEAD", headers={"User-Agent": "dffr"})
    try:
        with urllib.request.urlopen(req, timeout=CHECK_TIMEOUT_S):
            return ""
    except Exception as e:
        return _reason(e)


def initialisation(path: Path | None, spec: WeightsFile | None = None) -> dict:
    """What a model records of its start: ImageNet (file name, sha256) or random."""
    if path is None:
        return {"kind": "random"}
    return {
        "kind": "imagenet",
        "file": Path(path).name,
        "sha256": file_digest(path),
        "source": "published" if spec is not None and Path(path) == spec.path else "--imagenet",
    }


def resolve(config, spec: WeightsFile | None, detector: str) -> Path | None:
    """The ImageNet file a detector built from `config` starts from, or None when it is
    trained from scratch (`pretrained: false`). `--imagenet FILE` is the user's own
    copy (used as it is; its sha256 is recorded); otherwise the published file,
    fetched when it is not here."""
    if config.pretrained is False:
        return None
    if config.imagenet:
        path = Path(config.imagenet)
        if not path.is_file():
            raise MissingWeightsError(
                f"ImageNet weights for {detector}: --imagenet file {path} not found"
            )
        return path
    if spec is None:
        raise MissingWeightsError(
            f"{detector} has no published ImageNet weights: give a file with --imagenet "
            "FILE or train from random weights with --from-scratch (YAML: pretrained: false)"
        )
    return locate(spec, detector)
