"""Self-attention guidance (SAG, Hong et al. 2023) as a patch plus a guidance term.

The patch captures the self-attention map of the UNet's middle block during each step's main forward. The term
reads the unconditional rows of that map, marks the latent regions that receive more than average attention
(summed over queries, averaged over heads: the pixels the model is attending to), blurs the unconditional x̂0
there (Gaussian, 9×9, σ = 1), noises the result back to the step's σ with the unconditional prediction's own
noise, and runs one more unconditional forward on it. In ε-space the rule is ε ← ε + s·(ε_uncond − ε_degraded)
(diffusers' StableDiffusionSAGPipeline); rewritten for x̂0 at the same x it is

    x̂0 ← x̂0 + s · (degraded − x̂0_degraded)

Scale 0 adds no term and runs exactly the plain computation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import InvalidArgumentError
from . import register_patch
from .perturbed import AttentionGuidancePatch, self_attention_layers

BLUR_KERNEL, BLUR_SIGMA = 9, 1.0


def gaussian_blur(x: torch.Tensor, kernel: int = BLUR_KERNEL, sigma: float = BLUR_SIGMA) -> torch.Tensor:
    """Separable Gaussian blur of ``[B, C, H, W]`` with reflect padding (diffusers' SAG blur); on latents smaller
    than the kernel the kernel shrinks to fit (reflect padding must stay inside the image)."""
    kernel = min(kernel, 2 * min(x.shape[-2:]) - 1)
    half = (kernel - 1) / 2
    t = torch.linspace(-half, half, kernel, device=x.device, dtype=x.dtype)
    g = torch.exp(-0.5 * (t / sigma) ** 2)
    g = g / g.sum()
    c = x.shape[1]
    x = F.pad(x, [kernel // 2] * 4, mode="reflect")
    x = F.conv2d(x, g.view(1, 1, 1, kernel).expand(c, 1, 1, kernel), groups=c)
    return F.conv2d(x, g.view(1, 1, kernel, 1).expand(c, 1, kernel, 1), groups=c)


def attended_mask(probs: torch.Tensor, batch: int, heads: int, size: tuple[int, int], latent: tuple[int, int],
                  channels: int) -> torch.Tensor:
    """``[batch, channels, H, W]`` float mask of the latent pixels receiving more than average attention.

    ``probs`` is the middle block's attention ``[rows·heads, hw, hw]`` whose first ``batch`` rows are unconditional.
    """
    h, w = size
    received = probs[: batch * heads].reshape(batch, heads, h * w, h * w).mean(1).sum(1)  # [batch, keys]
    mask = (received > 1.0).reshape(batch, 1, h, w).to(probs.dtype)
    return F.interpolate(mask, size=latent, mode="nearest").expand(batch, channels, *latent)


class _Capture:
    """Classic attention that stores its probabilities when armed (once), else the layer's own processor."""

    def __init__(self, original, state: dict):
        self.original, self.state = original, state

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        if not self.state["armed"] or hidden_states.ndim != 3 or encoder_hidden_states is not None:
            return self.original(attn, hidden_states, encoder_hidden_states, attention_mask, temb, **kwargs)
        self.state["armed"] = False
        if attn.norm_cross or attn.group_norm is not None or attn.spatial_norm is not None:
            raise InvalidArgumentError("SAG reads plain self-attention; this layer normalises its input first")
        query = attn.head_to_batch_dim(attn.to_q(hidden_states))
        key = attn.head_to_batch_dim(attn.to_k(hidden_states))
        value = attn.head_to_batch_dim(attn.to_v(hidden_states))
        probs = attn.get_attention_scores(query, key, None)
        self.state["probs"], self.state["heads"] = probs, attn.heads
        out = attn.batch_to_head_dim(torch.bmm(probs, value))
        out = attn.to_out[1](attn.to_out[0](out))
        if attn.residual_connection:
            out = out + hidden_states
        return out / attn.rescale_output_factor


@register_patch
class SelfAttentionGuidance(AttentionGuidancePatch):
    """``session.patched(sag=0.75)`` (diffusers' default scale) or ``sag={"scale": 0.75}``."""

    name = "sag"

    def __init__(self, scale: float = 0.75):
        super().__init__()
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 <= scale <= 100:
            raise InvalidArgumentError(f"SAG scale {scale!r} must be a number in [0, 100] (0 turns it off)")
        self.scale = float(scale)

    def options(self) -> dict:
        return {"scale": self.scale}

    def layers(self, model) -> dict:
        # SDXL's middle block has several transformer layers; the first one's map is read
        return dict(list(self_attention_layers(model.unet, ["mid"]).items())[:1])

    def front(self, original, state):
        return _Capture(original, state)

    def new_state(self) -> dict:
        return {"armed": False, "probs": None, "heads": 1}

    def guidance_terms(self, model) -> list:
        if self.scale == 0 or id(model) not in self._states:
            return []
        state, scale = self._states[id(model)], self.scale
        factor = 2 ** (len(model.unet.down_blocks) - 1)  # the middle block's downsampling of the latent

        class SelfAttentionTerm:
            def before_step(self):
                state["armed"], state["probs"] = True, None

            def __call__(self, x0, context):
                probs, state["armed"] = state["probs"], False
                if probs is None:
                    raise InvalidArgumentError("SAG found no self-attention map from this step's forward")
                b, c, h, w = context.x.shape
                mask = attended_mask(probs, b, state["heads"], (h // factor, w // factor), (h, w), c)
                uncond = context.uncond
                degraded = gaussian_blur(uncond) * mask + uncond * (1 - mask)
                noise = context.x - uncond  # σ·ε of the unconditional prediction
                (worse,) = context.forward(degraded + noise, context.sigma, context.embeddings[:1])
                return x0 + scale * (degraded - worse)

        return [SelfAttentionTerm()]
