"""Prompt search: change a prompt's words so that what the model draws from it scores higher.

A discrete, derivative-free search (coordinate ascent over word slots), scored on images at fixed seeds:

- The **vocabulary** is a dict of groups of interchangeable words (the bundled model's: its sizes, colours,
  shapes, position words and backgrounds; for SD models, groups of modifiers such as lighting or medium). A word
  of the prompt that is a (one-word) entry of a group is a *slot*: any entry of its group may replace it. A group
  with no word in the prompt is an *append slot*: nothing, or ``", entry"`` at the end.
- One **sweep** visits the slots left to right (append slots last). At a slot every alternative is generated in
  one batch (each at the same seeds as the current prompt) and the best replaces the current word when it scores
  strictly higher (ties keep the current one).
- It **stops** when the score reaches the scorer's maximum (1 for adherence), when a whole sweep changes nothing
  (converged), after ``max_sweeps``, or before a slot whose batch would take the network evaluations past
  ``budget``.

Scorers: a ``target`` scene of the bundled world (any prompt the world's parser reads, e.g. "a red circle on the
left"), scored with the graded adherence (:func:`difftech_lab.metrics.adherence_value`), or any callable
``scorer(image) -> float``, higher better (recorded by name). The Recipe records the history (every accepted
change, with the score and the NFE so far) and the final prompt; replay draws the final prompt at the recorded
settings without searching again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields, replace

from ..conditioning.types import Embedding
from ..errors import InvalidArgumentError
from ..sampling.run import run_plan
from ..sampling.settings import RunOptions, Settings, split_options
from . import get_technique, register
from .base import Technique, TechniqueParams, new_recipe

MAX_SEEDS = 16
MAX_SWEEPS = 20
_WORD = re.compile(r"([A-Za-z][A-Za-z'-]*)")  # captured: split keeps the words


def default_vocabulary(model) -> dict[str, list[str]]:
    """The model family's word groups: the bundled world's attributes, or SD's modifier groups."""
    from ..conditioning.expansion import SD_MODIFIERS, model_family
    from ..scenes import BACKGROUNDS, COLOURS, SHAPES, SIZES

    if model_family(model) == "tiny-shapes":
        return {"size": list(SIZES), "colour": list(COLOURS), "shape": list(SHAPES),
                "position": ["left", "right", "top", "bottom", "centre"], "background": list(BACKGROUNDS)}
    return {group: list(words) for group, words in SD_MODIFIERS.items()}


def check_vocabulary(vocabulary) -> dict[str, list[str]]:
    if not isinstance(vocabulary, dict) or not vocabulary:
        raise InvalidArgumentError("vocabulary must be a non-empty dict {group: [word, ...]}")
    out = {}
    for group, words in vocabulary.items():
        if not isinstance(words, (list, tuple)) or len(words) < 1 or not all(isinstance(w, str) and w.strip()
                                                                           for w in words):
            raise InvalidArgumentError(f"vocabulary group {group!r} must be a list of non-empty words, got {words!r:.80}")
        out[str(group)] = [w.strip() for w in words]
    return out


@dataclass(frozen=True)
class Text:
    """A prompt as the search edits it: its pieces (separators at even indices, words at odd ones) and the words
    appended per group (``", word"`` each, in vocabulary order)."""

    pieces: tuple[str, ...]
    appended: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, prompt: str) -> "Text":
        return cls(tuple(_WORD.split(prompt)))

    def __str__(self) -> str:
        return "".join(self.pieces) + "".join(f", {w}" for _, w in self.appended)

    def replaced(self, index: int, word: str) -> "Text":
        return replace(self, pieces=self.pieces[:index] + (word,) + self.pieces[index + 1:])

    def with_appended(self, group: str, word: str | None, order: list[str]) -> "Text":
        held = {g: w for g, w in self.appended if g != group}
        if word is not None:
            held[group] = word
        return replace(self, appended=tuple((g, held[g]) for g in order if g in held))


def slots(text: Text, vocabulary: dict[str, list[str]]) -> list[tuple[str, int | None]]:
    """``(group, piece index)`` for every word of the prompt in a group, left to right, then ``(group, None)`` (an
    append slot) for every group the prompt does not use. Words match one piece (a one-word vocabulary entry)."""
    member = {}
    for group, words in vocabulary.items():
        for w in words:
            member.setdefault(w.lower(), group)
    found = [(member[w.lower()], i) for i, w in enumerate(text.pieces) if i % 2 and w.lower() in member]
    used = {g for g, _ in found}
    return found + [(g, None) for g in vocabulary if g not in used]


