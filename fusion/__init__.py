"""Score-level fusion across regions and detectors, with a registry of rules.

from dffr.fusion import FUSION, fuse
fused = fuse(scores, over="regions", rule="logistic", norm="zscore")
"""

from dffr.fusion.fuse import Normaliser, fuse
from dffr.fusion.rules import FUSION, FusionError, load_rule

__all__ = ["FUSION", "FusionError", "Normaliser", "fuse", "load_rule"]
