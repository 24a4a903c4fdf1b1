"""Typed errors: every one names the bad value and says how to fix it; the warnings, and where they point."""

from __future__ import annotations

import os
import sys
import warnings

_PACKAGE = os.path.dirname(os.path.abspath(__file__))


class DifftechError(Exception):
    """Base class for every error difftech_lab raises on purpose."""


class InvalidArgumentError(DifftechError, ValueError):
    """An argument has a value the technique cannot use (size, strength, range …)."""


class UnknownNameError(InvalidArgumentError, KeyError):
    """A name (sampler, schedule, parameterisation …) is not one we know."""

    def __init__(self, kind: str, name: str, known):
        known = sorted(known)
        super().__init__(f"unknown {kind} {name!r}; choose one of: {', '.join(known)}")
        self.kind, self.name, self.known = kind, name, known

    def __str__(self) -> str:  # KeyError would otherwise wrap the message in quotes
        return self.args[0]


class ShapeError(InvalidArgumentError):
    """An image, mask or latent has the wrong shape for the call."""


class NumericalError(DifftechError, FloatingPointError):
    """NaN or inf appeared during sampling (fp16 overflow, a bad schedule …)."""


class ResourceError(DifftechError, MemoryError):
    """A run would need more memory than the device has free; refused before anything is allocated."""


class ModelLoadError(DifftechError, OSError):
    """A model folder or file is missing, incomplete or corrupt."""


class BundledModelMissingError(ModelLoadError):
    """The bundled tiny model is not installed with the package."""


class UnsafeCheckpointError(ModelLoadError):
    """A pickled checkpoint was refused because it can run arbitrary code when loaded."""


class PromptSyntaxError(DifftechError, ValueError):
    """Malformed prompt syntax, raised instead of a warning when ``strict=True``."""


class PromptSyntaxWarning(UserWarning):
    """Malformed prompt syntax that was read the way A1111 reads it."""


class PromptLengthWarning(UserWarning):
    """A prompt longer than the captions the model's text encoder was trained on: the words past them are read
    poorly (the fix is BREAK, which encodes the prompt in parts)."""


class CancelledError(DifftechError):
    """A run was stopped by ``Session.cancel()``. (KeyboardInterrupt is not turned into this: it passes through.)"""


class ModelMismatchWarning(UserWarning):
    """A recipe is run on other weights than it was made with: it runs, but will not reproduce its result."""


# modules a package call may pass through on its way back to the user's line (torch's no_grad and the like)
_WRAPPERS = {"torch", "contextlib", "functools"}


def warn_user(message: str, category: type[Warning]) -> None:
    """Warn, attributed to the first caller outside this package and the wrappers it calls through, so the
    default filter shows it once per line of the user's, however deep in the package it was raised."""
    frame, level = sys._getframe(1), 2  # stacklevel 2 is warn_user's caller
    while frame is not None and (os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE)
                                 or frame.f_globals.get("__name__", "").split(".")[0] in _WRAPPERS):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)
