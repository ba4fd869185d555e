"""DSP-FWA (Li & Lyu, "Exposing DeepFake Videos By Detecting Face Warping Artifacts",
CVPRW 2019, the dual spatial pyramid variant): a ResNet-50 trunk, spatial pyramid
max-pooling over levels (1, 2, 6) of its last feature map, one linear 2-class layer.
`trunk` swaps in another torchvision ResNet (FWA itself was tried on several): from
random initialisation on a few hundred faces, ResNet-18 learns where ResNet-50 does not.

Module names and shapes match the seed system's released `DSP-FWA_<DB>_<region>.pt`
(`resnet.resnet.*`, the unused `resnet.fc`, `classifier`), whose class 0 is FAKE. The
pyramid pools with the original's kernel ceil(s/n) and stride floor(s/n), so its
output size depends on the feature map: the classifier's width is computed from the
configured input size, not hard-coded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from dffr.detectors.base import DETECTORS, DetectorConfig
from dffr.detectors.imagenet import WeightsFile, torch_weights
from dffr.detectors.torch_detector import TorchDetector, TorchOptions

LEVELS = (1, 2, 6)


def spp(x: torch.Tensor, levels=LEVELS) -> torch.Tensor:
    """Spatial pyramid max-pooling, flattened and concatenated over the levels."""
    h, w = x.shape[2:]
    outs = []
    for n in levels:
        kernel = (math.ceil(h / n), math.ceil(w / n))
        stride = (max(h // n, 1), max(w // n, 1))
        outs.append(F.max_pool2d(x, kernel, stride).flatten(1))
    return torch.cat(outs, dim=1)


class _ResNet(nn.Module):
    """The seed's wrapper: torchvision ResNet-50 at `.resnet`, plus its own `.fc`."""

    def __init__(self, num_class: int = 2, trunk: str = "resnet50") -> None:
        super().__init__()
        self.resnet = torchvision.models.get_model(trunk, weights=None)
        self.fc = nn.Linear(self.resnet.fc.in_features, num_class)
        # SPPNet uses neither fc: kept for the released layout, never trained
        self.resnet.fc.requires_grad_(False)
        self.fc.requires_grad_(False)


class SPPNet(nn.Module):
    def __init__(self, input_size: int = 200, num_class: int = 2, trunk: str = "resnet50") -> None:
        super().__init__()
        self.resnet = _ResNet(num_class, trunk)
        self.resnet.eval()  # a probe for the feature size: no batch statistics, no update
        with torch.no_grad():
            features = self.trunk(torch.zeros(1, 3, input_size, input_size))
        self.resnet.train()
        self.classifier = nn.Linear(spp(features).shape[1], num_class)

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        r = self.resnet.resnet
        x = r.maxpool(r.relu(r.bn1(r.conv1(x))))
        return r.layer4(r.layer3(r.layer2(r.layer1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(spp(self.trunk(x)))


@dataclass
class DSPFWAOptions(TorchOptions):
    trunk: Literal["resnet50", "resnet18", "resnet34", "resnet101", "resnet152"] = field(
        default="resnet50", metadata={"help": "the ResNet under the pyramid (the paper's: 50)"}
    )


@DETECTORS.register("DSP-FWA")
class DSPFWA(TorchDetector):
    Options = DSPFWAOptions
    name = "DSP-FWA"
    default_lr = 1e-4

    @classmethod
    def imagenet_weights(cls, config: DetectorConfig) -> WeightsFile:
        return torch_weights(cls.parse_options(config.options).trunk)

    def build(self) -> nn.Module:
        net = SPPNet(self.config.input_size, trunk=self.options.trunk)
        state = self.imagenet_state()
        if state is not None:
            net.resnet.resnet.load_state_dict(state)
        return net

    def probabilities(self, outputs) -> torch.Tensor:
        return F.softmax(outputs.float(), dim=1)

    def loss(self, outputs, targets) -> torch.Tensor:
        return F.cross_entropy(outputs.float(), targets)