def alternatives(text: Text, slot: tuple[str, int | None], vocabulary: dict[str, list[str]]) -> list[Text]:
    """The texts one slot can make, other than ``text`` itself."""
    group, index = slot
    words = vocabulary[group]
    if index is not None:
        current = text.pieces[index].lower()
        return [text.replaced(index, w) for w in words if w.lower() != current]
    held = dict(text.appended).get(group)
    order = list(vocabulary)
    return [text.with_appended(group, w, order) for w in [None, *words] if w != held]


@register
class PromptSearch(Technique):
    name = "prompt_search"

    @dataclass
    class Params(TechniqueParams):
        prompt: str = ""
        target: str | None = None  # a scene of the bundled world, scored with the graded adherence
        negative_prompt: str = ""
        vocabulary: dict | None = None  # group -> words; None: the model family's
        seeds: int = 2  # images per candidate: seeds seed … seed + seeds − 1
        max_sweeps: int = 3
        budget: int | None = None  # most network evaluations (NFE) to spend; None: no cap
        scorer: str = "adherence"  # recorded: "adherence" or a callable's name
        history: list | None = None  # recorded: [{"sweep", "prompt", "score", "nfe"}, ...], the start first
        best: str | None = None  # recorded: the final prompt

    def check(self, session, settings, params):
        if not isinstance(params.prompt, str) or not params.prompt.strip():
            raise InvalidArgumentError("prompt search edits words; give the starting prompt as a non-empty str")
        if params.target is not None:
            from ..scenes import parse_caption
            parse_caption(params.target)  # a target outside the world's vocabulary is refused here, naming the word
        s = params.seeds
        if isinstance(s, bool) or not isinstance(s, int) or not 1 <= s <= MAX_SEEDS:
            raise InvalidArgumentError(f"seeds={s!r}; give the number of images per candidate, 1 to {MAX_SEEDS}")
        m = params.max_sweeps
        if isinstance(m, bool) or not isinstance(m, int) or not 1 <= m <= MAX_SWEEPS:
            raise InvalidArgumentError(f"max_sweeps={m!r}; give a whole number from 1 to {MAX_SWEEPS}")
        b = params.budget
        if b is not None and (isinstance(b, bool) or not isinstance(b, int) or b < 1):
            raise InvalidArgumentError(f"budget={b!r}; give the most network evaluations to spend (an int ≥ 1) "
                                       "or None")
        if settings.batch_size != 1:
            raise InvalidArgumentError(f"batch_size={settings.batch_size}: prompt search draws `seeds` images per "
                                       "candidate; set seeds instead")
        vocabulary = check_vocabulary(params.vocabulary if params.vocabulary is not None
                                      else default_vocabulary(session.model))
        return replace(params, vocabulary=vocabulary)

    def execute(self, session, settings: Settings, params, run: RunOptions, scorer=None):
        settings = self.resolve(session, settings, params)
        params = self.check(session, settings, params)
        if params.best is None:
            if scorer is None and params.target is None:
                raise InvalidArgumentError("give a target scene (target='a red circle on the left') or a "
                                           "scorer(image) -> float")
            params = self.search(session, settings, params, run, scorer)
        # the final prompt drawn on its own (not taken from the search's batched rows), exactly as replay draws it
        txt2img = get_technique("txt2img")
        final = replace(settings, batch_size=params.seeds)
        plan = txt2img.plan(session, final, txt2img.Params(params.best, params.negative_prompt))
        result = run_plan(session, plan, None, run)
        spent = params.history[-1]["nfe"] if params.history else 0
        return replace(result, recipe=new_recipe(session, self.name, settings, params.to_dict()),
                       nfe=result.nfe + spent // params.seeds)

    def search(self, session, settings, params, run, scorer):
        score_image = scorer or _adherence_to(params.target)
        top = 1.0 if scorer is None else None  # adherence is 1 exactly when every check passes
        evaluate = _Evaluator(session, settings, params, run, score_image)
        text = Text.of(params.prompt)
        best = evaluate([str(text)])[0]
        history = [{"sweep": 0, "prompt": str(text), "score": best, "nfe": evaluate.nfe}]
        places = slots(text, params.vocabulary)  # fixed: a replaced word stays in its piece, so indices hold
        for sweep in range(1, params.max_sweeps + 1):
            changed = False
            for slot in places:
                if top is not None and best >= top:
                    break
                options = alternatives(text, slot, params.vocabulary)
                if params.budget is not None and evaluate.nfe + evaluate.cost(len(options)) > params.budget:
                    return replace(params, history=history, best=str(text))
                scores = evaluate([str(o) for o in options])
                k = max(range(len(options)), key=lambda i: (scores[i], -i))  # the first of equals
                if scores[k] > best:
                    text, best, changed = options[k], scores[k], True
                    history.append({"sweep": sweep, "prompt": str(text), "score": best, "nfe": evaluate.nfe})
            if not changed or (top is not None and best >= top):
                break
        if history[-1]["nfe"] != evaluate.nfe:  # the spend of a last sweep that changed nothing
            history.append({"sweep": sweep, "prompt": str(text), "score": best, "nfe": evaluate.nfe})
        return replace(params, history=history, best=str(text))


class _Evaluator:
    """Scores prompts: each at the same ``seeds`` seeds, all candidates of one call in one batch."""

    def __init__(self, session, settings, params, run, score_image):
        self.session, self.settings, self.params, self.run, self.score = session, settings, params, run, score_image
        self.noise = session.noise(settings.seed, settings.width, settings.height, params.seeds)
        self.nfe = 0

    def cost(self, n: int) -> int:
        """Network evaluations for ``n`` prompts: each image costs steps × (CFG: 2) evaluations."""
        per = self.settings.steps * (2 if self.settings.cfg != 1 else 1)
        return n * self.params.seeds * per

    def __call__(self, prompts: list[str]) -> list[float]:
        session, s = self.session, self.params.seeds
        embeddings = [session.encode_prompt(p) for p in prompts]
        scores: list[float | None] = [None] * len(prompts)
        groups: dict[tuple, list[int]] = {}
        for i, e in enumerate(embeddings):  # one batch per token length (long prompts are 77·k tokens)
            groups.setdefault((e.hidden.shape[1], e.pooled is None), []).append(i)
        txt2img = get_technique("txt2img")
        for idx in groups.values():
            hidden = _cat([embeddings[i].hidden for i in idx], s)
            pooled = None if embeddings[idx[0]].pooled is None else _cat([embeddings[i].pooled for i in idx], s)
            settings = replace(self.settings, batch_size=len(idx) * s)
            noise = self.noise.repeat(len(idx), 1, 1, 1)
            plan = txt2img.plan(session, settings, txt2img.Params(Embedding(hidden, pooled),
                                                                  self.params.negative_prompt, noise))
            result = run_plan(session, plan, None, self.run)
            self.nfe += result.nfe * len(idx) * s
            for j, i in enumerate(idx):
                images = result.images[j * s:(j + 1) * s]
                scores[i] = float(sum(self.score(im) for im in images) / s)
        return scores


def _cat(rows, repeats: int):
    import torch

    return torch.cat([r.repeat_interleave(repeats, dim=0) for r in rows])


def _adherence_to(target: str):
    from ..metrics import adherence_value
    from ..scenes import parse_caption

    spec = parse_caption(target)
    return lambda image: adherence_value(image, spec)


def prompt_search(session, prompt: str, target: str | None = None, negative_prompt: str = "", *, scorer=None,
                  vocabulary=None, seeds: int = 2, max_sweeps: int = 3, budget: int | None = None, **options):
    """Search the prompt's words for a higher score: coordinate ascent over word slots (``vocabulary``: groups of
    interchangeable words; default the model family's), each candidate drawn at seeds ``seed`` … ``seed + seeds −
    1``. Scored against a ``target`` scene of the bundled world, or by ``scorer(image) -> float``. Stops at the top
    score, on a sweep that changes nothing, after ``max_sweeps`` or at ``budget`` NFE. Returns the final prompt's
    images; ``result.recipe.params["history"]`` holds every accepted change with its score and NFE, and the
    Recipe replays the final prompt without searching. ``nfe`` counts the whole search."""
    if scorer is not None and not callable(scorer):
        raise InvalidArgumentError(f"scorer {scorer!r} must be a callable scorer(image) -> float")
    if scorer is not None and target is not None:
        raise InvalidArgumentError("give a target scene or a scorer, not both")
    params = PromptSearch.Params(prompt, target, negative_prompt, vocabulary, seeds, max_sweeps, budget,
                                 getattr(scorer, "__name__", "custom") if scorer else "adherence")
    settings, run = split_options(options, technique="prompt_search", own=tuple(f.name for f in fields(params)))
    return get_technique("prompt_search").execute(session, settings, params, run, scorer=scorer)
