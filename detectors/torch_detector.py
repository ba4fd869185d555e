"""What the PyTorch detectors share: batching, the training loop (with DDP under
torchrun), model selection on validation AUC, checkpoints, and safe weight loading."""

from __future__ import annotations

import copy
import os
from abc import abstractmethod
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch import nn
from tqdm import tqdm

from dffr.atomic import replaced
from dffr.detectors.base import Detector, DetectorConfig, WeightsError
from dffr.detectors.imagenet import WeightsFile, initialisation, resolve, torch_weights
from dffr.device import Device


def distributed() -> tuple[int, int]:
    """(rank, world size); joins the process group when started by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
    if world > 1:
        return torch.distributed.get_rank(), world
    return 0, 1


class TorchDetector(Detector):
    """A two-class PyTorch network; P(fake) is the probability of class `fake_index`."""

    suffix = ".pt"

    def __init__(self, config: DetectorConfig, device: Device | str | None = None) -> None:
        super().__init__(config, device)
        torch.manual_seed(config.seed)
        # denormal floats appear after a few steps and make CPU steps up to 15x slower
        torch.set_flush_denormal(True)
        rank, _ = distributed()
        if self.device.kind == "cuda" and "LOCAL_RANK" in os.environ:
            self.device = Device("cuda", int(os.environ["LOCAL_RANK"]))
        self.model = self.build().to(self.device.torch)
        self.val_auc: float | None = None

    @abstractmethod
    def build(self) -> nn.Module:
        """The network, initialised (ImageNet where the detector uses it)."""

    arch: str = ""  # the torchvision network whose ImageNet weights it starts from

    @classmethod
    def imagenet_weights(cls, config: DetectorConfig) -> WeightsFile | None:
        return torch_weights(cls.arch) if cls.arch else None

    def imagenet_state(self, required: bool = False) -> dict | None:
        """The ImageNet state dict to start from (fetched when not here; None when
        trained from scratch); records the initialisation in `self.init`.
        `required`: whatever the config says (a released file built on ImageNet)."""
        config = replace(self.config, pretrained=True) if required else self.config
        spec = self.imagenet_weights(config)
        path = resolve(config, spec, self.name)
        self.init = initialisation(path, spec)
        if path is None:
            return None
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise WeightsError(f"{path}: not a PyTorch state dict ({e})") from None

    @abstractmethod
    def probabilities(self, outputs) -> torch.Tensor:
        """(N, 2) class probabilities from the network's eval-mode outputs."""

    @abstractmethod
    def loss(self, outputs, targets: torch.Tensor) -> torch.Tensor:
        """Training loss from train-mode outputs and class-index targets."""

    def forward_train(self, model: nn.Module, x: torch.Tensor):
        return model(x)

    def trainable(self) -> list[nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def targets(self, labels: np.ndarray) -> torch.Tensor:
        """dffr labels (1 = fake) -> class indices of this network's layout."""
        fake = self.config.fake_index
        idx = np.where(np.asarray(labels) == 1, fake, 1 - fake)
        return torch.as_tensor(idx, dtype=torch.long, device=self.device.torch)

    def _tensor(self, images: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(self.prepare(images)).permute(0, 3, 1, 2)
        return x.contiguous().to(self.device.torch)

    @torch.no_grad()
    def predict(self, images: np.ndarray, batch: int = 32) -> np.ndarray:
        self.model.eval()
        out = []
        for s in range(0, len(images), batch):
            with self._autocast():
                probs = self.probabilities(self.model(self._tensor(images[s : s + batch])))
            out.append(probs[:, self.config.fake_index].float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    def _autocast(self):
        """Mixed precision in the model's dtype (`precision`); float32: none."""
        dtype = torch.bfloat16 if self.dtype == "bfloat16" else torch.float16
        return torch.autocast(self.device.kind, dtype=dtype, enabled=self.dtype != "float32")

    def evaluate(self, data, batch: int) -> tuple[float, float]:
        """(AUC, mean loss) on a RegionData; AUC is nan when it holds one class only."""
        scores, losses, labels = [], [], []
        self.model.eval()
        with torch.no_grad():
            for x, y in data.batches(batch):
                with self._autocast():
                    outputs = self.model(self._tensor(x))
                    losses.append(float(self.loss(outputs, self.targets(y))) * len(y))
                scores.append(
                    self.probabilities(outputs)[:, self.config.fake_index].float().cpu().numpy()
                )
                labels.append(y)
        if not labels:
            return float("nan"), float("nan")
        y, s = np.concatenate(labels), np.concatenate(scores)
        auc = roc_auc_score(y, s) if len(set(y)) == 2 else float("nan")
        return float(auc), float(np.sum(losses) / len(y))

    def fit(self, train, val, log, checkpoint: Path | None = None) -> None:
        cfg = self.config
        rank, world = distributed()
        model = self.model
        if world > 1:
            ids = [self.device.index] if self.device.kind == "cuda" else None
            model = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        opt = torch.optim.Adam(self.trainable(), lr=self.lr)
        scaler = torch.amp.GradScaler(self.device.kind, enabled=self.dtype == "float16")
        state = {"epoch": 0, "best": -np.inf, "best_state": None, "stale": 0}
        if checkpoint is not None and checkpoint.is_file():
            ck = torch.load(checkpoint, map_location=self.device.torch, weights_only=True)
            self.model.load_state_dict(ck["model"])
            opt.load_state_dict(ck["optimizer"])
            state = {k: ck[k] for k in state}
            log.rows.extend(ck.get("log", []))
            torch.set_rng_state(ck["rng"])
        steps = -(-len(train) // (cfg.batch * world))
        for epoch in range(state["epoch"], cfg.epochs):
            model.train()
            self.on_train_epoch(epoch)
            total, seen = 0.0, 0
            batches = train.batches(cfg.batch, shuffle=True, epoch=epoch, part=(rank, world))
            for x, y in tqdm(
                batches,
                total=steps,
                desc=f"epoch {epoch + 1}/{cfg.epochs}",
                unit="batch",
                disable=rank != 0,
                leave=False,
            ):
                with self._autocast():
                    loss = self.loss(self.forward_train(model, self._tensor(x)), self.targets(y))
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                total += loss.item() * len(y)
                seen += len(y)
            self.recalibrate_bn(train)
            auc, val_loss = self.evaluate(val, cfg.batch)
            # select on val AUC; a one-class val set falls back to val loss, none to last
            score = auc if not np.isnan(auc) else (-val_loss if not np.isnan(val_loss) else epoch)
            if score > state["best"]:
                state.update(best=score, best_state=copy.deepcopy(self.model.state_dict()), stale=0)
            else:
                state["stale"] += 1
            log.epoch(
                epoch=epoch + 1, train_loss=total / max(seen, 1), val_loss=val_loss, val_auc=auc
            )
            state["epoch"] = epoch + 1
            if rank == 0 and checkpoint is not None:
                with replaced(checkpoint) as tmp:
                    torch.save(
                        {
                            "model": self.model.state_dict(),
                            "optimizer": opt.state_dict(),
                            "log": log.rows,
                            "rng": torch.get_rng_state(),
                            **state,
                        },
                        tmp,
                    )
            if state["stale"] >= cfg.patience:
                break
        if state["best_state"] is not None:
            self.model.load_state_dict(state["best_state"])
        aucs = [r["val_auc"] for r in log.rows if not np.isnan(r["val_auc"])]
        self.val_auc = max(aucs) if aucs else None

    @torch.no_grad()
    def recalibrate_bn(self, data) -> None:
        """Re-estimate BatchNorm statistics as a plain average over training batches
        with the current weights ("precise BN"): with few steps, or after a short fine-
        tuning, the running averages still lag the weights and eval scores suffer. All
        ranks use the same images, so their statistics stay identical."""
        bns = [
            m
            for m in self.model.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
        ]
        if not bns or self.config.bn_recalibration <= 0:
            return
        momenta = [m.momentum for m in bns]
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # cumulative average
        self.model.train()
        for x in self.calibration_batches(data):
            with self._autocast():
                self.model(self._tensor(x))
        for m, momentum in zip(bns, momenta, strict=True):
            m.momentum = momentum

    def on_train_epoch(self, epoch: int) -> None:
        """Hook: per-epoch switches (a frozen front end stays in eval mode, ...)."""

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({k: v.detach().cpu() for k, v in self.model.state_dict().items()}, path)

    @classmethod
    def file_problem(cls, path: Path) -> str | None:
        try:  # mmap: the tensors' bytes are checked by the zip reader, not copied
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception as e:
            return f"not a loadable PyTorch weights file ({e})"
        if not isinstance(state, dict) or not state:
            return "not a state dict (a mapping of names to tensors)"
        return None

    def load_weights(self, path: Path) -> None:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise WeightsError(f"{path}: not a loadable PyTorch weights file ({e})") from None
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        if not isinstance(state, dict) or not all(
            isinstance(v, torch.Tensor) for v in state.values()
        ):
            raise WeightsError(f"{path}: not a state dict (a mapping of names to tensors)")
        state = {k.removeprefix("module."): v for k, v in state.items()}
        own = self.model.state_dict()
        missing = [k for k in own if k not in state and not self.optional_key(k)]
        unexpected = [k for k in state if k not in own]
        wrong = [k for k in own if k in state and state[k].shape != own[k].shape]
        if missing or unexpected or wrong:
            detail = "; ".join(
                f"{n} {len(v)} (e.g. {v[0]})"
                for n, v in (
                    ("missing", missing),
                    ("unexpected", unexpected),
                    ("wrong shape", wrong),
                )
                if v
            )
            raise WeightsError(
                f"{path}: weights do not fit {self.name} "
                f"(input {self.config.input_size}px): {detail}"
            )
        self.model.load_state_dict(state, strict=False)
        self.after_load(state)

    def after_load(self, state: dict) -> None:
        """Hook: complete what a released file does not hold."""

    def optional_key(self, key: str) -> bool:
        """Keys a released file may lack (e.g. a front end it never saved)."""
        return False
