"""Training-free box grounding: cross-attention to each phrase restricted to its box and boosted inside it.

For a model without grounding weights, each box's phrase is located among the prompt's tokens; in every
cross-attention layer the conditional rows' attention logits for those tokens get ``−∞`` at query pixels outside
the box and ``+log(boost)`` inside it (the logits, not the probabilities, so every row still normalises; the
start, end and padding tokens stay visible everywhere, so no row is all ``−∞``). The unconditional rows are left
as they are, so classifier-free guidance pushes each phrase into its box. Boxes are taken to each layer's
resolution by area averaging; a pixel counts as inside a box when at least half of it is.

This is a patch of a technique's plan (the grounding technique records the boxes).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from . import matching_rows, processors_in_front
from .regional import cross_attention_layers, masks_at_layer


class BoxAttention:
    """``BoxAttention(states, spans, boxes, boost, state)(model)``: the processor in front of every cross-attention
    layer while entered.

    Args:
        states: the conditional text states ``[1, T, D]`` (rows equal to them get the bias).
        spans: per box, the token indices of its phrase in those states.
        boxes: ``[K, h, w]`` box masks at latent size.
        boost: the factor on a phrase's attention inside its box (before normalisation).
        state: ``{"on": bool}``, switched by the plan between grounded and free steps.
    """

    def __init__(self, states: torch.Tensor, spans: list[list[int]], boxes: torch.Tensor, boost: float, state: dict):
        self.states, self.spans, self.boxes, self.boost, self.state = states, spans, boxes, float(boost), state
        self._bias: dict[tuple, torch.Tensor] = {}
        self._rows: tuple | None = None  # (the text states of the last forward, its grounded rows)

    def bias_at(self, tokens: int, like: torch.Tensor) -> torch.Tensor:
        """``[tokens, T]``: the additive logit bias at the layer with ``tokens`` query pixels (cached)."""
        key = (tokens, like.device, like.dtype)
        if key not in self._bias:
            inside = masks_at_layer(self.boxes, tokens) >= 0.5
            bias = torch.zeros(tokens, self.states.shape[1])
            for k, span in enumerate(self.spans):
                cols = torch.tensor(span)
                bias[:, cols] = torch.where(inside[k][:, None], math.log(self.boost), float("-inf"))
            self._bias[key] = bias.to(like.device, like.dtype)
        return self._bias[key]

    def grounded_rows(self, hidden: torch.Tensor) -> torch.Tensor | None:
        """The conditional rows of a forward's text states, or None when there are none; every cross-attention
        layer of one forward gets the same tensor, so the answer is worked out once per forward."""
        if self._rows is None or self._rows[0] is not hidden:
            rows = matching_rows(hidden, self.states)
            self._rows = (hidden, rows if bool(rows.any()) else None)
        return self._rows[1]

    def __call__(self, model):
        return processors_in_front(cross_attention_layers(model.unet), lambda original: _BoxProcessor(original, self))


class _BoxProcessor:
    def __init__(self, original, boxes: BoxAttention):
        self.original, self.boxes = original, boxes

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args,
                 **kwargs):
        grounded = None
        if self.boxes.state["on"] and encoder_hidden_states is not None and hidden_states.ndim == 3:
            grounded = self.boxes.grounded_rows(encoder_hidden_states)
        if grounded is None:
            return self.original(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)
        residual = hidden_states
        b, n, _ = hidden_states.shape
        context = attn.norm_encoder_hidden_states(encoder_hidden_states) if attn.norm_cross else encoder_hidden_states
        heads = attn.heads
        q = attn.to_q(hidden_states).view(b, n, heads, -1).transpose(1, 2)
        k = attn.to_k(context).view(b, context.shape[1], heads, -1).transpose(1, 2)
        v = attn.to_v(context).view(b, context.shape[1], heads, -1).transpose(1, 2)
        bias = torch.zeros(b, 1, n, context.shape[1], device=q.device, dtype=q.dtype)
        bias[grounded] = self.boxes.bias_at(n, q)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=attn.scale)
        out = attn.to_out[1](attn.to_out[0](out.transpose(1, 2).reshape(b, n, -1)))
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor
