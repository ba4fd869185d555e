"""Face detectors: one module each, registered with `@FACE_DETECTORS.register(name)`."""
