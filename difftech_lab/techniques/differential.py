"""Differential diffusion (Levin & Fried 2023, arXiv 2306.00950): img2img with a per-pixel strength.

A pixel of strength s is held to the original (noised to the current σ) until the run has covered a fraction
1 − s of its schedule, then evolves freely: per-pixel img2img strength. The switch is decided from σ itself,
by its position in the planned schedule, not from the sampler's step counter, so it works with every sampler:
Heun's second evaluation at σ_{i+1} counts as step i+1, and a restart jump to a higher σ holds pixels again.
A constant map c is img2img at strength c (exactly where N·(1 − c) is a whole number of steps).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from ..errors import InvalidArgumentError
from ..images import mask_array, resize_mask, to_mask
from . import get_technique, register
from .img2img import Img2Img, compositing_blur, keep_original_outside


def schedule_fraction(sigmas: torch.Tensor, sigma: float) -> float:
    """How far into the planned schedule ``sigma`` lies: 0 at σ_0, i/N at σ_i, linear in σ in between."""
    s = sigmas.tolist()
    n = len(s) - 1
    if sigma >= s[0]:
        return 0.0
    for i in range(n):
        if s[i + 1] <= sigma <= s[i]:
            return (i + (s[i] - sigma) / (s[i] - s[i + 1])) / n
    return 1.0


class ChangeByStrength:
    """Denoiser wrapper: where ``strength`` has not yet switched on at this σ, x is reset to the original noised to
    σ and x̂0 to the original; elsewhere the network's prediction stands (ALGORITHMS §19's nested masks)."""

    def __init__(self, inner, model_sampling, strength, init, noise, sigmas):
        self.inner, self.model_sampling, self.sigmas = inner, model_sampling, sigmas.cpu()
        self.strength, self.init, self.noise = strength, init.to(strength.device), noise.to(strength.device)

    def __call__(self, x, sigma, hidden, pooled=None):
        t = schedule_fraction(self.sigmas, float(sigma.flatten()[0]))
        free = (self.strength >= 1 - t).to(x.dtype)  # keep_i = (1 − s) > i/N, the paper's rule
        rows = x.shape[0] // self.init.shape[0]
        init, noise = self.init.repeat(rows, 1, 1, 1), self.noise.repeat(rows, 1, 1, 1)
        x = x * free + self.model_sampling.noise_scaling(sigma.view(-1, 1, 1, 1), noise, init) * (1 - free)
        return self.inner(x, sigma, hidden, pooled) * free + init * (1 - free)


@register
class Differential(Img2Img):
    name = "differential"

    @dataclass
    class Params(Img2Img.Params):
        strength_map: np.ndarray | None = None  # (H, W) in [0, 1] at image size: 1 = change fully, 0 = keep
        strength: float = 1.0  # the global schedule runs in full; the map sets each pixel's own strength
        mask_blur: float | None = None  # px of blur for compositing kept pixels; None: 4 px per 512 px
        composite: bool = True  # paste the original pixels back where the map is 0

    def check(self, session, settings, params):
        params = super().check(session, settings, params)
        if params.strength != 1.0:
            raise InvalidArgumentError("differential diffusion runs the whole schedule (strength 1.0); scale the "
                                       "strength map instead")
        if params.strength_map is None:
            raise InvalidArgumentError("differential needs a strength map: an (H, W) array at image size in [0, 1]")
        strength_map = to_mask(params.strength_map, settings.width, settings.height)
        return replace(params, strength_map=strength_map, mask_blur=compositing_blur(params.mask_blur, settings),
                       composite=bool(params.composite))

    def plan(self, session, settings, params):
        plan, init, noise = self.noised_plan(session, settings, params)
        f = session.model.vae_scale_factor
        strength = resize_mask(params.strength_map, settings.height // f, settings.width // f).to(session.device)
        plan.wrappers.append(lambda inner: ChangeByStrength(inner, session.model_sampling, strength, init, noise,
                                                            plan.sigmas))
        if params.composite:  # every pixel of strength > 0 may change; the rest keeps the original
            keep_original_outside(plan, params.image, (params.strength_map > 0).astype(np.float32), params.mask_blur)
        return plan


def differential(session, image, strength_map=None, prompt="", negative_prompt: str = "", *, keep_map=None,
                 mask_blur: float | None = None, composite: bool = True, **options):
    """Differential diffusion (Levin & Fried 2023): img2img with a per-pixel strength ``strength_map`` (H×W in
    [0, 1] at image size, 1 = change fully, 0 = keep), or the other convention through ``keep_map`` (1 = keep).
    Works with every sampler; a constant map c is img2img at strength c. With ``composite`` the original
    pixels are pasted back where the map is 0 (outside its ``mask_blur``)."""
    if (strength_map is None) == (keep_map is None):
        raise InvalidArgumentError("give exactly one of strength_map (1 = change) and keep_map (1 = keep)")
    if keep_map is not None:  # diffusers' and the paper's repository's convention: white = keep
        strength_map = 1.0 - mask_array(keep_map)
    params = Differential.Params(image, prompt, negative_prompt, 1.0, strength_map, mask_blur, composite)
    return get_technique("differential").call(session, params, options)
