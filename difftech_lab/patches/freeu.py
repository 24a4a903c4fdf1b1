"""FreeU (Si et al. 2023) as a patch: in the UNet's first two decoder stages, half of the backbone channels are
scaled by b and the skip features' lowest frequencies by s, for the length of a ``with`` block.

The arithmetic is diffusers' own (``UNet2DConditionModel.enable_freeu``, the paper's version 1), so results match a
diffusers pipeline with FreeU enabled. Presets are the values the FreeU authors published per model family.
"""

from __future__ import annotations

from contextlib import contextmanager

from ..errors import InvalidArgumentError
from . import Patch, register_patch

PRESETS = {  # the FreeU repository's recommended values
    "sd1": {"b1": 1.5, "b2": 1.6, "s1": 0.9, "s2": 0.2},
    "sd2": {"b1": 1.4, "b2": 1.6, "s1": 0.9, "s2": 0.2},
    "sdxl": {"b1": 1.3, "b2": 1.4, "s1": 0.9, "s2": 0.2},
}
FACTORS = ("b1", "b2", "s1", "s2")


def family(model) -> str:
    """The FreeU preset family of a model: SDXL (two text encoders), SD 2.x (1024-wide cross-attention), else SD 1.x
    (the bundled model included: its layout is SD 1.x's)."""
    if model.is_sdxl:
        return "sdxl"
    return "sd2" if model.unet.config.cross_attention_dim == 1024 else "sd1"


@register_patch
class FreeU(Patch):
    """``session.patched(freeu="auto")``, a preset name, or ``freeu={"b1": 1.2, ...}`` (unnamed factors from the
    preset); b = s = 1 leaves the network as it is up to FFT round-off."""

    name = "freeu"

    def __init__(self, preset: str = "auto", **factors):
        if preset != "auto" and preset not in PRESETS:
            raise InvalidArgumentError(f"FreeU preset {preset!r} is not 'auto' or one of {sorted(PRESETS)}")
        unknown = sorted(set(factors) - set(FACTORS))
        if unknown:
            raise InvalidArgumentError(f"FreeU has no factor {unknown[0]!r}; its factors are {', '.join(FACTORS)}")
        for k, v in factors.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 10:
                raise InvalidArgumentError(f"FreeU {k}={v!r} must be a number in [0, 10] (1 leaves that stage as is)")
        self.preset, self.factors = preset, {k: float(v) for k, v in factors.items()}

    def options(self) -> dict:
        return {"preset": self.preset, **self.factors}

    def resolved(self, model) -> dict:
        """The four factors used on ``model``."""
        return {**PRESETS[family(model) if self.preset == "auto" else self.preset], **self.factors}

    @contextmanager
    def __call__(self, model):
        unet = model.unet
        if not hasattr(unet, "enable_freeu"):
            raise InvalidArgumentError(f"FreeU needs a diffusers UNet2DConditionModel; {type(unet).__name__} has no "
                                       "FreeU hooks")
        saved = [{k: getattr(block, k, None) for k in FACTORS} for block in unet.up_blocks]
        try:
            unet.enable_freeu(**self.resolved(model))
            yield model
        finally:
            for block, values in zip(unet.up_blocks, saved):
                for k, v in values.items():
                    setattr(block, k, v)
