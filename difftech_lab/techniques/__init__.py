"""One module per technique, each registered by name so ``session.run(recipe)`` finds it.

A technique is a :class:`~difftech_lab.techniques.base.Technique` subclass decorated with :func:`register`:
its parameters (a dataclass that serialises itself), how it builds its plan, and its public call. The
built-in ones are imported on first use; a technique defined anywhere else registers itself when its module
is imported.
"""

from __future__ import annotations

from importlib import import_module

from ..errors import UnknownNameError

TECHNIQUES: dict = {}

# technique name -> module that defines it, so a recipe finds its technique without importing them all
BUILTIN = {"txt2img": "txt2img", "img2img": "img2img", "inpaint": "img2img", "branch": "branch",
           "differential": "differential", "best_of": "best_of", "compose": "compose", "regional": "regional",
           "gligen": "gligen", "prompt_search": "prompt_search"}


def register(cls):
    """Class decorator: register a Technique subclass under its ``name`` (a later one replaces it)."""
    TECHNIQUES[cls.name] = cls()
    return cls


def get_technique(name: str):
    """The registered technique called ``name``."""
    if name not in TECHNIQUES and name in BUILTIN:
        import_module(f"{__name__}.{BUILTIN[name]}")
    if name not in TECHNIQUES:
        raise UnknownNameError("technique", str(name), {*TECHNIQUES, *BUILTIN})
    return TECHNIQUES[name]
