"""Landmark backends: one module each, registered with `@BACKENDS.register(name)`."""
