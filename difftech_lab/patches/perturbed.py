"""Perturbed-attention guidance (PAG, Ahn et al. 2024) as a patch plus a guidance term.

The patch puts a switch in front of the self-attention of chosen UNet blocks; while the switch is on, those
layers' attention map is the identity (each token attends only to itself, so the layer outputs its values). The
guidance term runs one more forward with the switch on and moves x̂0 away from that degraded prediction:

    x̂0 ← x̂0_guided + s · (x̂0_cond − x̂0_perturbed)

(x̂0 = x − σε is affine in ε, so this is the paper's ε-space rule). With AND prompts both conditional predictions
are the composable sum at scale 1. Scale 0 adds no term and runs exactly the plain computation. Blocks are named
``mid``, ``down.N`` or ``up.N`` (diffusers' block indices), the same on SD 1.x, SD 2.x, SDXL and the bundled
model; the paper's and diffusers' default is the middle block.
"""

from __future__ import annotations

import re
from contextlib import contextmanager

import torch

from ..errors import InvalidArgumentError
from . import Patch, processors_in_front, register_patch


def self_attention_layers(unet, blocks) -> dict[str, torch.nn.Module]:
    """The self-attention modules (``attn1``) of the named blocks, by module path; raises naming the valid blocks."""
    prefixes = {"mid": "mid_block."}
    prefixes |= {f"down.{i}": f"down_blocks.{i}." for i in range(len(unet.down_blocks))}
    prefixes |= {f"up.{i}": f"up_blocks.{i}." for i in range(len(unet.up_blocks))}
    found = {}
    for block in blocks:
        if block not in prefixes:
            raise InvalidArgumentError(f"UNet block {block!r} does not exist; name one of {', '.join(prefixes)}")
        layers = {n: m for n, m in unet.named_modules() if n.startswith(prefixes[block]) and n.endswith("attn1")}
        if not layers:
            with_attention = [b for b, p in prefixes.items()
                              if any(n.startswith(p) and n.endswith("attn1") for n, _ in unet.named_modules())]
            raise InvalidArgumentError(f"UNet block {block!r} has no self-attention; these do: {', '.join(with_attention)}")
        found.update(layers)
    return found


class _IdentityAttention:
    """The attention output when every token attends to itself: out-projection of the values."""

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        image = hidden_states.ndim == 4
        if image:
            b, c, h, w = hidden_states.shape
            hidden_states = hidden_states.view(b, c, h * w).transpose(1, 2)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        hidden_states = attn.to_out[1](attn.to_out[0](attn.to_v(hidden_states)))
        if image:
            hidden_states = hidden_states.transpose(-1, -2).reshape(b, c, h, w)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


class _Switch:
    """Delegates to the layer's own processor, or to the identity attention while ``state["on"]``."""

    def __init__(self, original, state: dict):
        self.original, self.state, self.identity = original, state, _IdentityAttention()

    def __call__(self, attn, hidden_states, *args, **kwargs):
        if self.state["on"]:
            return self.identity(attn, hidden_states, *args, **kwargs)
        return self.original(attn, hidden_states, *args, **kwargs)


class AttentionGuidancePatch(Patch):
    """Base of the guidance patches that put a processor in front of self-attention layers while entered and add a
    guidance term reading a per-model state shared with those processors (PAG, SAG)."""

    def __init__(self):
        self._states: dict[int, dict] = {}

    def layers(self, model) -> dict:
        raise NotImplementedError

    def front(self, original, state: dict):
        """The processor put in front of ``original``."""
        raise NotImplementedError

    def new_state(self) -> dict:
        return {}

    @contextmanager
    def __call__(self, model):
        state = self.new_state()
        try:
            with processors_in_front(self.layers(model), lambda original: self.front(original, state)):
                self._states[id(model)] = state
                yield model
        finally:
            self._states.pop(id(model), None)


@register_patch
class PerturbedAttention(AttentionGuidancePatch):
    """``session.patched(pag=3.0)`` or ``pag={"scale": 3.0, "blocks": ["mid"]}``."""

    name = "pag"

    def __init__(self, scale: float = 3.0, blocks=("mid",)):
        super().__init__()
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 <= scale <= 100:
            raise InvalidArgumentError(f"PAG scale {scale!r} must be a number in [0, 100] (0 turns it off)")
        if isinstance(blocks, str):
            blocks = [blocks]
        if not blocks:
            raise InvalidArgumentError("PAG needs at least one block to perturb, e.g. blocks=['mid']")
        for block in blocks:
            if not isinstance(block, str) or not re.fullmatch(r"mid|(down|up)\.\d+", block):
                raise InvalidArgumentError(f"UNet block {block!r} does not exist; write 'mid', 'down.N' or 'up.N'")
        self.scale, self.blocks = float(scale), list(blocks)

    def options(self) -> dict:
        return {"scale": self.scale, "blocks": self.blocks}

    def layers(self, model) -> dict:
        return self_attention_layers(model.unet, self.blocks)

    def front(self, original, state):
        return _Switch(original, state)

    def new_state(self) -> dict:
        return {"on": False}

    def guidance_terms(self, model) -> list:
        if self.scale == 0 or id(model) not in self._states:
            return []
        state, scale = self._states[id(model)], self.scale

        def perturbed_attention_guidance(x0, context):
            state["on"] = True
            try:
                perturbed = context.forward(context.x, context.sigma, context.embeddings[1:])
            finally:
                state["on"] = False
            u = context.uncond
            cond = u + sum(w * (c - u) for w, c in zip(context.weights, context.conds))
            worse = u + sum(w * (p - u) for w, p in zip(context.weights, perturbed))
            return x0 + scale * (cond - worse)

        return [perturbed_attention_guidance]
