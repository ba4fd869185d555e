"""Model sets people can share: `pack` writes one, `pull` fetches and verifies one.

A packed set is a folder: `<DB>/<model files and their sidecars>` (the layout `--models`
reads, so a pulled set is used as it is), `MODEL_CARD.md` generated from the sidecars,
and `manifest.json` with every file's size and sha256. `pull` takes the set from a URL
(the folder served over HTTP; files fetched with pooch, each against the manifest's
hash) or from a Hugging Face Hub repository (`hf://owner/name[@revision]`, through
huggingface_hub), checks every file's hash in a temporary folder and only then moves
the set into place: a set with one file that fails its check is refused whole, naming
that file.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import tempfile
from pathlib import Path

from dffr import __version__
from dffr.detectors.base import DETECTORS
from dffr.detectors.imagenet import file_digest
from dffr.detectors.model_files import read_sidecar, sidecar_path
from dffr.errors import DffrError

MANIFEST = "manifest.json"
CARD = "MODEL_CARD.md"
FORMAT = "dffr-models/1"


class ModelSetError(DffrError):
    """A model set that cannot be packed, fetched or trusted."""


def _models(folder: Path) -> list[Path]:
    """The model files of one database folder (every detector's suffix, with a sidecar)."""
    suffixes = {DETECTORS.get(n).suffix for n in DETECTORS.names()}
    found = sorted(
        p
        for p in folder.iterdir()
        if p.suffix in suffixes and not p.name.startswith(".") and ".ckpt" not in p.name
    )
    for p in found:
        if not sidecar_path(p).is_file():
            raise ModelSetError(f"{p}: no sidecar {sidecar_path(p).name} beside it; not packed")
    return found


def _card_row(meta: dict) -> list[str]:
    cfg, data = meta.get("config", {}), meta.get("data", {})

    def counts(split: str) -> str:
        c = data.get(split) or {}
        return f"{c.get('real', '?')} real / {c.get('fake', '?')} fake" if c else "?"

    thr = meta.get("threshold")
    auc = meta.get("val_auc")
    return [
        str(meta.get("detector", cfg.get("detector", "?"))),
        str(cfg.get("region", "?")),
        counts("train"),
        counts("val"),
        str((meta.get("init") or {}).get("kind", "?")),
        "n/a" if auc is None else f"{auc:.4f}",
        "not recorded" if not thr else f"{thr['value']:.4f} ({thr['rule']})",
        str(meta.get("dffr", "?")),
    ]


def model_card(ddbb: str, metas: dict[str, dict], licence: str) -> str:
    """MODEL_CARD.md: what each model is, from its sidecar."""
    head = ["detector", "region", "train faces", "val faces", "init", "val AUC", "threshold"]
    head.append("dffr")
    rows = [_card_row(m) for _, m in sorted(metas.items())]
    table = [f"| {' | '.join(head)} |", f"|{' --- |' * len(head)}"]
    table += [f"| {' | '.join(r)} |" for r in rows]
    return "\n".join(
        [
            f"# dffr models trained on {ddbb}",
            "",
            f"Licence: {licence}",
            "",
            "Score = P(fake) in [0, 1]. Each model's threshold was chosen on its validation "
            "faces (where the false-alarm and miss rates meet); `dffr detect` states it with "
            "every verdict.",
            "",
            *table,
            "",
            f"Packed by dffr {__version__}; every file's sha256 is in {MANIFEST}.",
            "",
        ]
    )


def pack(models: str | Path, ddbb: str, out: str | Path, licence: str = "unspecified") -> dict:
    """Write the set of `ddbb`'s models in `models` to `out`; returns the manifest."""
    src, out = Path(models) / ddbb, Path(out)
    if not src.is_dir():
        raise ModelSetError(f"{src}: no models of {ddbb!r} here")
    files = _models(src)
    if not files:
        raise ModelSetError(f"{src}: no model files to pack")
    if out.exists() and any(out.iterdir()):
        raise ModelSetError(f"{out} exists and is not empty: pack into a new folder")
    (out / ddbb).mkdir(parents=True, exist_ok=True)
    metas, listed = {}, {}
    for weights in files:
        for f in (weights, sidecar_path(weights)):
            shutil.copy2(f, out / ddbb / f.name)
            listed[f"{ddbb}/{f.name}"] = {"sha256": file_digest(f), "bytes": f.stat().st_size}
        metas[weights.name] = read_sidecar(weights)
    (out / CARD).write_text(model_card(ddbb, metas, licence))
    listed[CARD] = {"sha256": file_digest(out / CARD), "bytes": (out / CARD).stat().st_size}
    manifest = {
        "format": FORMAT,
        "ddbb": ddbb,
        "licence": licence,
        "dffr": __version__,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "files": listed,
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return manifest


def _read_manifest(path: Path, source: str) -> dict:
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ModelSetError(f"{source}: no readable {MANIFEST} ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ModelSetError(f"{source}: {MANIFEST} is not a dffr model set ({FORMAT})")
    ddbb = manifest.get("ddbb")
    if not isinstance(ddbb, str) or not ddbb or Path(ddbb).name != ddbb or ddbb in (".", ".."):
        raise ModelSetError(f"{source}: {MANIFEST} names no database (ddbb) to file it under")
    for name in manifest.get("files", {}):
        parts = Path(name).parts
        if Path(name).is_absolute() or ".." in parts or parts[:-1] not in ((), (ddbb,)):
            raise ModelSetError(f"{source}: {MANIFEST} names {name!r}, outside the set")
    return manifest


def _fetch_url(base: str, into: Path) -> dict:
    import pooch

    base = base.rstrip("/")
    try:
        pooch.retrieve(f"{base}/{MANIFEST}", None, MANIFEST, path=into, progressbar=False)
    except Exception as e:
        raise ModelSetError(f"{base}: cannot fetch {MANIFEST} ({type(e).__name__}: {e})") from None
    manifest = _read_manifest(into / MANIFEST, base)
    for name, entry in manifest["files"].items():
        try:
            pooch.retrieve(
                f"{base}/{name}",
                f"sha256:{entry['sha256']}",
                name,
                path=into,
                progressbar=False,
            )
        except ValueError as e:  # pooch: the hash does not match (the file is deleted)
            raise ModelSetError(
                f"{base}: {name} fails its sha256 check; set refused ({e})"
            ) from None
        except Exception as e:
            raise ModelSetError(f"{base}: cannot fetch {name} ({type(e).__name__}: {e})") from None
    return manifest


def _fetch_hub(spec: str, into: Path) -> dict:
    from huggingface_hub import snapshot_download

    repo, _, revision = spec.partition("@")
    try:
        snapshot_download(repo, revision=revision or None, local_dir=str(into))
    except Exception as e:
        raise ModelSetError(f"hf://{spec}: cannot download ({type(e).__name__}: {e})") from None
    return _read_manifest(into / MANIFEST, f"hf://{spec}")


def verify(folder: Path, manifest: dict, source: str) -> None:
    """ModelSetError naming the first file that is missing or fails its sha256."""
    for name, entry in manifest["files"].items():
        path = folder / name
        if not path.is_file():
            raise ModelSetError(f"{source}: {name} is missing; set refused")
        if file_digest(path) != entry["sha256"]:
            raise ModelSetError(f"{source}: {name} fails its sha256 check; set refused")


def pull(source: str, out: str | Path) -> dict:
    """Fetch a packed set (URL, `hf://owner/name[@rev]` or a local folder) into the
    models folder `out`, every file checked before any is placed; returns the manifest."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out, prefix=".pull-") as tmp:
        into = Path(tmp)
        if source.startswith(("http://", "https://")):
            manifest = _fetch_url(source, into)
        elif source.startswith("hf://"):
            manifest = _fetch_hub(source[len("hf://") :], into)
        elif Path(source).is_dir():
            manifest = _read_manifest(Path(source) / MANIFEST, source)
            for name in manifest["files"]:
                if (Path(source) / name).is_file():
                    (into / name).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(Path(source) / name, into / name)
        else:
            raise ModelSetError(f"{source}: not a URL, hf://owner/name or a folder")
        verify(into, manifest, source)
        place = out / manifest["ddbb"]  # the card and the manifest go beside the models
        place.mkdir(parents=True, exist_ok=True)
        shutil.copy2(into / MANIFEST, place / MANIFEST)
        # sidecars first: a model file never appears without its own
        for name in sorted(manifest["files"], key=lambda n: not n.endswith(".json")):
            os.replace(into / name, place / Path(name).name)
    return manifest
