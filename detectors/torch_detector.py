"""What the PyTorch detectors share: batching, the training steps (with DDP under
torchrun, mixed precision) and checkpoint files `training_loop` calls, and safe weight
loading."""

from __future__ import annotations

import copy
import os
from abc import abstractmethod
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from torch import nn

from dffr.atomic import replaced
from dffr.detectors.base import Detector, DetectorConfig, WeightsError
from dffr.detectors.imagenet import WeightsFile, initialisation, resolve, torch_weights
from dffr.device import Device

if TYPE_CHECKING:
    from dffr.detectors.data import Batch


def distributed() -> tuple[int, int]:
    """(rank, world size); joins the process group when started by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
    if world > 1:
        return torch.distributed.get_rank(), world
    return 0, 1


@dataclass
class TorchOptions:
    """What every two-class PyTorch detector takes."""

    fake_index: Literal[0, 1] = field(
        default=0, metadata={"help": "the class index of FAKE (the seed's released models: 0)"}
    )


class TorchDetector(Detector):
    """A two-class PyTorch network; P(fake) is the probability of class `fake_index`."""

    Options = TorchOptions
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

    def batch_loss(self, outputs, batch: Batch) -> torch.Tensor:
        """Training loss over a whole batch: override it for a loss that uses the
        landmarks, the region's masks or its name (`Batch`); by default `loss` on the
        class-index targets."""
        return self.loss(outputs, self.targets(batch.labels))

    def forward_train(self, model: nn.Module, x: torch.Tensor):
        return model(x)

    def trainable(self) -> list[nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def targets(self, labels: np.ndarray) -> torch.Tensor:
        """dffr labels (1 = fake) -> class indices of this network's layout."""
        fake = self.options.fake_index
        idx = np.where(np.asarray(labels) == 1, fake, 1 - fake)
        return torch.as_tensor(idx, dtype=torch.long, device=self.device.torch)

    def _tensor(self, images: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(self.prepare(images)).permute(0, 3, 1, 2).contiguous()
        if self.device.kind == "cuda":  # from page-locked memory the copy runs asynchronously
            return x.pin_memory().to(self.device.torch, non_blocking=True)
        return x.to(self.device.torch)

    @torch.no_grad()
    def predict(self, images: np.ndarray, batch: int = 32) -> np.ndarray:
        self.model.eval()
        out = []
        for s in range(0, len(images), batch):
            with self._autocast():
                probs = self.probabilities(self.model(self._tensor(images[s : s + batch])))
            out.append(probs[:, self.options.fake_index].float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    def _autocast(self):
        """Mixed precision in the model's dtype (`precision`); float32: none."""
        dtype = torch.bfloat16 if self.dtype == "bfloat16" else torch.float16
        return torch.autocast(self.device.kind, dtype=dtype, enabled=self.dtype != "float32")

    def begin_training(self) -> tuple[int, int]:
        rank, world = distributed()
        self._net = self.model  # what the training steps run: under torchrun, DDP's wrapper
        if world > 1:
            ids = [self.device.index] if self.device.kind == "cuda" else None
            self._net = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        self._opt = torch.optim.Adam(self.trainable(), lr=self.lr)
        self._scaler = torch.amp.GradScaler(self.device.kind, enabled=self.dtype == "float16")
        return rank, world

    def begin_epoch(self, epoch: int) -> str:
        self._net.train()
        self.on_train_epoch(epoch)
        return "full"

    def train_step(self, batch: Batch) -> float:
        with self._autocast():
            outputs = self.forward_train(self._net, self._tensor(batch.images))
            loss = self.batch_loss(outputs, batch)
        self._opt.zero_grad(set_to_none=True)
        self._scaler.scale(loss).backward()
        self._scaler.step(self._opt)
        self._scaler.update()
        return loss.item()

    def snapshot(self) -> dict:
        return copy.deepcopy(self.model.state_dict())

    def restore(self, snapshot: dict) -> None:
        self.model.load_state_dict(snapshot)

    def write_checkpoint(self, path: Path, state: dict, rows: list, best) -> None:
        with replaced(path) as tmp:  # one file, moved into place whole
            torch.save(
                {
                    "model": self.model.state_dict(),
                    "optimizer": self._opt.state_dict(),
                    "log": rows,
                    "rng": torch.get_rng_state(),
                    "best_state": best,
                    **state,
                },
                tmp,
            )

    def read_checkpoint(self, path: Path) -> tuple[dict, list, object] | None:
        if not path.is_file():
            return None
        ck = torch.load(path, map_location=self.device.torch, weights_only=True)
        self.model.load_state_dict(ck["model"])
        self._opt.load_state_dict(ck["optimizer"])
        torch.set_rng_state(ck["rng"].cpu())
        return ck, ck.get("log", []), ck["best_state"]

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
