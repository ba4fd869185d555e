"""A models folder: where each model's files are, reading a model back with what its
sidecar says, and loading the models a stage needs or naming those that are missing.

    models/<DB>/<Detector>_<DB>_<region>.{pt,keras}   the weights (the seed's naming)
    models/<DB>/<Detector>_<DB>_<region>.json         its sidecar: config, init, data, val AUC
    models/<DB>/checkpoints/<model>.ckpt.<ext>        where its training resumes
"""

from __future__ import annotations

import contextlib
import contextvars
import json
from collections.abc import Iterator
from pathlib import Path

from dffr.detectors.base import (
    DETECTORS,
    Detector,
    DetectorConfig,
    WeightsError,
    build_detector,
)
from dffr.device import Device
from dffr.errors import DffrError


def model_path(models: Path, detector: str, ddbb: str, region: str) -> Path:
    """models/<DB>/<Detector>_<DB>_<region>.<ext>, the seed system's naming."""
    name = DETECTORS.canonical(detector)  # `resnet-18` and `ResNet-18` name one file
    return Path(models) / ddbb / f"{name}_{ddbb}_{region}{DETECTORS.get(name).suffix}"


def sidecar_path(weights: Path) -> Path:
    return Path(weights).with_suffix(".json")


def read_sidecar(weights: Path) -> dict:
    """The sidecar beside a model file as a dict ({} where there is none)."""
    side = sidecar_path(weights)
    return json.loads(side.read_text()) if side.is_file() else {}


def checkpoint_path(weights: Path) -> Path:
    """<models>/<DB>/checkpoints/<model>.ckpt<ext>: where a model's training resumes."""
    weights = Path(weights)
    return weights.parent / "checkpoints" / f"{weights.stem}.ckpt{weights.suffix}"


def model_file_problem(detector: str, weights: Path) -> str | None:
    """Why an existing model file cannot be reused (None: it is absent, or it reads)."""
    return DETECTORS.get(detector).file_problem(weights) if Path(weights).is_file() else None


def _sidecar_config(side: Path) -> DetectorConfig:
    """The config in a model's sidecar, checked (WeightsError naming what is wrong)."""
    from dffr.regions.masks import REGIONS

    try:
        meta = json.loads(side.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise WeightsError(f"{side}: unreadable sidecar ({e})") from None
    config = meta.get("config") if isinstance(meta, dict) else None
    if not isinstance(config, dict):
        raise WeightsError(f"{side}: a sidecar is a JSON object with a 'config' object")
    checks = {
        "detector": lambda v: isinstance(v, str) and v in DETECTORS,
        "region": lambda v: v in REGIONS,
        "input_size": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 8,
        "options": lambda v: isinstance(v, dict),
    }
    for key, ok in checks.items():
        if key in config and not ok(config[key]):
            raise WeightsError(f"{side}: config.{key} = {config[key]!r} is not valid")
    if "detector" not in config:
        raise WeightsError(f"{side}: config has no 'detector'")
    config = DetectorConfig.from_dict(config)
    try:
        DETECTORS.get(config.detector).parse_options(config.options)
    except DffrError as e:
        raise WeightsError(f"{side}: {e}") from None
    return config


def load_detector(weights: str | Path, device: Device | str | None = None, **overrides) -> Detector:
    """A detector with its weights, configured from the JSON sidecar beside the file.

    Without a sidecar (a seed system's released model), the detector, database and
    region come from the file name `<Detector>_<DB>_<region>.<ext>` and the seed's
    conventions apply (200 px input, FAKE at class 0, Keras sigmoid = P(real))."""
    weights = Path(weights)
    if not weights.is_file():
        raise WeightsError(f"{weights}: model file not found")
    side = sidecar_path(weights)
    parts = weights.stem.split("_")
    named = len(parts) >= 3 and parts[0] in DETECTORS  # <Detector>_<DB>_<region>
    if side.is_file():
        config = _sidecar_config(side)
        init = json.loads(side.read_text()).get("init", {"kind": "not recorded"})
        if named:
            said = (DETECTORS.canonical(parts[0]), "_".join(parts[1:-1]), parts[-1])
            has = (DETECTORS.canonical(config.detector), config.ddbb, config.region)
            if said != has:
                raise WeightsError(
                    f"{weights}: the file is named for {' / '.join(said)} (detector / "
                    f"database / region) but its sidecar says {' / '.join(has)}: a model "
                    "copied under another name is not that model"
                )
    else:
        if not named:
            raise WeightsError(
                f"{weights}: no sidecar {side.name} and the name is not "
                f"<Detector>_<DB>_<region> with a detector of {DETECTORS.names()}"
            )
        if weights.suffix == ".keras":  # the seed released Keras 2 .hdf5 files only
            raise WeightsError(
                f"{weights}: a dffr model without its sidecar {side.name}, which says what "
                "its output means; without it every score could be 1 - P(fake). Train it "
                "again, or put the sidecar back"
            )
        # the seed's conventions: FAKE at class 0, a Keras sigmoid is P(real)
        declared = DETECTORS.get(parts[0]).option_names()
        seed = {k: v for k, v in {"sigmoid_means": "real"}.items() if k in declared}
        config = DetectorConfig(
            parts[0], region=parts[-1], ddbb="_".join(parts[1:-1]), pretrained=False, options=seed
        )
        init = {"kind": "seed release"}
    for k, v in overrides.items():
        setattr(config, k, v)
    config.pretrained = False  # the weights file replaces any initialisation
    det = build_detector(config, device)
    det.load_weights(weights)
    det.init = init
    return det


_KEPT: contextvars.ContextVar[dict | None] = contextvars.ContextVar("dffr_kept", default=None)


@contextlib.contextmanager
def models_kept() -> Iterator[None]:
    """Within it, `load_models` loads each model file once: a study that scores several
    caches and splits with the same models does not load them for each (a file changed
    on disk since is loaded again)."""
    token = _KEPT.set({})
    try:
        yield
    finally:
        _KEPT.reset(token)


def load_models(
    models: str | Path, keys, device: Device | str | None = None
) -> tuple[dict[tuple[str, str, str], Detector], list[str]]:
    """The models of a models folder named by (training database, detector, region)
    keys, each loaded once, and the paths of those that are not there (for the caller
    to name: a missing model is reported, never skipped silently)."""
    loaded, missing = {}, []
    kept = _KEPT.get()
    for key in dict.fromkeys(keys):
        path = model_path(models, key[1], key[0], key[2])
        if not path.is_file():
            missing.append(str(path))
            continue
        st = path.stat()
        memo = (str(path.resolve()), st.st_mtime_ns, st.st_size, str(device))
        if kept is not None and memo in kept:
            loaded[key] = kept[memo]
            continue
        loaded[key] = load_detector(path, device)
        if kept is not None:
            kept[memo] = loaded[key]
    return loaded, missing
