"""Attention-mode regions (A1111 Regional Prompter's "Attention" mode): cross-attention per region, composited.

The text states handed to the network are the base prompt's and every region's, concatenated along the tokens.
In each cross-attention layer the same queries attend to each prompt's tokens separately, and the outputs are
blended per query pixel by the prompts' shares of that pixel, taken to the layer's resolution by area
averaging. The shares sum to 1 everywhere, so the output projection's bias passes through unchanged, and a
prompt whose share is zero at a layer is not computed there. Self-attention is untouched, which is what keeps
the image one coherent scene. One network pass per step, whatever the number of regions.

This is a patch of a technique's plan (the regional technique records the regions, not this object).
"""

from __future__ import annotations

import math

import torch

from ..errors import InvalidArgumentError, ShapeError
from . import processors_in_front


def cross_attention_layers(unet) -> dict[str, torch.nn.Module]:
    """Every cross-attention module of ``unet`` (``attn2`` of each transformer block, SD 1.x/2.x/SDXL alike)."""
    return {name: m for name, m in unet.named_modules()
            if getattr(m, "is_cross_attention", False) and hasattr(m, "set_processor")}


def layer_size(latent: tuple[int, int], tokens: int) -> tuple[int, int]:
    """The (h, w) of a layer holding ``tokens`` query pixels: the latent size halved (rounding up, as the UNet's
    stride-2 convolutions do) until it has that many."""
    h, w = latent
    while h * w > tokens:
        h, w = math.ceil(h / 2), math.ceil(w / 2)
    if h * w != tokens:
        raise ShapeError(f"a cross-attention layer has {tokens} query pixels, which is no halving of the "
                         f"{latent[0]}×{latent[1]} latent; regions need the UNet's usual resolutions")
    return h, w


def masks_at_layer(masks: torch.Tensor, tokens: int) -> torch.Tensor:
    """``[K, tokens]``: latent-size masks ``[K, h, w]`` area-averaged to the layer with ``tokens`` query pixels."""
    h, w = layer_size(tuple(masks.shape[-2:]), tokens)
    return torch.nn.functional.adaptive_avg_pool2d(masks[None].float(), (h, w))[0].reshape(masks.shape[0], h * w)


class RegionalAttention:
    """``RegionalAttention(splits, shares)(model)``: a context manager putting the regional processor in front of
    every cross-attention layer of ``model.unet``.

    Args:
        splits: token lengths of the concatenated prompts, one list per way the rows are laid out (the positive
            rows and the negative rows may differ), found by their total length.
        shares: ``[K, h, w]`` at latent size, each prompt's share of each pixel (summing to 1 over K).
    """

    def __init__(self, splits: list[list[int]], shares: torch.Tensor):
        by_total: dict[int, list[int]] = {}
        for lengths in splits:
            if len(lengths) != shares.shape[0]:
                raise InvalidArgumentError(f"{len(lengths)} token spans for {shares.shape[0]} region shares")
            previous = by_total.setdefault(sum(lengths), list(lengths))
            if previous != list(lengths):
                raise InvalidArgumentError(
                    f"the prompts' token spans {previous} and {list(lengths)} have the same total length, so a "
                    "layer cannot tell them apart; shorten the longer region prompt or its negative to 75 tokens")
        self.by_total, self.shares = by_total, shares
        self._at: dict[tuple, tuple[torch.Tensor, list[int]]] = {}

    def shares_at(self, tokens: int, like: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
        """``[K, tokens]``: the shares at the layer with ``tokens`` query pixels, and the prompts with a share there
        (cached per resolution, so no layer call reads a tensor back to decide what to compute)."""
        key = (tokens, like.device, like.dtype)
        if key not in self._at:
            shares = masks_at_layer(self.shares, tokens)
            active = [k for k in range(shares.shape[0]) if bool(shares[k].any())]
            self._at[key] = (shares.to(like.device, like.dtype), active)
        return self._at[key]

    def __call__(self, model):
        return processors_in_front(cross_attention_layers(model.unet), lambda original: _RegionalProcessor(original, self))


class _RegionalProcessor:
    """In front of one cross-attention layer's own processor (whatever backend it uses)."""

    def __init__(self, original, regions: RegionalAttention):
        self.original, self.regions = original, regions

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args,
                 **kwargs):
        lengths = None if encoder_hidden_states is None else \
            self.regions.by_total.get(encoder_hidden_states.shape[1])
        if lengths is None:  # not a regional call (e.g. a patch's extra forward with plain text states)
            return self.original(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)
        tokens = hidden_states.shape[1] if hidden_states.ndim == 3 else hidden_states.shape[-2] * hidden_states.shape[-1]
        shares, active = self.regions.shares_at(tokens, hidden_states)
        prompts = encoder_hidden_states.split(lengths, dim=1)
        out = None
        for k in active:  # a prompt with no share at this resolution is not computed
            part = self.original(attn, hidden_states, prompts[k], attention_mask, temb, *args, **kwargs)
            weight = shares[k][None, :, None] if part.ndim == 3 else shares[k].view(1, 1, *part.shape[-2:])
            part = part * weight
            out = part if out is None else out + part
        return out
