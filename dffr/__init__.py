"""dffr: DeepFakes detection by facial regions.

The stages live in sibling packages: `dffr.regions` (landmarks and region masks),
`dffr.detectors`, `dffr.fusion`, `dffr.datasets` and `dffr.experiments`.
"""

__version__ = "0.1.0"
