"""Images per second of each detector at 200x200 on this machine: inference and one
training step, batch 1 and batch 32, beside the bare framework doing the same on
ready tensors, so the cost of our wrapper (resizing, normalisation, conversions)
shows as a ratio.

    .venv/bin/python benchmarks/detectors.py [--size 200] [--reps 2] [--detectors ...]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

from dffr.detectors.keras_detector import KerasDetector

warnings.filterwarnings("ignore")


def timed(fn, reps: int) -> float:
    fn()  # warm-up (graph building, allocator)
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t) / reps


def measure(det, batch: int, reps: int) -> tuple[float, float, float, float]:
    """Seconds per call: (ours inference, bare inference, ours train step, bare step)."""
    imgs = np.random.default_rng(0).integers(0, 256, (batch, 256, 256, 3), dtype=np.uint8)
    labels = np.arange(batch) % 2
    x = det.prepare(imgs)
    model = det.model
    if isinstance(det, KerasDetector):
        det._compile(1e-4)
        y = det._targets(labels)
        return (
            timed(lambda: det.predict(imgs, batch=batch), reps),
            timed(lambda: model(x, training=False), reps),
            timed(lambda: model.train_on_batch(det.prepare(imgs), det._targets(labels)), reps),
            timed(lambda: model.train_on_batch(x, y), reps),
        )
    import torch

    xt = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], 1e-4)
    yt = det.targets(labels)

    def bare_forward():
        model.eval()
        with torch.no_grad():
            det.probabilities(model(xt))

    def step(inp):
        model.train()
        loss = det.loss(det.forward_train(model, inp), yt)
        opt.zero_grad()
        loss.backward()
        opt.step()

    return (
        timed(lambda: det.predict(imgs, batch=batch), reps),
        timed(bare_forward, reps),
        timed(lambda: step(det._tensor(imgs)), reps),
        timed(lambda: step(xt), reps),
    )


def bench(name: str, size: int, reps: int) -> list[tuple]:
    from dffr.detectors.base import DetectorConfig, build_detector

    det = build_detector(DetectorConfig(name, input_size=size, pretrained=False), "cpu")
    rows = []
    for batch in (1, 32):
        ours_inf, bare_inf, ours_tr, bare_tr = measure(det, batch, reps)
        rows.append((name, batch, "inference", batch / ours_inf, batch / bare_inf))
        rows.append((name, batch, "train step", batch / ours_tr, batch / bare_tr))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=200)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument(
        "--detectors",
        nargs="*",
        default=["DSP-FWA", "Capsule", "Xception"],
        help="any registered detector names, e.g. ResNet-18 Keras-ResNet50",
    )
    args = ap.parse_args()
    w = max(len("detector"), *map(len, args.detectors))
    print(
        f"{'detector':{w}s} {'batch':>5s} {'what':>10s} {'dffr img/s':>11s} "
        f"{'bare img/s':>11s} {'dffr/bare':>9s}"
    )
    for name in args.detectors:
        for det, batch, what, ours, bare in bench(name, args.size, args.reps):
            print(
                f"{det:{w}s} {batch:5d} {what:>10s} {ours:11.2f} {bare:11.2f} {ours / bare:9.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
