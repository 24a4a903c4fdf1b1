"""Best-of-N (importance sampling at the level of whole images): N candidates from consecutive seeds, each scored,
the best returned; optionally with resampling during sampling.

The candidates are one batch (seeds ``seed`` … ``seed + n − 1``, as ``batch_size=n`` would draw them), so the
Recipe reproduces the choice without the scorer: it records every candidate's score and the chosen index, and
replaying runs the batch again and returns that candidate. Scorers: ``"adherence"`` (the bundled world's graded
adherence, :func:`difftech_lab.metrics.adherence_value`) or any callable ``scorer(image, prompt) -> float``
(recorded as its name; higher is better).

Step-level variant (``resample_at=[k, ...]``): the candidates run as particles; at each listed step the x̂0 of
every particle is decoded and scored, and the better half replaces the worse half (each kept particle twice) before
sampling continues. Copies only diverge again under a stochastic sampler (ancestral, EDM churn, restart). The
network cost equals plain best-of-N's; the decodes of the intermediate x̂0 come on top. The Recipe records every
resampling, so replay needs no scorer here either.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from ..errors import InvalidArgumentError
from ..sampling.run import run_plan
from ..sampling.settings import RunOptions, Settings, split_options
from . import get_technique, register
from .base import Technique, TechniqueParams, new_recipe
from .txt2img import check_prompt

MAX_CANDIDATES = 64


def _adherence(image, prompt) -> float:
    from ..metrics import adherence_value
    return adherence_value(image, prompt)


SCORERS = {"adherence": _adherence}


@register
class BestOf(Technique):
    name = "best_of"

    @dataclass
    class Params(TechniqueParams):
        prompt: str = ""
        negative_prompt: str = ""
        n: int = 4
        scorer: str = "adherence"
        resample_at: list | None = None  # steps at which particles are resampled on their x̂0 scores
        scores: list | None = None  # recorded: every candidate's score
        chosen: int | None = None  # recorded: the index returned
        resampled: list | None = None  # recorded: per resampling, the particle each new particle copies

    def check(self, session, settings, params):
        check_prompt(params.prompt)
        if isinstance(params.n, bool) or not isinstance(params.n, int) or not 1 <= params.n <= MAX_CANDIDATES:
            raise InvalidArgumentError(f"n={params.n!r} candidates; give a whole number from 1 to {MAX_CANDIDATES}")
        if settings.batch_size != 1:
            raise InvalidArgumentError(f"batch_size={settings.batch_size}: best_of returns one image; its n "
                                       "candidates are the batch")
        steps = list(params.resample_at or [])
        if any(isinstance(k, bool) or not isinstance(k, int) or not 0 < k < settings.steps for k in steps) \
                or steps != sorted(set(steps)):
            raise InvalidArgumentError(f"resample_at={params.resample_at!r}: give increasing steps between 1 and "
                                       f"{settings.steps - 1}")
        return replace(params, resample_at=steps or None)

    def execute(self, session, settings: Settings, params, run: RunOptions, scorer=None):
        settings = self.resolve(session, settings, params)
        params = self.check(session, settings, params)
        score = scorer or SCORERS.get(params.scorer)
        txt2img = get_technique("txt2img")
        batch = replace(settings, batch_size=params.n)
        plan = txt2img.plan(session, batch, txt2img.Params(params.prompt, params.negative_prompt))
        x, start, nfe, resampled = plan.x, 0, 0, []
        for j, k in enumerate(params.resample_at or []):
            segment = run_plan(session, replace(plan, x=x, start=start, stop=k, decode=False), None,
                               replace(run, keep_trajectory=True))
            nfe += segment.nfe
            if params.resampled is None:
                x0 = session.decode(segment.trajectory[-1].denoised)
                ranked = sorted(range(params.n), key=lambda i: (-float(score(x0[i], params.prompt)), i))
                kept = ranked[: (params.n + 1) // 2]
                resampled.append([kept[i % len(kept)] for i in range(params.n)])
            else:
                resampled.append(list(params.resampled[j]))
            x, start = segment.latents[resampled[-1]], k
        candidates = run_plan(session, replace(plan, x=x, start=start), None, run)
        if params.chosen is None:  # a new run: score; a replay returns the recorded choices
            scores = [float(score(image, params.prompt)) for image in candidates.images]
            chosen = max(range(len(scores)), key=lambda i: (scores[i], -i))  # the first of equals
            params = replace(params, scores=scores, chosen=chosen, resampled=resampled or None)
        k = params.chosen
        recipe = new_recipe(session, self.name, settings, params.to_dict())
        # nfe is per returned image, as everywhere: this one cost all n candidates' evaluations
        return replace(candidates, images=[candidates.images[k]], latents=candidates.latents[k:k + 1].clone(),
                       recipe=recipe, nfe=(candidates.nfe + nfe) * params.n, trajectory=None, x_init=None)


def best_of(session, prompt, negative_prompt: str = "", *, n: int = 4, scorer="adherence", resample_at=None,
            **options):
    """Best-of-N: ``n`` candidates (seeds ``seed``…``seed+n−1``) scored by ``scorer`` ("adherence", the bundled
    world's graded adherence, or ``scorer(image, prompt) -> float``); returns the best. ``resample_at`` (steps)
    resamples the candidates on their x̂0 scores during sampling (use a stochastic sampler). The Recipe records
    every score and choice, so it replays without the scorer. The Result's ``nfe`` counts all n candidates."""
    if callable(scorer):
        name, fn = getattr(scorer, "__name__", "custom"), scorer
    elif scorer in SCORERS:
        name, fn = scorer, None
    else:
        raise InvalidArgumentError(f"scorer {scorer!r} is not one of {sorted(SCORERS)} or a callable "
                                   "scorer(image, prompt) -> float")
    params = BestOf.Params(prompt, negative_prompt, n, name, resample_at)
    settings, run = split_options(options, technique="best_of", own=tuple(f.name for f in fields(params)))
    return get_technique("best_of").execute(session, settings, params, run, scorer=fn)
