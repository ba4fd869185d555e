"""Deepfake detectors behind one interface and a registry (Xception, Capsule, DSP-FWA)."""
