"""Score-level fusion across regions and detectors, with a registry of rules.

from dffr.fusion import FUSION, fuse
fused = fuse(scores, over="regions", rule="logistic:C=0.5", norm="zscore")
"""

from dffr.fusion.fuse import fuse, is_fused
from dffr.fusion.rules import FUSION, FusionError, Rule, load_rule, rule_spec

__all__ = ["FUSION", "FusionError", "Rule", "fuse", "is_fused", "load_rule", "rule_spec"]
