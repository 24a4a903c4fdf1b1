"""Prompt expansion: deterministic rewrites of a prompt from a vocabulary of the model's family.

Two families, because what a model understands is what it was trained on:

- ``"sd"`` (Stable Diffusion 1.x, 2.x and SDXL checkpoints): styles that wrap the prompt in quality and style
  tags and add a negative prompt, as the styles menus of A1111 and Fooocus do. The words are the community's
  common tags, written for this module.
- ``"tiny-shapes"`` (the bundled model): its own attribute vocabulary. ``"canonical"`` rewrites a freely phrased
  prompt in the grammar's one word order and spellings, leaving what it leaves open open; ``"complete"`` also
  names every attribute left open, choosing by a fixed rule (size big; background white; an open position the
  first free cell of centre, left, right, top, bottom and the corners that keeps objects two cells apart; an
  open colour or shape the first not taken by another object). An open attribute means "any", so a completed
  prompt asks for a scene the original allows.

Expansion is deterministic, so a Recipe that records the style replays the same text; it records the expanded
text too, so the Recipe shows what the model was given.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InvalidArgumentError


@dataclass(frozen=True)
class Style:
    """A template with ``{prompt}`` for the positive text, and a negative prompt to add."""

    template: str
    negative: str = ""


SD_STYLES = {
    "quality": Style("{prompt}, highly detailed, sharp focus, high quality",
                     "lowres, blurry, jpeg artifacts, worst quality, deformed"),
    "photographic": Style("photograph of {prompt}, 50mm lens, natural light, film grain, highly detailed",
                          "painting, drawing, illustration, cartoon, render, lowres, blurry"),
    "cinematic": Style("cinematic still of {prompt}, dramatic lighting, shallow depth of field, anamorphic, "
                       "color graded", "flat lighting, snapshot, lowres, blurry, cartoon"),
    "digital-art": Style("digital painting of {prompt}, concept art, vibrant colors, intricate, artstation",
                         "photograph, photo, lowres, blurry, jpeg artifacts"),
    "anime": Style("anime illustration of {prompt}, clean line art, cel shading, vibrant",
                   "photograph, realistic, 3d render, lowres, blurry"),
    "watercolor": Style("watercolor painting of {prompt}, soft washes, paper texture, loose brush strokes",
                        "photograph, 3d render, sharp digital lines, lowres"),
    "line-art": Style("line art drawing of {prompt}, black ink on white, clean outlines, minimal",
                      "color, shading, photograph, blurry, lowres"),
}
# modifier groups for prompt search on SD models: one option per group, or none
SD_MODIFIERS = {
    "quality": ["highly detailed", "sharp focus", "high quality", "masterpiece"],
    "lighting": ["natural light", "studio lighting", "golden hour", "dramatic lighting", "soft light"],
    "medium": ["photograph", "digital painting", "oil painting", "watercolor", "3d render", "illustration"],
    "camera": ["close-up", "wide shot", "50mm lens", "shallow depth of field", "aerial view"],
}
TINY_STYLES = ("canonical", "complete")
FAMILIES = ("sd", "tiny-shapes")

# the fixed preference "complete" fills open positions by (a lone object goes to the centre)
_OPEN_POSITIONS = ("left", "right", "top left", "top right", "bottom left", "bottom right", "top", "bottom", "centre")


def styles(family: str) -> list[str]:
    """The style names of a family."""
    return list(_family_styles(family))


def _family_styles(family: str):
    if family == "sd":
        return SD_STYLES
    if family == "tiny-shapes":
        return TINY_STYLES
    raise InvalidArgumentError(f"model family {family!r} is not one of {FAMILIES}")


def model_family(model) -> str:
    """``"tiny-shapes"`` for the bundled model (with or without grounding), otherwise ``"sd"``."""
    from ..models.loading import BUNDLED_NAMES

    return "tiny-shapes" if model.name in BUNDLED_NAMES else "sd"


def expand(prompt: str, style: str, family: str, negative_prompt: str = "") -> tuple[str, str]:
    """The expanded ``(prompt, negative_prompt)`` of ``style`` in ``family``."""
    if not isinstance(prompt, str):
        raise InvalidArgumentError("prompt expansion rewrites text; give the prompt as a str")
    table = _family_styles(family)
    if style not in table:
        raise InvalidArgumentError(f"style {style!r} is not one of {family!r}'s styles {list(table)}")
    if family == "tiny-shapes":
        return shapes_expansion(prompt, complete=style == "complete"), negative_prompt
    chosen = table[style]
    negative = ", ".join(p for p in (negative_prompt.strip(), chosen.negative) if p)
    return chosen.template.replace("{prompt}", prompt.strip()), negative


def shapes_expansion(prompt: str, complete: bool) -> str:
    """The bundled world's rewrite of ``prompt``: canonical order and spellings; ``complete`` names every
    attribute left open (see the module's rule)."""
    from .. import scenes

    spec = scenes.parse_caption(prompt)
    if not complete:
        objects = " and ".join(scenes.phrase(o) for o in spec.objects)
        return objects + (f" on a {spec.background} background" if spec.background else "")
    positions = _fill_positions([o.position for o in spec.objects])
    taken = {"colour": [o.colour for o in spec.objects], "shape": [o.shape for o in spec.objects]}
    filled = []
    for o, position in zip(spec.objects, positions):
        colour = o.colour or next(c for c in scenes.COLOURS if c not in taken["colour"])
        shape = o.shape or next(s for s in scenes.SHAPES if s not in taken["shape"])
        taken["colour"].append(colour)
        taken["shape"].append(shape)
        filled.append(scenes.ObjectSpec(o.size or "big", colour, shape, position))
    return scenes.caption(scenes.SceneSpec(tuple(filled), spec.background or "white"))


def _fill_positions(named: list[str | None]) -> list[str]:
    """Open positions filled with the first assignment, in preference order, that keeps every object two cells
    from every other (as training scenes are); failing that, the first cells not taken."""
    from itertools import product

    from ..scenes import far_apart

    if named == [None]:
        return ["centre"]
    open_ = [i for i, p in enumerate(named) if p is None]
    for choice in product(_OPEN_POSITIONS, repeat=len(open_)):
        filled = list(named)
        for i, p in zip(open_, choice):
            filled[i] = p
        if all(far_apart(a, b) for k, a in enumerate(filled) for b in filled[k + 1:]):
            return filled
    filled = list(named)
    for i in open_:
        filled[i] = next(p for p in _OPEN_POSITIONS if p not in filled)
    return filled
