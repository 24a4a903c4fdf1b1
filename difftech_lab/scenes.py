"""The captioned-shapes world: its caption grammar, palette, 3×3 grid and the geometry of its shapes.

The truth both sides agree on: the procedural dataset (``training.dataset``) draws scenes from it and the adherence
scorer (``metrics``) reads images back against it, so neither has to depend on the other.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from difftech_lab.errors import InvalidArgumentError

RESOLUTION = 64

COLOURS = {
    "red": (220, 30, 30),
    "orange": (250, 140, 0),
    "yellow": (245, 225, 20),
    "green": (30, 160, 50),
    "cyan": (0, 210, 220),
    "blue": (30, 60, 220),
    "purple": (130, 40, 180),
    "pink": (250, 120, 190),
}
BACKGROUNDS = {"white": (255, 255, 255), "gray": (128, 128, 128), "black": (0, 0, 0)}
SHAPES = ("circle", "square", "triangle", "star")
SIZES = {"big": 12.0, "small": 7.5}  # circumradius-like half-extent in pixels

# Positions on a 3×3 grid (column, row); the phrase each one is written with.
POSITIONS = {
    "top left": (0, 0), "top": (1, 0), "top right": (2, 0),
    "left": (0, 1), "centre": (1, 1), "right": (2, 1),
    "bottom left": (0, 2), "bottom": (1, 2), "bottom right": (2, 2),
}
_PREPOSITION = {"left": "on the", "right": "on the", "centre": "in the"}  # every other position: "at the"


@dataclass(frozen=True)
class ObjectSpec:
    """One object of a scene: what the caption says about it (``None``: the caption leaves it open, so any)."""

    size: str | None
    colour: str | None
    shape: str | None
    position: str | None


@dataclass(frozen=True)
class SceneSpec:
    """A whole scene: its objects in caption order and its background (``None``: any)."""

    objects: tuple[ObjectSpec, ...]
    background: str | None

    @property
    def complete(self) -> bool:
        """Whether every attribute is named, as in a rendered scene."""
        return self.background is not None and all(None not in (o.size, o.colour, o.shape, o.position)
                                                   for o in self.objects)


def scene_key(spec: SceneSpec) -> str:
    """The scene itself, whatever order a caption lists its objects in: the unit the evaluation split holds out."""
    objects = sorted(f"{o.size} {o.colour} {o.shape} {o.position}" for o in spec.objects)
    return " | ".join(objects) + f" / {spec.background}"


def far_apart(a: str, b: str) -> bool:
    """Whether two positions are two grid cells apart (in x or y), as the objects of one training scene are: even
    two big objects there never touch."""
    (ax, ay), (bx, by) = POSITIONS[a], POSITIONS[b]
    return max(abs(ax - bx), abs(ay - by)) >= 2


def position_phrase(position: str) -> str:
    """How the grammar places an object: ``on the left``, ``in the centre``, ``at the top right``."""
    return f"{_PREPOSITION.get(position, 'at the')} {position}"


def object_phrase(obj: ObjectSpec) -> str:
    """The grammar's phrase for one object, e.g. ``a big red circle on the left``."""
    return f"a {obj.size} {obj.colour} {obj.shape} {position_phrase(obj.position)}"


def phrase(obj: ObjectSpec, position: bool = True) -> str:
    """``a big red circle at the top left``, with the attributes left open (``None``) left out; ``position=False``
    says what the object is, not where (a grounding phrase, whose box says where)."""
    words = ["a", *(w for w in (obj.size, obj.colour) if w is not None), obj.shape or GENERIC_NOUN]
    if position and obj.position is not None:
        words.append(position_phrase(obj.position))
    return " ".join(words)


def caption(spec: SceneSpec) -> str:
    """The one canonical caption of a complete scene."""
    return " and ".join(object_phrase(o) for o in spec.objects) + f" on a {spec.background} background"


# Free phrasing: how people write the same scene. Spellings per canonical word, and how often the free grammar
# leaves each attribute out (an attribute left out means "any", never "several").
SPELLINGS = {"gray": ("gray", "grey"), "centre": ("centre", "center", "middle"), "big": ("big", "large"),
             "small": ("small", "little")}
