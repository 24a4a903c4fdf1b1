"""Best-of-N (importance sampling at the level of whole images): N candidates from consecutive seeds, each scored,
the best returned.

The candidates are one batch (seeds ``seed`` … ``seed + n − 1``, as ``batch_size=n`` would draw them), so the
Recipe reproduces the choice without the scorer: it records every candidate's score and the chosen index, and
replaying runs the batch again and returns that candidate. Scorers: ``"adherence"`` (the bundled world's graded
adherence, :func:`difftech_lab.metrics.adherence_value`) or any callable ``scorer(image, prompt) -> float``
(recorded as its name; higher is better).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from ..errors import InvalidArgumentError
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
        scores: list | None = None  # recorded: every candidate's score
        chosen: int | None = None  # recorded: the index returned

    def check(self, session, settings, params):
        check_prompt(params.prompt)
        if isinstance(params.n, bool) or not isinstance(params.n, int) or not 1 <= params.n <= MAX_CANDIDATES:
            raise InvalidArgumentError(f"n={params.n!r} candidates; give a whole number from 1 to {MAX_CANDIDATES}")
        if settings.batch_size != 1:
            raise InvalidArgumentError(f"batch_size={settings.batch_size}: best_of returns one image; its n "
                                       "candidates are the batch")
        return params

    def execute(self, session, settings: Settings, params, run: RunOptions, scorer=None):
        settings = self.resolve(session, settings, params)
        params = self.check(session, settings, params)
        batch = replace(settings, batch_size=params.n)
        candidates = get_technique("txt2img").execute(
            session, batch, get_technique("txt2img").Params(params.prompt, params.negative_prompt), run)
        if params.chosen is None:  # a new run: score; a replay returns the recorded choice
            score = scorer or SCORERS[params.scorer]
            scores = [float(score(image, params.prompt)) for image in candidates.images]
            chosen = max(range(len(scores)), key=lambda i: (scores[i], -i))  # the first of equals
            params = replace(params, scores=scores, chosen=chosen)
        k = params.chosen
        recipe = new_recipe(session, self.name, settings, params.to_dict())
        return replace(candidates, images=[candidates.images[k]], latents=candidates.latents[k:k + 1].clone(),
                       recipe=recipe, trajectory=None, x_init=None)


def best_of(session, prompt, negative_prompt: str = "", *, n: int = 4, scorer="adherence", **options):
    """Best-of-N (see ``Session.best_of``)."""
    if callable(scorer):
        name, fn = getattr(scorer, "__name__", "custom"), scorer
    elif scorer in SCORERS:
        name, fn = scorer, None
    else:
        raise InvalidArgumentError(f"scorer {scorer!r} is not one of {sorted(SCORERS)} or a callable "
                                   "scorer(image, prompt) -> float")
    params = BestOf.Params(prompt, negative_prompt, n, name)
    settings, run = split_options(options, technique="best_of", own=tuple(f.name for f in fields(params)))
    return get_technique("best_of").execute(session, settings, params, run, scorer=fn)
