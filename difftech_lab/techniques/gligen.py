"""Box grounding: ``session.gligen(prompt, [(phrase, box), ...])``.

Two methods, chosen by what the model has:

- **GLIGEN** (Li et al. 2023) where the UNet carries grounding weights (diffusers' ``attention_type="gated"``: a
  gated self-attention layer in every transformer block and the position net): each phrase's pooled text
  vector and its box's Fourier features become grounding tokens the visual tokens attend to. The conditional
  rows get the objects; the unconditional rows get none (the masks at 0), as diffusers' pipeline does.
  Scheduled sampling: the gated layers run for the first ``scheduled_sampling`` fraction of the steps and are
  switched off after; by default the τ the model's grounding card names, else 0.3 (the paper's and diffusers').
- **Training-free boxes** for models without grounding weights (``patches.box_attention``): cross-attention to
  each phrase's tokens is restricted to its box and boosted inside it, for the first ``scheduled_sampling``
  fraction of the steps (all of them by default). The phrases must occur in the prompt.

Boxes are ``(x0, y0, x1, y1)`` in [0, 1] of the image's width and height.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, replace

import torch

from ..errors import InvalidArgumentError
from ..images import box_mask, resize_mask
from ..models.grounding import MAX_OBJECTS, gligen_inputs, has_grounding, phrase_embeddings
from ..patches import matching_rows
from ..patches.box_attention import BoxAttention
from . import get_technique, register
from .base import Technique, TechniqueParams
from .txt2img import Txt2Img, check_prompt

METHODS = ("auto", "gligen", "boxes")


def phrase_span(tokenizer, prompt: str, phrase: str) -> list[int]:
    """The positions of ``phrase``'s tokens in the encoded ``prompt`` (after its start token), first occurrence."""
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    part = tokenizer(phrase, add_special_tokens=False)["input_ids"]
    for i in range(len(ids) - len(part) + 1):
        if ids[i:i + len(part)] == part:
            return list(range(1 + i, 1 + i + len(part)))
    raise InvalidArgumentError(f"the phrase {phrase!r} does not occur in the prompt {prompt!r}; training-free boxes "
                               "steer the prompt's own words, so write each phrase into the prompt")


class _Switch:
    """Step subscriber: grounding on for steps < ``cutoff``; the state also reads "on" before the first step."""

    def __init__(self, state: dict, cutoff: int):
        self.state, self.cutoff = state, cutoff

    def __call__(self, event) -> None:
        self.state["on"] = event.i + 1 < self.cutoff


class GligenInputs:
    """Plan patch for a grounded UNet: the grounding tokens go into every forward (conditional rows only) and the
    gated layers are enabled while the state says so."""

    def __init__(self, states: torch.Tensor, boxes: torch.Tensor, embeddings: torch.Tensor, n: int, state: dict):
        self.states, self.boxes, self.embeddings, self.n, self.state = states, boxes, embeddings, n, state

    @contextmanager
    def __call__(self, model):
        from diffusers.models.attention import GatedSelfAttentionDense

        unet = model.unet
        fusers = [m for m in unet.modules() if isinstance(m, GatedSelfAttentionDense)]
        forward = unet.forward
        outer = self

        def grounded_forward(sample, timestep, encoder_hidden_states, *args, cross_attention_kwargs=None, **kwargs):
            on = outer.state["on"]
            for fuser in fusers:
                fuser.enabled = on
            rows = encoder_hidden_states.shape[0]
            grounded = matching_rows(encoder_hidden_states, outer.states).to(sample.device)
            kwargs_ = dict(cross_attention_kwargs or {})
            kwargs_["gligen"] = gligen_inputs(outer.embeddings.to(sample.device, sample.dtype).expand(rows, -1, -1),
                                              outer.boxes.to(sample.device, sample.dtype).expand(rows, -1, -1),
                                              torch.full((rows,), outer.n, device=sample.device), grounded)
            return forward(sample, timestep, encoder_hidden_states, *args, cross_attention_kwargs=kwargs_, **kwargs)

        unet.forward = grounded_forward
        try:
            yield
        finally:
            del unet.forward  # back to the class's own forward
            for fuser in fusers:
                fuser.enabled = True


