"""Network patches: reversible changes to a model's networks for the length of a ``with`` block.

A patch is a :class:`Patch`: ``patch(model)`` returns a context manager that changes the model's networks on
entry and restores them on exit, error or not. Patches are registered by name so a Recipe can record the
ones active around a run and ``session.run`` can enter them again. ToMe, attention capture (SAG, PAG),
regional attention, GLIGEN gating and FreeU are patches; so is the attention backend.
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager
from typing import ClassVar

from ..errors import InvalidArgumentError, UnknownNameError

PATCHES: dict[str, type] = {}


def register_patch(cls):
    """Class decorator: register a Patch subclass under its ``name``."""
    PATCHES[cls.name] = cls
    return cls


class Patch:
    """Base of every patch. Subclasses set ``name``, keep their options as attributes, implement ``__call__``."""

    name: ClassVar[str] = ""

    def __call__(self, model):
        """A context manager that applies the patch to ``model`` (a ModelBundle) and undoes it on exit."""
        raise NotImplementedError

    def guidance_terms(self, model) -> list:
        """Guidance terms (``term(x0, context) -> x0``, see ``Guider``) this patch adds to runs on ``model`` while
        it is entered; most patches add none."""
        return []

    def options(self) -> dict:
        """The keyword arguments that rebuild this patch (what a Recipe records)."""
        return dict(vars(self))

    def to_dict(self) -> dict:
        return {"name": self.name, "options": self.options()}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.options().items())})"


@contextmanager
def processors_in_front(layers: dict, make):
    """Put ``make(original_processor)`` in front of each attention layer of ``layers`` (name -> module) while
    entered; the original processors come back on exit, error or not."""
    saved = {name: layer.processor for name, layer in layers.items()}
    try:
        for name, layer in layers.items():
            layer.set_processor(make(saved[name]))
        yield
    finally:
        for name, layer in layers.items():
            layer.set_processor(saved[name])


def matching_rows(hidden, states):
    """Which rows of a forward's text states ``hidden`` ``[N, T, D]`` are ``states`` ``[1, T, D]`` (bool ``[N]``):
    how a patch tells the conditional rows of a batched CFG forward from the unconditional ones."""
    import torch

    if hidden.shape[1:] != states.shape[1:]:
        return torch.zeros(hidden.shape[0], dtype=torch.bool, device=hidden.device)
    return (hidden == states.to(hidden.device, hidden.dtype)).flatten(1).all(dim=1)


def make_patch(spec) -> Patch:
    """A Patch from a Patch, a recorded ``{"name": ..., "options": {...}}`` or a ``(name, value)`` pair."""
    _load_builtin()
    if isinstance(spec, Patch):
        return spec
    if isinstance(spec, dict) and set(spec) <= {"name", "options"} and "name" in spec:
        return _patch_class(spec["name"])(**spec.get("options", {}))
    if isinstance(spec, tuple) and len(spec) == 2:
        name, value = spec
        cls = _patch_class(name)
        return cls(**value) if isinstance(value, dict) else cls(value)
    raise InvalidArgumentError(f"{spec!r} is not a patch; give a Patch, name=value (e.g. attention='sdpa') or a "
                               "recorded {'name': ..., 'options': {...}}")


@contextmanager
def patched(session, *patches, **named):
    """Apply patches to the session's base model for the ``with`` block; runs inside record them."""
    chosen = [make_patch(p) for p in patches] + [make_patch(item) for item in named.items()]
    with ExitStack() as stack:
        for patch in chosen:
            stack.enter_context(patch(session.model))
        session.active_patches.extend(chosen)
        try:
            yield session
        finally:
            del session.active_patches[len(session.active_patches) - len(chosen):]


def guidance_terms(session, model) -> list:
    """The guidance terms of the session's active patches, for a run on ``model`` (patches apply to the base model)."""
    if model is not session.model:
        return []
    return [term for patch in session.active_patches for term in patch.guidance_terms(model)]


def _patch_class(name: str) -> type:
    if name not in PATCHES:
        raise UnknownNameError("patch", str(name), PATCHES)
    return PATCHES[name]


def _load_builtin() -> None:
    from . import attention, freeu, perturbed, self_attention  # noqa: F401  (each registers itself)
