"""Text to image: noise at σ_max, denoised under the prompt's conditioning."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from ..conditioning.expansion import expand, model_family
from ..conditioning.types import Embedding
from ..errors import InvalidArgumentError, ShapeError
from ..sampling.run import Plan, encode_conditioning
from ..sampling.schedules import make_sigmas
from . import get_technique, register
from .base import Technique, TechniqueParams


def check_prompt(prompt, name: str = "prompt"):
    if not isinstance(prompt, (str, Embedding)):
        raise InvalidArgumentError(f"{name} must be a str or an Embedding (session.encode_prompt), got "
                                   f"{type(prompt).__name__}")
    return prompt


def planned_sigmas(session, settings) -> torch.Tensor:
    """The full schedule the settings name, as float32 (schedule options are checked here, before any work)."""
    try:
        return make_sigmas(settings.schedule, session.model_sampling, settings.steps, **settings.schedule_options).float()
    except TypeError as err:
        raise InvalidArgumentError(f"schedule {settings.schedule!r} does not take options "
                                   f"{sorted(settings.schedule_options)}: {err}") from err


@register
class Txt2Img(Technique):
    name = "txt2img"
    branchable = ("prompt", "negative_prompt")

    @dataclass
    class Params(TechniqueParams):
        prompt: str | Embedding = ""
        negative_prompt: str = ""
        noise: torch.Tensor | None = None  # given initial noise [B, C, h, w] (unit variance); None: from the seed
        style: str | None = None  # prompt expansion (conditioning.expansion) from the model family's vocabulary
        expanded: list | None = None  # recorded: [prompt, negative prompt] as the style expanded them

    def check(self, session, settings, params):
        check_prompt(params.prompt)
        if params.style is not None:
            expanded = expand(params.prompt, params.style, model_family(session.model), params.negative_prompt)
            params = replace(params, expanded=list(expanded))
        if params.noise is not None:  # given noise is part of what the result depends on
            return replace(params, noise=check_noise(session, params.noise, settings))
        return params

    def plan(self, session, settings, params) -> Plan:
        timings = {}
        prompt, negative = params.expanded or (params.prompt, params.negative_prompt)
        conditioning = encode_conditioning(session, prompt, negative, settings, timings)
        sigmas = planned_sigmas(session, settings)
        x = start_latent(session, settings, sigmas, params.noise)
        return Plan(settings=settings, sigmas=sigmas, x=x, conditioning=conditioning, timings=timings)



def start_latent(session, settings, sigmas: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
    """The latent a text-to-image run starts from: the seed's noise (or ``noise``) at the schedule's first σ."""
    if noise is None:
        noise = session.noise(settings.seed, settings.width, settings.height, settings.batch_size)
    return session.model_sampling.noise_scaling(sigmas[0], noise, torch.zeros_like(noise))


def check_noise(session, noise, settings) -> torch.Tensor:
    expected = (settings.batch_size, *session.latent_shape(settings.width, settings.height))
    if not isinstance(noise, torch.Tensor):
        raise InvalidArgumentError(f"noise must be a torch.Tensor of shape {expected}, got {type(noise).__name__}")
    if noise.dim() == 3:
        noise = noise.unsqueeze(0)
    if tuple(noise.shape) != expected:
        raise ShapeError(f"noise has shape {tuple(noise.shape)}, but {settings.width}x{settings.height} with "
                         f"batch_size {settings.batch_size} needs {expected}")
    if not torch.isfinite(noise).all():
        raise InvalidArgumentError("noise holds NaN/inf values; give finite unit-variance noise (session.noise)")
    return noise.detach().float().cpu()


def generate(session, prompt: str | Embedding = "", negative_prompt: str = "", *, noise=None, style=None,
             **options):
    """Text to image (see ``Session.generate``)."""
    return get_technique("txt2img").call(session, Txt2Img.Params(prompt, negative_prompt, noise, style), options)
