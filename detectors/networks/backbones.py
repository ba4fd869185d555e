"""Well-known torchvision image classifiers as deepfake detectors, to compare backbones
per region with the same training, scoring, fusion and tables.

Each is torchvision's network with its ImageNet classifier replaced by a linear 2-class
layer (FAKE at `fake_index`, class 0 by default as in DSP-FWA and Capsule), trained
with cross-entropy on ImageNet-normalised RGB. ImageNet weights come from torch's hub
cache under torchvision's own file name (see `dffr.detectors.imagenet`) or `--imagenet`.

Another backbone is one line in `TORCHVISION`: the detector name, torchvision's model
name and where its classifier layer sits.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from dffr.detectors.base import DETECTORS, Detector, DetectorConfig, WeightsError
from dffr.detectors.imagenet import WeightsFile, torch_weights
from dffr.detectors.torch_detector import TorchDetector


def densenet_keys(key: str) -> str:
    """torchvision's DenseNet ImageNet files predate its module names: `norm.1` is
    `norm1` now (likewise relu, conv)."""
    return re.sub(r"(denselayer\d+\.(?:norm|relu|conv))\.([12])\.", r"\1\2.", key)


@dataclass(frozen=True)
class Backbone:
    arch: str  # torchvision's model name (`torchvision.models.get_model`)
    head: str  # dotted path of its final nn.Linear, replaced by a 2-class one
    keys: Callable[[str], str] | None = None  # renames an old ImageNet file's keys


TORCHVISION = {
    "ResNet-18": Backbone("resnet18", "fc"),
    "ResNet-50": Backbone("resnet50", "fc"),
    "VGG-16": Backbone("vgg16", "classifier.6"),
    "DenseNet-121": Backbone("densenet121", "classifier", densenet_keys),
    "EfficientNet-B0": Backbone("efficientnet_b0", "classifier.1"),
}


class TorchBackbone(TorchDetector):
    """A torchvision classifier with a 2-class head; P(fake) by softmax."""

    backbone: ClassVar[Backbone]
    default_lr = 1e-4
    # they downsample 32-fold: below 64 px the last feature map is 1x1, and BatchNorm
    # cannot train on a batch of one such image (a split's last batch can be one image)
    min_input_size = 64

    @classmethod
    def imagenet_weights(cls, config: DetectorConfig) -> WeightsFile:
        return torch_weights(cls.backbone.arch)

    def build(self) -> nn.Module:
        spec = self.backbone
        net = torchvision.models.get_model(spec.arch, weights=None)
        state = self.imagenet_state()
        if state is not None:
            if spec.keys is not None:
                state = {spec.keys(k): v for k, v in state.items()}
            try:
                net.load_state_dict(state)
            except RuntimeError as e:
                raise WeightsError(
                    f"ImageNet weights do not fit torchvision's {spec.arch}: {e}"
                ) from None
        parent, _, attr = spec.head.rpartition(".")
        old = net.get_submodule(spec.head)
        setattr(net.get_submodule(parent), attr, nn.Linear(old.in_features, 2))
        return net

    def probabilities(self, outputs) -> torch.Tensor:
        return F.softmax(outputs.float(), dim=1)

    def loss(self, outputs, targets) -> torch.Tensor:
        return F.cross_entropy(outputs.float(), targets)


def register(table: dict, base: type[Detector]) -> None:
    """One `base` subclass per table entry (its `backbone`), registered under its name."""
    for name, spec in table.items():
        attrs = {"name": name, "backbone": spec, "__module__": base.__module__}
        DETECTORS.register(name)(type(re.sub(r"\W", "", name), (base,), attrs))


register(TORCHVISION, TorchBackbone)
