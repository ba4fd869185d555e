"""Score-level fusion across regions and detectors, with a registry of rules."""