GENERIC_NOUN = "shape"  # "a red shape": colour named, shape left open
_DROP = {"size": 0.4, "position": 0.25, "background": 0.3, "colour": 0.08, "shape": 0.08}
_WORD = re.compile(r"[a-z]+|,")


def tokens(text: str) -> list[str]:
    """Words and commas, lower-cased: one token each in the bundled tokenizer."""
    return _WORD.findall(text.lower())


def free_caption(spec: SceneSpec, rng: np.random.Generator,
                 drop: dict[str, float] | None = None) -> tuple[str, SceneSpec, list[int]]:
    """A freely phrased caption of a complete scene: the text, the spec it names, and each object's last token.

    Attributes are left out at random (never colour and shape together; ``drop`` overrides the chance of leaving
    out any of them, which is otherwise the evaluation grammar's), spellings and prepositions vary, objects
    are joined by "and" or commas, and the case varies. The last-token indices count words and commas with the
    start-of-text token at 0, so they index the text encoder's states directly.
    """
    if drop is not None and not set(drop) <= set(_DROP):
        raise InvalidArgumentError(f"drop names {sorted(set(drop) - set(_DROP))}; it may name {', '.join(_DROP)}")
    rates = {**_DROP, **(drop or {})}
    words: list[str] = []
    named, ends = [], []

    def pick(options):
        return options[int(rng.integers(len(options)))]

    def spell(word):
        return pick(SPELLINGS.get(word, (word,)))

    for i, obj in enumerate(spec.objects):
        if i:
            words += pick([["and"], [","], [",", "and"]])
        left_out = {k: rng.random() < p for k, p in rates.items()}
        if left_out["colour"] and left_out["shape"]:
            left_out["shape"] = False
        size, colour, shape, position = (None if left_out[k] else getattr(obj, k)
                                         for k in ("size", "colour", "shape", "position"))
        phrase = [spell(w) for w in (size, colour) if w] + [shape or GENERIC_NOUN]
        if rng.random() < 0.85:
            phrase.insert(0, "an" if phrase[0][0] in "aeiou" else "a")
        if position:
            where = spell(position).split() if position != "centre" else [spell("centre")]
            lead = pick([[_PREPOSITION.get(position, "at the")]] * 3 + [["on the"], ["at the"], [","]])[0]
            phrase += lead.split() + where
        words += phrase
        ends.append(len(words))
        named.append(ObjectSpec(size, colour, shape, position))
    background = None if rng.random() < rates["background"] else spec.background
    if background:
        words += pick([["on", "a", "{}", "background"]] * 2 + [["on", "{}"], [",", "{}", "background"]])
        words = [spell(background) if w == "{}" else w for w in words]
    text = " ".join(words).replace(" ,", ",")
    style = rng.random()
    if style < 0.1:
        text = text.title()
    elif style < 0.3:
        text = text[0].upper() + text[1:]
    return text, SceneSpec(tuple(named), background), ends


# What each word of a free prompt means to the parser: (attribute, canonical value); None for words that only join.
_LEXICON: dict[str, tuple[str, str] | None] = {w: None for w in ("a", "an", "the", "on", "at", "in", "and", ",",
                                                                   "background", GENERIC_NOUN)}
for _kind, _values in (("size", SIZES), ("colour", COLOURS), ("shape", SHAPES), ("background", BACKGROUNDS)):
    _LEXICON.update({w: (_kind, v) for v in _values for w in SPELLINGS.get(v, (v,))})
_LEXICON.update({w: ("position", v) for v in ("top", "bottom", "left", "right", "centre")
                 for w in SPELLINGS.get(v, (v,))})


