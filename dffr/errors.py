"""Errors a user can act on.

Every failure that bad input can cause is one of these, with a message that names the
file and what is wrong, so batch jobs can record it and carry on instead of crashing.
"""


class DffrError(Exception):
    """Base class: a problem with the user's input or set-up, never a bug."""


class ImageReadError(DffrError):
    """A file could not be read as an image (missing, empty, truncated, not an image)."""


class NoFaceError(DffrError):
    """No face was found in an image."""


class FaceTooSmallError(DffrError):
    """The face is too small for reliable landmarks."""


class MissingWeightsError(DffrError):
    """Model weights needed offline are not on this machine."""


class DeviceError(DffrError):
    """The requested compute device is not available."""


def disk_error(e: OSError) -> str | None:
    """What a failed write says of its disk (None: not a disk full or read-only error).
    A run stops on these (every file written before is complete), where an input it
    cannot read only fails that input."""
    import errno

    reason = {
        errno.ENOSPC: "no space left on the device",
        errno.EDQUOT: "disk quota exceeded",
        errno.EROFS: "the file system is read-only",
    }.get(e.errno)
    return reason and f"cannot write {e.filename or 'a file'}: {reason}"
