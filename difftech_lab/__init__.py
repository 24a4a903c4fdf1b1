"""difftech_lab: a workbench for advanced diffusion image-generation techniques.

The public API: ``Session`` (runs every technique), ``Result`` and ``Recipe`` (what a run produced and how
to reproduce it), the typed errors, and ``%load_ext difftech_lab`` for rich display in Jupyter.
"""

from importlib import import_module

from .errors import (BundledModelMissingError, CancelledError, DifftechError, InvalidArgumentError, ModelLoadError,
                     ModelMismatchWarning, NumericalError, PromptLengthWarning, PromptSyntaxError, PromptSyntaxWarning,
                     ResourceError, ShapeError, UnknownNameError, UnsafeCheckpointError)

__version__ = "0.1.0"

# Heavy imports (torch, diffusers) wait until first use, so `import difftech_lab` stays instant.
_LAZY = {
    "Session": ".session", "Result": ".result", "read_recipe": ".result", "Recipe": ".recipe",
    "load_ipython_extension": ".ipython", "unload_ipython_extension": ".ipython",
}

__all__ = ["Session", "Result", "Recipe", "read_recipe", "load_ipython_extension", "DifftechError",
           "InvalidArgumentError", "UnknownNameError", "ShapeError", "NumericalError", "ModelLoadError",
           "BundledModelMissingError", "UnsafeCheckpointError", "ResourceError", "ModelMismatchWarning", "PromptLengthWarning",
           "PromptSyntaxError", "PromptSyntaxWarning",
           "CancelledError", "__version__"]


def __getattr__(name):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'difftech_lab' has no attribute {name!r}")
