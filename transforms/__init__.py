"""Image transforms, in one place for the three stages that degrade images: robustness
sweeps (perturbations at stated levels), training augmentation (random draws of them)
and test-time augmentation (views scored beside each image).

    from dffr.transforms import perturb
    jpeg70 = perturb(rgb, "jpeg", 30)          # quality 70; level 0 is the image itself
"""

from dffr.transforms.augment import AUGMENTATIONS, augment, check_augment
from dffr.transforms.perturbations import (
    PERTURBATIONS,
    Perturbation,
    PerturbationError,
    hflip,
    perturb,
    perturb_landmarks,
)
from dffr.transforms.tta import parse_tta, tta_label, tta_views

__all__ = [
    "AUGMENTATIONS",
    "PERTURBATIONS",
    "Perturbation",
    "PerturbationError",
    "augment",
    "check_augment",
    "hflip",
    "parse_tta",
    "perturb",
    "perturb_landmarks",
    "tta_label",
    "tta_views",
]
