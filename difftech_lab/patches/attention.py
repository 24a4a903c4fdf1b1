"""The attention backend as a patch: diffusers' attention processors swapped for a block, then restored.

``sdpa`` is torch's fused scaled-dot-product attention (diffusers' default on torch 2), ``classic`` the
explicit softmax(QKᵀ/√d)V that materialises the attention matrix, ``sliced`` the classic form computed
``slice_size`` heads at a time to bound peak memory (diffusers' attention slicing).
"""

from __future__ import annotations

from contextlib import contextmanager

from ..errors import InvalidArgumentError
from . import Patch, register_patch

BACKENDS = ("sdpa", "classic", "sliced")


@register_patch
class AttentionBackend(Patch):
    name = "attention"

    def __init__(self, backend: str = "sdpa", slice_size: int = 1):
        if backend not in BACKENDS:
            raise InvalidArgumentError(f"attention backend {backend!r} is not one of {', '.join(BACKENDS)}")
        if isinstance(slice_size, bool) or not isinstance(slice_size, int) or slice_size < 1:
            raise InvalidArgumentError(f"slice_size {slice_size!r} must be a positive number of heads")
        self.backend, self.slice_size = backend, slice_size

    def processor(self):
        from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0, SlicedAttnProcessor

        if self.backend == "sliced":
            return SlicedAttnProcessor(self.slice_size)
        return AttnProcessor2_0() if self.backend == "sdpa" else AttnProcessor()

    @contextmanager
    def __call__(self, model):
        networks = [model.unet, model.vae]
        saved = [net.attn_processors for net in networks]
        try:
            for net in networks:
                net.set_attn_processor(self.processor())
            yield model
        finally:
            for net, processors in zip(networks, saved):
                net.set_attn_processor(processors)
