"""Capsule-Forensics-v2 (Nguyen, Yamagishi & Echizen, ICASSP 2019).

A VGG19 front end (torchvision `features[:19]`, through the third max-pool: 256
channels at 1/8 resolution), 10 primary capsules (conv 256->64, BN, ReLU, conv 64->16,
BN, ReLU, statistics pooling of each channel's mean and std, Conv1d 2->8 k5 s2, BN,
Conv1d 8->1, BN: an 8-d vector each, squashed), and dynamic routing (2 iterations) to 2
output capsules of 4 dimensions. During training the routing weights get Gaussian noise
(0.01) and the routed votes dropout (0.05). As in the released code, the class
probabilities are the softmax over the two output capsules of each of their 4
dimensions, averaged; the loss is the cross-entropy of each dimension's softmax, summed.

Module names and shapes of the capsule part match the seed's released state dicts
(`fea_ext.capsules.*`, `routing_stats.route_weights`; class 0 = FAKE). The front end is
not in those files: it is ImageNet VGG19, which they were trained on top of (frozen).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dffr.detectors.base import DETECTORS
from dffr.detectors.torch_detector import TorchDetector

N_CAPSULES = 10


def squash(x: torch.Tensor, dim: int) -> torch.Tensor:
    sq = (x**2).sum(dim=dim, keepdim=True)
    return sq / (1 + sq) * x / torch.sqrt(sq + 1e-12)


class StatsPool(nn.Module):
    """(N, C, H, W) -> (N, 2, C): each channel's mean and standard deviation."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(2)
        return torch.stack([flat.mean(dim=2), flat.std(dim=2)], dim=1)


class Flatten8(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(-1, 8)


def primary_capsule() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(256, 64, 3, padding=1),
        nn.BatchNorm2d(64),
        nn.ReLU(),
        nn.Conv2d(64, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        StatsPool(),
        nn.Conv1d(2, 8, 5, stride=2, padding=2),
        nn.BatchNorm1d(8),
        nn.Conv1d(8, 1, 3, padding=1),
        nn.BatchNorm1d(1),
        Flatten8(),
    )


class FeatureExtractor(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.capsules = nn.ModuleList([primary_capsule() for _ in range(N_CAPSULES)])
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Conv1d):
                nn.init.normal_(m.weight, 0.0, 0.02)
            elif isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.stack([c(x) for c in self.capsules], dim=-1)  # (N, 8, 10)
        return squash(out, dim=-1)


class Routing(nn.Module):
    """Dynamic routing from 10 8-d capsules to 2 4-d output capsules."""

    def __init__(self, n_in=N_CAPSULES, n_out=2, d_in=8, d_out=4, iterations=2) -> None:
        super().__init__()
        self.iterations = iterations
        self.route_weights = nn.Parameter(torch.randn(n_out, n_in, d_out, d_in))

    def forward(self, x: torch.Tensor, noise: float = 0.0, dropout: float = 0.0) -> torch.Tensor:
        x = x.transpose(2, 1)  # (N, 10, 8)
        w = self.route_weights
        if noise:
            w = w + noise * torch.randn_like(w)
        priors = (w[:, None] @ x[None, :, :, :, None]).transpose(1, 0)  # (N, 2, 10, 4, 1)
        if dropout:
            priors = priors * torch.bernoulli(torch.full_like(priors, 1.0 - dropout))
        logits = torch.zeros_like(priors)
        for i in range(self.iterations):
            probs = F.softmax(logits, dim=2)
            outputs = squash((probs * priors).sum(dim=2, keepdim=True), dim=3)
            if i != self.iterations - 1:
                logits = logits + priors * outputs
        return outputs.squeeze(-1).squeeze(2).transpose(2, 1)  # (N, 4, 2)


FRONT_LAYERS = 19  # VGG19 features[:19]: conv1_1 ... the third max-pool


def vgg19_front() -> nn.Sequential:
    """torchvision's VGG19 `features[:19]`, built without its 500 MB classifier, and
    initialised as torchvision's VGG is (He normal, fan out): with PyTorch's default
    initialisation the signal shrinks through the eight convolutions and a randomly
    initialised front end barely learns."""
    from torchvision.models.vgg import cfgs, make_layers

    front = make_layers(cfgs["E"], batch_norm=False)[:FRONT_LAYERS]
    for m in front.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)
    return front


def front_state(vgg19_state: dict) -> dict:
    """The front end's part of a full torchvision VGG19 state dict."""
    out = {}
    for k, v in vgg19_state.items():
        parts = k.split(".")
        if parts[0] == "features" and int(parts[1]) < FRONT_LAYERS:
            out[".".join(parts[1:])] = v
    return out


class CapsuleNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.vgg = vgg19_front()
        self.fea_ext = FeatureExtractor()
        self.routing_stats = Routing()

    def forward(self, x: torch.Tensor, noise: float = 0.0, dropout: float = 0.0) -> torch.Tensor:
        """Per-dimension class probabilities (N, 4, 2)."""
        z = self.routing_stats(self.fea_ext(self.vgg(x)), noise, dropout)
        return F.softmax(z, dim=-1)


@DETECTORS.register("Capsule")
class Capsule(TorchDetector):
    name = "Capsule"
    default_lr = 5e-4
    arch = "vgg19"
    # its ten capsules branch off the VGG front end, so its last convolution belongs to
    # one capsule only: Grad-CAM explains the front end all capsules share
    explain_layer = "vgg"

    def build(self) -> nn.Module:
        net = CapsuleNet()
        state = self.imagenet_state()
        self.frozen_front = state is not None
        if state is not None:
            net.vgg.load_state_dict(front_state(state))
            net.vgg.requires_grad_(False)
        return net

    def on_train_epoch(self, epoch: int) -> None:
        if self.frozen_front:
            self.model.vgg.eval()

    def forward_train(self, model: nn.Module, x: torch.Tensor):
        return model(x, noise=0.01, dropout=0.05)

    def probabilities(self, outputs) -> torch.Tensor:
        return outputs.float().mean(dim=1)

    def loss(self, outputs, targets) -> torch.Tensor:
        # the released code applies cross-entropy to the softmax outputs of each dimension
        return sum(F.cross_entropy(outputs[:, i].float(), targets) for i in range(outputs.shape[1]))

    def optional_key(self, key: str) -> bool:
        return key.startswith("vgg.")  # released files hold the capsule part only

    def after_load(self, state: dict) -> None:
        if not any(k.startswith("vgg.") for k in state):
            # a released file: its capsules were trained on the ImageNet front end
            state = self.imagenet_state(required=True)
            self.model.vgg.load_state_dict(front_state(state))
