"""Image to image and inpainting: start from the encoded image noised part-way, and (inpainting) keep a region.

Inpainting lives at the denoiser, so it works with every sampler, second-order and restart ones included:
at every evaluation the kept region of x is reset to the original noised to the current σ, and of x̂0 to the
original (the denoiser-level form of diffusers' latent blending). The VAE decoder mixes the whole latent, so
the kept region's pixels would still drift; by default the original pixels are composited back outside the
blurred mask, as A1111 and diffusers do.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from PIL import Image

from ..conditioning.types import Embedding
from ..errors import InvalidArgumentError
from ..images import blur_mask, composite, resize_mask, to_mask, to_rgb
from ..sampling.run import Plan, encode_conditioning
from . import get_technique, register
from .base import Technique, TechniqueParams
from .txt2img import check_prompt, planned_sigmas


def start_step(steps: int, strength: float) -> int:
    """diffusers' img2img rule: run the last ``int(steps·strength)`` steps of the full schedule."""
    run = min(int(steps * strength), steps)
    if run < 1:
        raise InvalidArgumentError(f"strength {strength} with steps {steps} runs no step; raise steps or strength so "
                                   "that steps·strength ≥ 1")
    return steps - run


@register
class Img2Img(Technique):
    name = "img2img"
    branchable = ("prompt", "negative_prompt")

    @dataclass
    class Params(TechniqueParams):
        image: Image.Image
        prompt: str | Embedding = ""
        negative_prompt: str = ""
        strength: float = 0.6  # 0.3–0.5 keeps the composition, 1.0 ignores the image

    def resolve(self, session, settings, params):
        image = to_rgb(params.image)
        for name, given, own in (("width", settings.width, image.width), ("height", settings.height, image.height)):
            if given is not None and given != own:
                raise InvalidArgumentError(f"{self.name} takes its size from the image ({name} {own}), not {name}="
                                           f"{given}; resize the image instead")
        return replace(settings, width=image.width, height=image.height).resolved(session.model)

    def check(self, session, settings, params):
        check_prompt(params.prompt)
        strength = params.strength
        if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not 0.0 < strength <= 1.0:
            raise InvalidArgumentError(f"strength {strength!r} is outside (0, 1]; 0.3–0.5 keeps the composition, "
                                       "1.0 ignores the image")
        start_step(settings.steps, strength)
        return replace(params, image=to_rgb(params.image), strength=float(strength))

    def plan(self, session, settings, params) -> Plan:
        return self.noised_plan(session, settings, params)[0]

    def noised_plan(self, session, settings, params):
        """The plan, with the encoded image and the noise its start latent was made of."""
        timings = {}
        conditioning = encode_conditioning(session, params.prompt, params.negative_prompt, settings, timings)
        sigmas = planned_sigmas(session, settings)
        start = start_step(settings.steps, params.strength)
        init = session.encode(params.image).expand(settings.batch_size, -1, -1, -1)
        noise = session.noise(settings.seed, settings.width, settings.height, settings.batch_size)
        x = session.model_sampling.noise_scaling(sigmas[start], noise, init)
        plan = Plan(settings=settings, sigmas=sigmas, x=x, conditioning=conditioning, start=start, timings=timings)
        return plan, init, noise


@register
class Inpaint(Img2Img):
    name = "inpaint"

    @dataclass
    class Params(Img2Img.Params):
        mask: np.ndarray | None = None  # (H, W) in [0, 1] at image size: 1 = regenerate, 0 = keep
        strength: float = 1.0
        mask_blur: float | None = None  # px of Gaussian blur for compositing; None: 4 px per 512 px (A1111's 4)
        composite: bool = True  # paste the original pixels back outside the (blurred) mask

    def check(self, session, settings, params):
        params = super().check(session, settings, params)
        if params.mask is None:
            raise InvalidArgumentError("inpaint needs a mask: an (H, W) array at image size, 1 = regenerate")
        mask = to_mask(params.mask, settings.width, settings.height)
        if not mask.any():
            raise InvalidArgumentError("the mask is all zero, so nothing would be regenerated; paint the region to "
                                       "change (MaskPainter(image).mask) or use img2img to change the whole image")
        return replace(params, mask=mask, mask_blur=compositing_blur(params.mask_blur, settings),
                       composite=bool(params.composite))

    def plan(self, session, settings, params) -> Plan:
        plan, init, noise = self.noised_plan(session, settings, params)
        f = session.model.vae_scale_factor
        mask = resize_mask(params.mask, settings.height // f, settings.width // f).to(session.device)
        plan.wrappers.append(lambda inner: KeepRegion(inner, session.model_sampling, mask, init, noise))
        if params.composite:
            keep_original_outside(plan, params.image, params.mask, params.mask_blur)
        return plan


def compositing_blur(blur, settings) -> float:
    """The compositing blur in pixels: as given, or A1111's 4 px scaled from 512 px to the image's shorter side."""
    if blur is None:
        blur = 4.0 * min(settings.width, settings.height) / 512
    if isinstance(blur, bool) or not isinstance(blur, (int, float)) or not 0 <= blur <= 64:
        raise InvalidArgumentError(f"mask_blur {blur!r} must be a number of pixels in [0, 64]")
    return float(blur)


def keep_original_outside(plan, original, changed, blur: float) -> None:
    """Paste ``original``'s pixels back wherever the mask ``changed`` (blurred by ``blur`` px) is 0, after decoding."""
    mask = blur_mask(changed, blur)
    plan.after_decode.append(lambda images: [composite(im, original, mask) for im in images])


class KeepRegion:
    """A denoiser wrapper that keeps the region where ``mask`` is 0: x is reset there to the original noised to
    σ, and x̂0 to the original."""

    def __init__(self, inner, model_sampling, mask, init, noise):
        self.inner, self.model_sampling = inner, model_sampling
        self.mask, self.init, self.noise = mask, init.to(mask.device), noise.to(mask.device)

    def __call__(self, x, sigma, hidden, pooled=None):
        rows = x.shape[0] // self.init.shape[0]
        mask, init = self.mask, self.init.repeat(rows, 1, 1, 1)
        noise = self.noise.repeat(rows, 1, 1, 1)
        s = sigma.view(-1, 1, 1, 1)
        x = x * mask + self.model_sampling.noise_scaling(s, noise, init) * (1 - mask)
        denoised = self.inner(x, sigma, hidden, pooled)
        return denoised * mask + init * (1 - mask)


def img2img(session, image, prompt: str | Embedding = "", negative_prompt: str = "", *, strength: float = 0.6,
            **options):
    """Image to image (see ``Session.img2img``)."""
    return get_technique("img2img").call(session, Img2Img.Params(image, prompt, negative_prompt, strength), options)


def inpaint(session, image, mask, prompt: str | Embedding = "", negative_prompt: str = "", *, strength: float = 1.0,
            mask_blur: float | None = None, composite: bool = True, **options):
    """Regenerate where ``mask`` (H×W in [0, 1], image size) is 1 and keep the image where it is 0.

    Works with every sampler. With ``composite`` the original pixels are pasted back outside the mask
    blurred by ``mask_blur`` px (default 4 px per 512 px of the shorter side, A1111's default), so the
    kept region is unchanged bit for bit.
    """
    params = Inpaint.Params(image, prompt, negative_prompt, strength, mask, mask_blur, composite)
    return get_technique("inpaint").call(session, params, options)
