"""Masked latent composition: one image assembled from a prompt per masked part and a background prompt.

Every part's prompt and the background's are denoised from the same noise for the first ``at_step`` steps; the
latents are then combined by the parts' masks at that noise level, and the composite is denoised to the end under
one prompt (the background's, or ``finish_prompt``), so the parts settle into one image instead of being pasted.

Weights. Each mask is area-averaged to latent size (its mean is kept, so soft edges stay soft) and the parts are
normalised where they overlap: ``w_i = m_i / max(Σ_j m_j, 1)``; the background takes the rest, ``1 − Σ_i w_i``.
The sources share their noise, so at step ``at_step`` they differ only in what has been drawn, and the composite
is a latent at that noise level like any other (ALGORITHMS §2: compose only at one noise level).

``at_step`` trades layout for coherence: 0 composes nothing (plain generation with the finishing prompt), the last
step composes finished latents (a paste); in between, the first steps fix what each part shows and where, and the
remaining steps blend the seams and match the parts to each other. The continuation is a segment from
``at_step``: a multistep or stochastic sampler starts its history and noise stream afresh there, as a branch does.
With a one-step deterministic sampler (Euler) a part covering the whole canvas with the background's prompt
reproduces plain generation bit for bit.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import torch

from ..conditioning.types import Embedding
from ..errors import InvalidArgumentError, ShapeError
from ..images import resize_mask, to_mask
from ..models.memory import check_memory
from ..result import Result
from ..sampling.run import run_plan
from ..sampling.settings import RunOptions, Settings
from . import get_technique, register
from .base import Technique, TechniqueParams, new_recipe
from .txt2img import Txt2Img, check_prompt

MAX_PARTS = 16  # each part costs at_step steps of its own
DEFAULT_AT = 0.4  # at_step's default, as a fraction of the steps


def composition_weights(masks, height: int, width: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The background's and each part's weight at latent size ``(height, width)``, each ``[1, 1, h, w]``.

    Masks (``(H, W)`` in [0, 1]) are area-averaged to latent size and scaled down where they overlap to sum to
    1; the background takes what the parts leave. The weights sum to 1 at every latent pixel (up to rounding
    where parts overlap), and a part whose mask is 1 everywhere gets exactly 1 and the background exactly 0.
    """
    covers = [resize_mask(m, height, width) for m in masks]
    total = torch.stack(covers).sum(0)
    scale = 1 / total.clamp_min(1.0)
    parts = [c * scale for c in covers]
    background = (1 - torch.stack(parts).sum(0)).clamp_min(0.0)
    return background, parts