def parse_caption(text: str) -> SceneSpec:
    """Read a prompt about the shapes world, canonical or freely phrased, into the spec it names.

    Objects are read left to right: size, colour and the noun (a shape, or "shape" for any) describe the current
    object and a position may follow it; a describing word that the current object already has starts the next.
    "top"/"bottom" followed by "left"/"right" is one corner. Attributes a prompt leaves out are ``None`` (any).
    Raises :class:`InvalidArgumentError` naming a word outside the world's vocabulary or an object with neither
    colour nor shape.
    """
    objects: list[dict] = []
    background, previous = None, None
    for word in tokens(text):
        if word not in _LEXICON:
            known = sorted(w for w in _LEXICON if w != ",")
            raise InvalidArgumentError(f"unknown word {word!r} in {text!r}; the shapes world knows {known}")
        meaning = _LEXICON[word]
        current = objects[-1] if objects else None
        if word == GENERIC_NOUN or (meaning and meaning[0] in ("size", "colour", "shape")):
            kind = "shape" if word == GENERIC_NOUN else meaning[0]
            if current is None or "noun" in current or kind in current:
                current = {}
                objects.append(current)
            if word != GENERIC_NOUN:
                current[kind] = meaning[1]
            if kind == "shape":
                current["noun"] = True
        elif meaning and meaning[0] == "position":
            if current is not None and current.get("position") in ("top", "bottom") and previous in ("top", "bottom") \
                    and meaning[1] in ("left", "right"):
                current["position"] += " " + meaning[1]
            else:
                if current is None or "position" in current:
                    current = {}
                    objects.append(current)
                current["position"] = meaning[1]
        elif meaning:  # a background colour
            if background is not None and background != meaning[1]:
                raise InvalidArgumentError(f"{text!r} names two backgrounds, {background!r} and {meaning[1]!r}")
            background = meaning[1]
        previous = meaning[1] if meaning else word
    if not objects:
        raise InvalidArgumentError(f"{text!r} names no object; write e.g. {caption(_EXAMPLE)!r}")
    for o in objects:
        if "colour" not in o and "shape" not in o:
            raise InvalidArgumentError(f"an object in {text!r} has neither colour nor shape; name at least one")
    return SceneSpec(tuple(ObjectSpec(o.get("size"), o.get("colour"), o.get("shape"), o.get("position"))
                           for o in objects), background)


@lru_cache(maxsize=4)
def _pixel_centres(size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:size[0], 0:size[1]].astype(np.float32) + 0.5
    return ys, xs


def _star_polygon(cx: float, cy: float, r: float) -> np.ndarray:
    angles = -np.pi / 2 + np.arange(10) * np.pi / 5
    radii = np.where(np.arange(10) % 2 == 0, r, r * 0.45)
    return np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], 1)


def _inside_polygon(poly: np.ndarray, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """Even-odd point-in-polygon test for every pixel centre."""
    inside = np.zeros_like(xx, dtype=bool)
    for (x0, y0), (x1, y1) in zip(poly, np.roll(poly, -1, 0)):
        if y0 == y1:
            continue
        crosses = (yy >= min(y0, y1)) & (yy < max(y0, y1))
        x_at = x0 + (yy - y0) * (x1 - x0) / (y1 - y0)
        inside ^= crosses & (xx < x_at)
    return inside


def shape_mask(shape: str, cx: float, cy: float, r: float, size: tuple[int, int] = (RESOLUTION, RESOLUTION)) -> np.ndarray:
    """Boolean mask (``size`` = H, W) of one upright shape of half-extent ``r`` centred at (cx, cy)."""
    yy, xx = _pixel_centres(tuple(size))
    if shape == "circle":
        return (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
    if shape == "square":
        s = r * 0.85  # a square of the same half-extent looks bigger than the other shapes
        return (np.abs(xx - cx) <= s) & (np.abs(yy - cy) <= s)
    if shape == "triangle":
        h = r * 1.05
        return _inside_polygon(np.array([[cx, cy - h], [cx + h, cy + h * 0.8], [cx - h, cy + h * 0.8]]), yy, xx)
    if shape == "star":
        return _inside_polygon(_star_polygon(cx, cy + r * 0.1, r * 1.15), yy, xx)
    raise InvalidArgumentError(f"unknown shape {shape!r}; use one of {SHAPES}")


_EXAMPLE = SceneSpec((ObjectSpec("big", "red", "circle", "left"),), "white")
