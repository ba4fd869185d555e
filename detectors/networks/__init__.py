"""The detectors, one module each, registered with `@DETECTORS.register(name)`."""
