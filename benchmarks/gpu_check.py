"""The GPU paths on an accelerator, in one run (a few minutes on one GPU).

    .venv/bin/python benchmarks/gpu_check.py [--device cuda] [--work DIR]

On a small demo database made here (the portraits that ship with scikit-image and
matplotlib, varied and manipulated as `dffr demo` does, preprocessed at 200 px):

1. precision: one training step of each detector from the same weights in float32 and in
   mixed precision (float16 with loss scaling, as training on a GPU runs, and bfloat16),
   then P(fake) of the batch in float32: the steps must agree within 1e-2;
2. scoring: `predict_frames` with the paper's 15 models (paper input sizes, `--workers`
   threads feeding) beside the bare networks' forward on ready tensors: frames per
   second and the ratio;
3. the face detector on a video's frames (1080p): MTCNN frame by frame and with the
   frames searched together (`batch_frames`), frames per second;
4. DDP: `dffr train` under torchrun with two processes (NCCL where each has a GPU of its
   own, gloo otherwise: NCCL refuses two ranks on one GPU), the model written.

It exits 1 when a check fails. `--device cpu` runs the same on the CPU (bfloat16 only,
gloo), which is how tests/test_gpu_check.py keeps it working where there is no GPU.
Xception is checked where Keras is installed (a GPU machine without it says so).
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from dffr.datasets.base import get_dataset
from dffr.datasets.cache import read_index
from dffr.datasets.preprocess import Settings, preprocess
from dffr.detectors.base import PAPER_DETECTORS, DetectorConfig, build_detector
from dffr.detectors.model_files import model_path
from dffr.experiments.demo import MIN_FACE, build_database
from dffr.feed import default_workers, feed
from dffr.regions.face_detection import get_face_detector
from dffr.regions.masks import REGIONS
from dffr.scoring.scores import _region_block, predict_frames

warnings.filterwarnings("ignore")
sys.path.insert(0, str(Path(__file__).parent))
from score import bare_seconds  # noqa: E402  (benchmarks/score.py)

TOLERANCE = 1e-2


def demo_cache(work: Path, per_class: int) -> Path:
    db, cache = work / "db", work / "cache"
    if not (cache / "index.parquet").is_file():
        sizes = {"train": per_class, "val": per_class // 2, "test": per_class}
        build_database(db, sizes=sizes)
        ds = get_dataset("folder", db)
        settings = Settings(frames=1, size=200, min_face=MIN_FACE)
        preprocess(ds.items(), db, cache, settings, database=ds, progress=False)
    return cache


def p_fake(det, x: np.ndarray) -> np.ndarray:
    """P(fake) in float32, whatever the device: the weights are what is compared."""
    det.model.eval()
    with torch.no_grad():
        return det.probabilities(det.model(det._tensor(x)))[:, det.options.fake_index].numpy(
            force=True
        )


def torch_step(det, state: dict, x: np.ndarray, y: np.ndarray, dtype) -> np.ndarray:
    """P(fake) after one Adam step from `state` with autocast to `dtype` (None: off)."""
    det.model.load_state_dict(state)
    kind = det.device.kind
    opt = torch.optim.Adam(det.trainable(), lr=det.lr)
    scaler = torch.amp.GradScaler(kind, enabled=dtype is torch.float16)
    torch.manual_seed(0)  # the same noise and dropout (Capsule) in every variant
    det.model.train()
    det.on_train_epoch(0)
    with torch.autocast(kind, dtype=dtype or torch.float32, enabled=dtype is not None):
        loss = det.loss(det.forward_train(det.model, det._tensor(x)), det.targets(y))
    opt.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(opt)
    scaler.update()
    return p_fake(det, x)


def keras_step(det, weights: list, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    det.model.set_weights(weights)
    det._compile(det.lr)
    det.model.train_on_batch(det.prepare(x), det._targets(y))
    return det.predict(x)


def check_precision(cache: Path, device: str, failures: list[str]) -> None:
    rows = read_index(cache, "train")
    rows = rows.iloc[np.r_[0:8, len(rows) - 8 : len(rows)]]  # real and fake faces
    _, images = _region_block((cache, {"entire"}, None), rows)
    x, y = images["entire"], rows["label"].to_numpy()
    dtypes = {"float16": torch.float16, "bfloat16": torch.bfloat16}
    if device == "cpu":
        dtypes.pop("float16")  # a CPU has no fast float16; training never uses it there
    for name in PAPER_DETECTORS:
        cfg = DetectorConfig(name, region="entire", pretrained=False)
        if name == "Xception":
            if importlib.util.find_spec("keras") is None or device == "cpu":
                why = "Keras is not installed here" if device != "cpu" else "float32 on a CPU"
                print(f"  {name}: skipped, {why}")
                continue
            det = build_detector(cfg, device)
            weights = det.model.get_weights()
            mixed = keras_step(det, weights, x, y)
            det32 = build_detector(cfg, device)
            det32._policy = lambda: "float32"
            det32.model = det32._in_device_policy(det32.model)
            reference = keras_step(det32, weights, x, y)
            results = {det._policy(): mixed}
        else:
            det = build_detector(cfg, device)
            state = copy.deepcopy(det.model.state_dict())
            reference = torch_step(det, state, x, y, None)
            results = {k: torch_step(det, state, x, y, dt) for k, dt in dtypes.items()}
        for kind, scores in results.items():
            diff = float(np.max(np.abs(scores - reference)))
            ok = diff <= TOLERANCE
            print(f"  {name:8s} {kind:14s} vs float32: max |dP(fake)| {diff:.2e} {'ok' * ok}")
            if not ok:
                failures.append(f"{name} {kind}: {diff:.2e} > {TOLERANCE}")


def check_scoring(cache: Path, device: str, workers: int, batch: int) -> None:
    rows = read_index(cache, "test")
    models = {}
    for name in PAPER_DETECTORS:
        if name == "Xception" and importlib.util.find_spec("keras") is None:
            continue
        for region in REGIONS:
            cfg = DetectorConfig(name, region=region, pretrained=False)
            models[(name, region)] = (build_detector(cfg, device), region)
    _, sample = next(feed(_region_block, (cache, set(REGIONS), None), [rows.iloc[:batch]], 0))
    bare = sum(bare_seconds(m, sample[r]) for m, r in models.values()) / len(sample["entire"])
    predict_frames(cache, rows.iloc[:batch], models, batch=batch, progress=False)  # warm-up
    for w in sorted({0, workers}):
        t = time.perf_counter()
        predict_frames(cache, rows, models, batch=batch, progress=False, workers=w)
        fps = len(rows) / (time.perf_counter() - t)
        print(
            f"  {len(models)} models, {w} worker(s): {fps:8.1f} frames/s; bare networks "
            f"{1 / bare:8.1f} frames/s; ratio {fps * bare:.2f}"
        )


def check_face_detector(cache: Path, device: str, frames: int) -> None:
    rows = read_index(cache, "test")
    from dffr.images import read_image

    face = read_image(cache / rows["face"].iloc[0])
    canvas = np.full((1080, 1920, 3), 90, np.uint8)
    canvas[400 : 400 + face.shape[0], 900 : 900 + face.shape[1]] = face
    video = [np.roll(canvas, 7 * k, axis=1) for k in range(frames)]
    for batched in (False, True):
        det = get_face_detector("mtcnn", device=device, batch_frames=batched)
        det.detect_frames(video[:2])  # warm-up
        t = time.perf_counter()
        found = det.detect_frames(video)
        fps = len(video) / (time.perf_counter() - t)
        kind = "frames together" if batched else "frame by frame "
        print(f"  mtcnn, {kind}: {fps:7.1f} frames/s, faces in {sum(map(bool, found))}/{frames}")


def check_ddp(cache: Path, device: str, work: Path, failures: list[str]) -> None:
    gpus = torch.cuda.device_count() if device != "cpu" else 0
    backend = "nccl" if gpus >= 2 else "gloo"
    out = work / "ddp-models"
    env = {**os.environ, "DFFR_DEVICE": device if gpus >= 2 else "cpu"}
    if gpus < 2:
        print(f"  {gpus} GPU(s): two ranks on gloo (NCCL needs a GPU per process)")
    cmd = [
        *(sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"),
        *("--master_port", "29517", "-m", "dffr", "train", "--detector", "DSP-FWA"),
        *("--region", "eyes", "--cache", str(cache), "--epochs", "1", "--batch", "8"),
        *("--input-size", "64", "--trunk", "resnet18", "--from-scratch", "--out", str(out)),
    ]
    t = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    weights = model_path(out, "DSP-FWA", "folder", "eyes")
    ok = done.returncode == 0 and weights.is_file()
    took = time.perf_counter() - t
    print(f"  DDP, 2 processes, {backend}: exit {done.returncode}, {took:.1f} s, {weights.name}")
    if not ok:
        failures.append(f"DDP ({backend}): exit {done.returncode}: {done.stderr[-2000:]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--work", type=Path, default=Path("/tmp/dffr-gpu-check"))
    ap.add_argument("--faces", type=int, default=32, help="demo images per class and split")
    ap.add_argument("--frames", type=int, default=32, help="1080p frames for the face detector")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--workers", type=int, default=default_workers())
    ap.add_argument("--skip", default="", help="comma list of checks not to run")
    args = ap.parse_args()
    if args.device != "cpu" and not torch.cuda.is_available():
        sys.exit("no CUDA device here: run on a GPU machine, or with --device cpu")
    name = torch.cuda.get_device_name(0) if args.device != "cpu" else "CPU"
    print(f"device: {name}; torch {torch.__version__}")
    cache = demo_cache(args.work, args.faces)
    failures: list[str] = []
    skip = set(args.skip.split(","))
    checks = {
        "precision": lambda: check_precision(cache, args.device, failures),
        "scoring": lambda: check_scoring(cache, args.device, args.workers, args.batch),
        "faces": lambda: check_face_detector(cache, args.device, args.frames),
        "ddp": lambda: check_ddp(cache, args.device, args.work, failures),
    }
    for check, run in checks.items():
        if check in skip:
            continue
        t = time.perf_counter()
        print(f"{check}:")
        run()
        print(f"  ({time.perf_counter() - t:.0f} s)")
    for f in failures:
        print(f"FAILED: {f}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