@register
class Compose(Technique):
    name = "compose"
    branchable = ("finish_prompt",)

    @dataclass
    class Params(TechniqueParams):
        parts: list | None = None  # [(prompt, mask (H, W) in [0, 1] at image size), ...]
        background: str | Embedding = ""
        negative_prompt: str = ""
        at_step: int | None = None  # the step the latents are combined at; None: 40% of the steps
        finish_prompt: str | Embedding | None = None  # the prompt of the steps after at_step; None: the background

    def check(self, session, settings, params):
        parts = params.parts
        if not isinstance(parts, (list, tuple)) or not parts:
            raise InvalidArgumentError("compose needs a non-empty list of (prompt, mask) parts; for one prompt over "
                                       "the whole canvas use generate")
        if len(parts) > MAX_PARTS:
            raise InvalidArgumentError(f"{len(parts)} parts; at most {MAX_PARTS} (merge parts that share a prompt "
                                       "into one mask)")
        checked = [self._part(part, k, settings) for k, part in enumerate(parts)]
        _check_text(params.background, "background", "what the canvas outside the parts shows, e.g. 'a white "
                                                      "background' or a whole caption")
        if params.finish_prompt is not None:
            _check_text(params.finish_prompt, "finish_prompt", "the prompt the composite is finished under "
                                                               "(None: the background's)")
        if not isinstance(params.negative_prompt, str):
            raise InvalidArgumentError(f"negative_prompt must be a str, got {type(params.negative_prompt).__name__}")
        at = params.at_step
        if at is None:
            at = round(DEFAULT_AT * settings.steps)
        if isinstance(at, bool) or not isinstance(at, int) or not 0 <= at <= settings.steps:
            raise InvalidArgumentError(f"at_step={at!r} is outside 0..{settings.steps} (the steps); 0 composes the "
                                       f"noise (plain generation), {settings.steps} the finished latents (a paste)")
        return replace(params, parts=checked, at_step=at)

    @staticmethod
    def _part(part, k: int, settings: Settings):
        if not isinstance(part, (list, tuple)) or len(part) != 2:
            raise InvalidArgumentError(f"part {k} is {part!r:.60}; give each part as a (prompt, mask) pair")
        prompt, mask = part
        _check_text(prompt, f"part {k}'s prompt", "what the part's region should show")
        try:
            mask = to_mask(mask, settings.width, settings.height)
        except ShapeError as err:
            raise ShapeError(f"part {k} ({_short(prompt)}): {err}") from None
        except InvalidArgumentError as err:
            raise InvalidArgumentError(f"part {k} ({_short(prompt)}): {err}") from None
        if not mask.any():
            raise InvalidArgumentError(f"part {k} ({_short(prompt)}) has an all-zero mask, so it would not appear; "
                                       "paint its region (MaskPainter(...).mask) or drop the part")
        return (prompt, mask)

    def execute(self, session, settings: Settings, params, run: RunOptions):
        settings = self.resolve(session, settings, params)
        check_memory(session.model, settings.width, settings.height, 2 * settings.batch_size)
        params = self.check(session, settings, params)
        x, nfe, seconds = self.composite(session, settings, params, run)
        plan = self.finish_plan(session, settings, params, x, seconds)
        recipe = new_recipe(session, self.name, settings, params.to_dict())
        if params.at_step == settings.steps:  # the finished latents pasted: no step is left to run
            return pasted(session, plan, recipe, nfe)
        result = run_plan(session, plan, recipe, run)
        return replace(result, nfe=result.nfe + nfe)

    def plan(self, session, settings, params):
        """The plan of the steps after ``at_step``, from the composite (the sources' first steps run here)."""
        x, _, seconds = self.composite(session, settings, params, RunOptions(progress=False))
        return self.finish_plan(session, settings, params, x, seconds)

    def composite(self, session, settings, params, run: RunOptions):
        """The combined latent at ``sigmas[at_step]`` (None when at_step is 0: the noise itself), the network
        evaluations per image it cost, and its seconds."""
        if params.at_step == 0:
            return None, 0, 0.0
        t0 = time.perf_counter()
        txt2img = get_technique("txt2img")
        f = session.model.vae_scale_factor
        w_background, w_parts = composition_weights([mask for _, mask in params.parts], settings.height // f,
                                                    settings.width // f)
        sources = [params.background, *(prompt for prompt, _ in params.parts)]
        weights = [w_background, *w_parts]
        quiet = RunOptions(progress=run.progress)  # the caller's subscribers see the finishing run's steps
        x, nfe = None, 0
        for prompt, w in zip(sources, weights):
            if not bool(w.any()):  # a background the parts cover everywhere adds nothing
                continue
            plan = txt2img.plan(session, settings, Txt2Img.Params(prompt, params.negative_prompt))
            segment = run_plan(session, replace(plan, stop=params.at_step, decode=False), None, quiet)
            nfe += segment.nfe
            term = segment.latents * w
            x = term if x is None else x + term
        return x, nfe, time.perf_counter() - t0

    def finish_plan(self, session, settings, params, x, seconds: float = 0.0):
        finish = params.background if params.finish_prompt is None else params.finish_prompt
        txt2img = get_technique("txt2img")
        plan = txt2img.plan(session, settings, Txt2Img.Params(finish, params.negative_prompt))
        if x is None:
            return plan
        plan.timings["compose_sources"] = seconds
        return replace(plan, x=x, start=params.at_step)


def pasted(session, plan, recipe, nfe: int) -> Result:
    """The Result of a composition at the last step: the combined finished latents, decoded."""
    t0 = time.perf_counter()
    with session.lock, torch.inference_mode():
        images = session.decode(plan.x)
    timings = {**plan.timings, "decode": time.perf_counter() - t0}
    timings["total"] = sum(timings.values())
    return Result(images=images, latents=plan.x.clone().cpu(), recipe=recipe, nfe=nfe, timings=timings,
                  sigmas=plan.sigmas.cpu(), sigmas_used=[float(plan.sigmas[-1])])


def _check_text(prompt, name: str, hint: str) -> None:
    check_prompt(prompt, name)
    if isinstance(prompt, str) and not prompt.strip():
        raise InvalidArgumentError(f"{name} is empty; give {hint}")


def _short(prompt, limit: int = 40) -> str:
    if isinstance(prompt, Embedding):
        return "an Embedding"
    return repr(prompt if len(prompt) <= limit else prompt[: limit - 1] + "…")


def compose(session, parts, background, negative_prompt: str = "", *, at_step: int | None = None,
            finish_prompt=None, **options):
    """Masked latent composition: ``parts`` is a list of ``(prompt, mask)`` (mask H×W in [0, 1] at image size,
    MaskPainter's or yours). Each part's prompt and ``background`` are denoised from the same noise for the
    first ``at_step`` steps (default 40% of the steps), the latents are combined by the masks (normalised where
    they overlap; the background fills what no part covers), and the composite is finished under
    ``finish_prompt`` (default the background), so the parts blend into one image. ``at_step=0`` is plain
    generation. The Result's ``nfe`` counts every part's steps; the parts are part of the Recipe."""
    params = Compose.Params(list(parts) if isinstance(parts, (list, tuple)) else parts, background, negative_prompt,
                            at_step, finish_prompt)
    return get_technique("compose").call(session, params, options)
