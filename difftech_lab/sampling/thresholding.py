"""Thresholds the guider applies to the guided x̂0: ``threshold(x0, context) -> x0``.

``context`` is the guider's ``GuidanceContext`` (the step's raw predictions and ``combine(cfg)``, which gives
the guided x̂0 at another guidance scale from the same forward).
"""

from __future__ import annotations

import torch

from ..errors import InvalidArgumentError
from .curves import Curve, curve_value


def _check_percentile(percentile: float) -> float:
    if not 0 < percentile <= 1:
        raise InvalidArgumentError(f"percentile must be in (0, 1], got {percentile}; e.g. 0.995 for the "
                                   "99.5th percentile")
    return float(percentile)


class DynamicThreshold:
    """Dynamic thresholding of x̂0 (Saharia et al. 2022, Imagen §2.3), as diffusers' ``_threshold_sample``.

    Meant for pixel-space models whose data lie in [−1, 1]; for latent models use ``MimicThreshold`` or CFG
    rescale instead.
    """

    def __init__(self, percentile: float = 0.995, max_value: float = 1.0):
        self.percentile = _check_percentile(percentile)
        if not max_value >= 1:
            raise InvalidArgumentError(f"max_value must be >= 1, got {max_value}; 1 gives plain clipping to "
                                       "[-1, 1], Imagen used larger values")
        self.max_value = float(max_value)

    def __call__(self, x0: torch.Tensor, context=None) -> torch.Tensor:
        B = x0.shape[0]
        # quantile needs float32/64; each sample gets its own s
        s = torch.quantile(x0.reshape(B, -1).abs().float(), self.percentile, dim=1)
        s = s.clamp(1, self.max_value).to(x0.dtype).view(B, *[1] * (x0.ndim - 1))
        return x0.clamp(-s, s) / s


class MimicThreshold:
    """Latent-space dynamic thresholding with a mimic scale (mcmonkey's sd-dynamic-thresholding, "A" measure,
    separate feature channels): guide at ``cfg`` but keep each channel's spread that ``mimic_cfg`` would give.

    ``mimic_cfg`` may be a per-step curve. At ``cfg == mimic_cfg`` it leaves x̂0 unchanged.
    """

    def __init__(self, mimic_cfg: Curve = 7.0, percentile: float = 1.0):
        self.mimic_cfg = mimic_cfg
        self.percentile = _check_percentile(percentile)

    def __call__(self, x0: torch.Tensor, context) -> torch.Tensor:
        mimic_cfg = curve_value(self.mimic_cfg, context.step, context.steps, "mimic_cfg")
        mimic = context.combine(mimic_cfg).flatten(2)
        guided = x0.flatten(2)  # per sample and per channel, over the spatial positions
        mimic_centered = mimic - mimic.mean(dim=2, keepdim=True)
        centre = guided.mean(dim=2, keepdim=True)
        guided_centered = guided - centre
        mimic_max = mimic_centered.abs().amax(dim=2, keepdim=True)
        dt_max = torch.quantile(guided_centered.abs().float(), self.percentile, dim=2, keepdim=True).to(x0.dtype)
        # a constant channel has no spread to keep; the floor only avoids 0/0 there
        actual = torch.maximum(dt_max, mimic_max).clamp_min(torch.finfo(x0.dtype).tiny)
        out = guided_centered.clamp(-actual, actual) / actual * mimic_max + centre
        return out.reshape(x0.shape)