@register
class Gligen(Txt2Img):
    name = "gligen"
    branchable = ()

    @dataclass
    class Params(TechniqueParams):
        prompt: str = ""
        boxes: list = None  # [[phrase, [x0, y0, x1, y1]], ...]
        negative_prompt: str = ""
        method: str = "auto"
        scheduled_sampling: float | None = None  # fraction of steps grounded; None: the model's τ (GLIGEN) or 1
        boost: float = 4.0  # training-free boxes: attention factor on a phrase inside its box

    def check(self, session, settings, params):
        check_prompt(params.prompt)
        if not isinstance(params.prompt, str):
            raise InvalidArgumentError("gligen takes a text prompt (its phrases are read from it)")
        if params.method not in METHODS:
            raise InvalidArgumentError(f"grounding method {params.method!r} is not one of {', '.join(METHODS)}")
        method = params.method
        if method == "auto":
            method = "gligen" if has_grounding(session.model.unet) else "boxes"
        if method == "gligen" and not has_grounding(session.model.unet):
            raise InvalidArgumentError("this model has no GLIGEN weights (a UNet with attention_type='gated'); load "
                                       "a GLIGEN checkpoint in diffusers format, or use method='boxes'")
        if not isinstance(params.boxes, (list, tuple)) or not params.boxes:
            raise InvalidArgumentError("boxes must be a non-empty list of (phrase, (x0, y0, x1, y1))")
        if len(params.boxes) > MAX_OBJECTS:
            raise InvalidArgumentError(f"{len(params.boxes)} boxes; GLIGEN grounds at most {MAX_OBJECTS} objects")
        boxes = []
        for k, item in enumerate(params.boxes):
            if not isinstance(item, (list, tuple)) or len(item) != 2 or not isinstance(item[0], str):
                raise InvalidArgumentError(f"box {k} must be (phrase, (x0, y0, x1, y1)), got {item!r:.80}")
            phrase, box = item
            if not phrase.strip():
                raise InvalidArgumentError(f"box {k} has an empty phrase; say what goes in the box")
            box_mask(box, settings.width, settings.height)
            boxes.append([phrase, [float(v) for v in box]])
        s = params.scheduled_sampling
        if s is None:  # GLIGEN's τ: the model's own (a grounding folder's card), else the paper's 0.3
            s = session.model.extras.get("defaults", {}).get("scheduled_sampling", 0.3) if method == "gligen" else 1.0
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not 0 <= s <= 1:
            raise InvalidArgumentError(f"scheduled_sampling {s!r} must lie in [0, 1] (the fraction of steps grounded)")
        b = params.boost
        if isinstance(b, bool) or not isinstance(b, (int, float)) or not 0 < b <= 100:
            raise InvalidArgumentError(f"boost {b!r} must be a number in (0, 100] (1: restrict without boosting)")
        return replace(params, method=method, boxes=boxes, scheduled_sampling=float(s), boost=float(b))

    def plan(self, session, settings, params):
        plan = super().plan(session, settings, Txt2Img.Params(params.prompt, params.negative_prompt))
        t0 = time.perf_counter()
        cutoff = int(params.scheduled_sampling * settings.steps)
        state = {"on": cutoff > 0}
        if cutoff == 0:  # no grounded step: the plain prompt, exactly
            return plan
        term = plan.conditioning.terms[0]
        if len(plan.conditioning.terms) != 1 or len(term.schedule) != 1:
            raise InvalidArgumentError("grounding takes a plain prompt (no AND or [from:to:when]); schedule it "
                                       "with a regional prompt instead")
        states = term.schedule[0][1].hidden
        if params.method == "gligen":
            plan.patches.append(self._gligen_inputs(session, params, states, state))
        else:
            tokenizer = session.encoder.pairs[0][0]
            if len(tokenizer(params.prompt, add_special_tokens=False)["input_ids"]) > 75:
                raise InvalidArgumentError("training-free boxes need a prompt of at most 75 tokens (one chunk)")
            spans = [phrase_span(tokenizer, params.prompt, phrase) for phrase, _ in params.boxes]
            f = session.model.vae_scale_factor
            masks = torch.cat([resize_mask(box_mask(box, settings.width, settings.height), settings.height // f,
                                           settings.width // f)[0] for _, box in params.boxes])
            plan.patches.append(BoxAttention(states, spans, masks, params.boost, state))
        plan.subscribers.append(_Switch(state, cutoff))
        plan.timings["encode_prompt"] = plan.timings.get("encode_prompt", 0.0) + time.perf_counter() - t0
        return plan

    @staticmethod
    def _gligen_inputs(session, params, states, state) -> GligenInputs:
        tokenizer, encoder = session.encoder.pairs[0]
        pooled = phrase_embeddings(tokenizer, encoder, [phrase for phrase, _ in params.boxes])
        boxes = torch.tensor([[box for _, box in params.boxes]])
        return GligenInputs(states, boxes, pooled[None], len(params.boxes), state)


def gligen(session, prompt: str, boxes, negative_prompt: str = "", *, method: str = "auto",
           scheduled_sampling: float | None = None, boost: float = 4.0, **options):
    """Box grounding: ``boxes`` is a list of ``(phrase, (x0, y0, x1, y1))`` in [0, 1] (BoxEditor's boxes). With
    GLIGEN weights in the UNet (``method="gligen"``, the default where present) the phrases become grounding
    tokens for the first ``scheduled_sampling`` of the steps (the model's τ, else 0.3); otherwise (``method="boxes"``) each phrase
    of the prompt has its cross-attention restricted to its box and boosted ``boost``-fold inside it."""
    params = Gligen.Params(prompt, list(boxes) if isinstance(boxes, (list, tuple)) else boxes, negative_prompt,
                           method, scheduled_sampling, boost)
    return get_technique("gligen").call(session, params, options)

