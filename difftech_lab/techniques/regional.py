"""Regional prompting: a prompt per region of the canvas, in two modes.

- ``attention`` (A1111 Regional Prompter's default): one network pass per step; in every cross-attention layer
  each region's prompt is attended separately and the outputs are blended by the regions' shares of each pixel
  (``patches.regional``).
- ``latent`` (ComfyUI's area/mask conditioning, Latent Couple): one pass per region; the predictions are
  blended by the same shares, each region guided against its own negative (``Guider``'s masked terms).

Shares. Region k covers ``c_k = weight_k · mask_k`` of a pixel (masks area-averaged to latent size). Where the
regions together cover more than the whole pixel they are scaled to sum to 1 (ComfyUI's normalisation, so a
weight is a region's strength where regions overlap and along soft edges). Inside the regions the base prompt
keeps ``base_ratio`` of each region's share (Regional Prompter's base ratio, here applied to the predictions or
attention outputs rather than the text states, so prompts of any length mix); whatever the regions leave
uncovered belongs to the base prompt. In attention mode SDXL's one pooled text vector is the prompts' pooled
vectors averaged by their shares of the canvas. The shares sum to 1 at every pixel, so one region covering the canvas
with base ratio 0 is the plain prompt exactly.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np
import torch

from ..conditioning.types import Conditioning, CondTerm, Embedding
from ..errors import InvalidArgumentError, ShapeError
from ..images import box_mask, resize_mask, to_mask
from ..patches.regional import RegionalAttention
from ..sampling.run import Plan
from . import get_technique, register
from .base import Technique, TechniqueParams
from .compose import composition_weights
from .txt2img import planned_sigmas, start_latent

MODES = ("attention", "latent")
MAX_REGIONS = 16  # latent mode runs a network row per region and step; attention mode a cross-attention each


def normalise_region(region, index: int) -> dict:
    """A region as recorded: ``{"prompt", "mask" or "box", "weight", "negative_prompt"}``, from a tuple
    ``(prompt, mask_or_box[, weight])`` or a dict with those keys."""
    if isinstance(region, dict):
        unknown = sorted(set(region) - {"prompt", "mask", "box", "weight", "negative_prompt"})
        if unknown:
            raise InvalidArgumentError(f"region {index} has unknown keys {unknown}; use prompt, mask or box, weight, "
                                       "negative_prompt")
        spec = dict(region)
    elif isinstance(region, (tuple, list)) and len(region) in (2, 3):
        area = region[1]
        is_box = isinstance(area, (tuple, list)) and len(area) == 4 and all(np.isscalar(v) for v in area)
        spec = {"prompt": region[0], "box" if is_box else "mask": area}
        if len(region) == 3:
            spec["weight"] = region[2]
    else:
        raise InvalidArgumentError(f"region {index} must be (prompt, mask_or_box), (prompt, mask_or_box, weight) or "
                                   f"a dict, got {region!r:.80}")
    prompt = spec.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise InvalidArgumentError(f"region {index} has an empty prompt {prompt!r}; give each region what to draw "
                                   "there (the base prompt covers the rest)")
    if ("mask" in spec) == ("box" in spec):
        raise InvalidArgumentError(f"region {index} needs exactly one of a mask (an H×W array) and a box "
                                   "(x0, y0, x1, y1)")
    weight = spec.get("weight", 1.0)
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not np.isfinite(weight) or weight <= 0:
        raise InvalidArgumentError(f"region {index} weight {weight!r} must be a positive number (1 = full strength)")
    negative = spec.get("negative_prompt")
    if negative is not None and not isinstance(negative, str):
        raise InvalidArgumentError(f"region {index} negative_prompt must be a str or None, got {negative!r:.60}")
    out = {"prompt": prompt, "weight": float(weight), "negative_prompt": negative}
    if "box" in spec:
        out["box"] = [float(v) for v in spec["box"]] if isinstance(spec["box"], (tuple, list)) else spec["box"]
    else:
        out["mask"] = spec["mask"]
    return out


def region_shares(masks: list[np.ndarray], weights: list[float], base_ratio: float, latent: tuple[int, int]):
    """``[1 + R, h, w]``: the base prompt's share, then each region's, at latent size (see the module's rule)."""
    _, covers = composition_weights([m * w for m, w in zip(masks, weights)], *latent)  # overlaps normalised
    regions = torch.cat(covers)[:, 0] * (1.0 - base_ratio)
    return torch.cat([(1.0 - regions.sum(0, keepdim=True)).clamp(min=0.0), regions])


def concatenated(terms: list[CondTerm], weights: list[float]) -> CondTerm:
    """One term whose text states are the terms' states side by side, changing wherever any term's does. SDXL's
    pooled vector is the terms' pooled vectors averaged by ``weights`` (each prompt's share of the canvas)."""
    changes = sorted({until for term in terms for until, _ in term.schedule})
    schedule = []
    for until in changes:
        parts = [term.at(min(until, 1 << 29) - 1) for term in terms]
        pooled = None
        if parts[0].pooled is not None:
            pooled = sum(w * p.pooled for w, p in zip(weights, parts) if w > 0)
        schedule.append((until, Embedding(torch.cat([p.hidden for p in parts], dim=1), pooled)))
    return CondTerm(schedule=schedule)


@register
class Regional(Technique):
    name = "regional"

    @dataclass
    class Params(TechniqueParams):
        regions: list = None  # normalised region dicts (see normalise_region)
        base_prompt: str = ""
        negative_prompt: str = ""
        mode: str = "attention"
        base_ratio: float = 0.2

    def check(self, session, settings, params):
        if params.mode not in MODES:
            raise InvalidArgumentError(f"regional mode {params.mode!r} is not one of {', '.join(MODES)}")
        if not isinstance(params.base_prompt, str) or not isinstance(params.negative_prompt, str):
            raise InvalidArgumentError("base_prompt and negative_prompt must be str")
        r = params.base_ratio
        if isinstance(r, bool) or not isinstance(r, (int, float)) or not 0 <= r <= 1:
            raise InvalidArgumentError(f"base_ratio {r!r} must lie in [0, 1] (0: regions only, 1: base prompt only)")
        if not isinstance(params.regions, (list, tuple)) or not params.regions:
            raise InvalidArgumentError("regions must be a non-empty list of (prompt, mask_or_box) pairs")
        if len(params.regions) > MAX_REGIONS:
            raise InvalidArgumentError(f"{len(params.regions)} regions; at most {MAX_REGIONS} fit (merge regions "
                                       "that share a prompt into one mask)")
        regions = [normalise_region(region, k) for k, region in enumerate(params.regions)]
        for k, region in enumerate(regions):
            if "box" in region:
                box_mask(region["box"], settings.width, settings.height)  # checked here, drawn in the plan
            else:
                try:
                    region["mask"] = to_mask(region["mask"], settings.width, settings.height)
                except ShapeError as err:
                    raise ShapeError(f"region {k}: {err}") from None
                except InvalidArgumentError as err:
                    raise InvalidArgumentError(f"region {k}: {err}") from None
                if not region["mask"].any():
                    raise InvalidArgumentError(f"region {k}'s mask is empty (all zeros); paint where it should draw")
        return replace(params, regions=regions, base_ratio=float(r))

    def plan(self, session, settings, params) -> Plan:
        t0 = time.perf_counter()
        f = session.model.vae_scale_factor
        latent = (settings.height // f, settings.width // f)
        masks = [box_mask(r["box"], settings.width, settings.height) if "box" in r else r["mask"]
                 for r in params.regions]
        shares = region_shares(masks, [r["weight"] for r in params.regions], params.base_ratio, latent)
        encoder, steps, skip = session.encoder, settings.steps, settings.clip_skip
        base = _one_term(encoder.conditioning(params.base_prompt, params.negative_prompt, steps, clip_skip=skip),
                         "the base prompt")
        parts = [_one_term(encoder.conditioning(r["prompt"], params.negative_prompt if r["negative_prompt"] is None
                                                else r["negative_prompt"], steps, clip_skip=skip), f"region {k}")
                 for k, r in enumerate(params.regions)]
        sigmas = planned_sigmas(session, settings)
        x = start_latent(session, settings, sigmas)
        patches = []
        if params.mode == "latent":
            terms = []
            for k, ((term, negative), share) in enumerate(zip([base, *parts], shares)):
                if not bool(share.any()):  # a prompt with no share anywhere costs nothing
                    continue
                own = None if k == 0 or params.regions[k - 1]["negative_prompt"] is None else negative
                terms.append(replace(term, weight=1.0, mask=share[None, None].to(session.device), negative=own))
            conditioning = Conditioning(terms=terms, negative=base[1])
        else:
            canvas = shares.mean(dim=(1, 2)).tolist()
            positive = concatenated([term for term, _ in [base, *parts]], canvas)
            negative = concatenated([negative for _, negative in [base, *parts]], canvas)
            lengths = [term.schedule[0][1].hidden.shape[1] for term, _ in [base, *parts]]
            conditioning = Conditioning(terms=[positive], negative=negative)
            patches.append(RegionalAttention([lengths], shares.to(session.device)))
        return Plan(settings=settings, sigmas=sigmas, x=x, conditioning=conditioning, patches=patches,
                    timings={"encode_prompt": time.perf_counter() - t0})


def _one_term(conditioning: Conditioning, what: str) -> tuple[CondTerm, CondTerm]:
    if len(conditioning.terms) != 1 or conditioning.terms[0].weight != 1.0:
        raise InvalidArgumentError(f"{what} uses AND or a term weight; give each part its own region instead")
    return conditioning.terms[0], conditioning.negative


def regional(session, regions, base_prompt: str = "", mode: str = "attention", *, negative_prompt: str = "",
             base_ratio: float = 0.2, **options):
    """Regional prompting: ``regions`` is a list of ``(prompt, mask_or_box)`` (or ``(prompt, mask_or_box,
    weight)``, or dicts that may add a region's own ``negative_prompt``); a mask is an H×W array at image size
    in [0, 1] (MaskPainter's, BoxEditor's or yours), a box ``(x0, y0, x1, y1)`` in [0, 1]. ``mode``:
    "attention" (cross-attention per region, one pass per step, as A1111's Regional Prompter) or "latent"
    (a pass per region, predictions blended by mask, as ComfyUI's area conditioning). The base prompt covers
    what no region does and keeps ``base_ratio`` inside them. The regions are part of the Recipe."""
    params = Regional.Params(list(regions) if isinstance(regions, (list, tuple)) else regions, base_prompt,
                             negative_prompt, mode, base_ratio)
    return get_technique("regional").call(session, params, options)
