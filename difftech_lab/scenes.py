"""The captioned-shapes world: its caption grammar, palette, 3×3 grid and the geometry of its shapes.

The truth both sides agree on: the procedural dataset (``training.dataset``) draws scenes from it and the adherence
scorer (``metrics``) reads images back against it, so neither has to depend on the other.
"""

from __future__ import annotations

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
    """One object of a scene: what the caption says about it."""

    size: str
    colour: str
    shape: str
    position: str


@dataclass(frozen=True)
class SceneSpec:
    """A whole scene: its objects in caption order and its background."""

    objects: tuple[ObjectSpec, ...]
    background: str


def object_phrase(obj: ObjectSpec) -> str:
    """The grammar's phrase for one object, e.g. ``a big red circle on the left``."""
    return f"a {obj.size} {obj.colour} {obj.shape} {_PREPOSITION.get(obj.position, 'at the')} {obj.position}"


def caption(spec: SceneSpec) -> str:
    """The one caption the grammar gives a scene."""
    return " and ".join(object_phrase(o) for o in spec.objects) + f" on a {spec.background} background"


def parse_caption(text: str) -> SceneSpec:
    """Invert :func:`caption`; raise :class:`InvalidArgumentError` naming the first word that breaks the grammar."""
    words = text.strip().lower().split()
    if len(words) < 4 or words[-4:-2] != ["on", "a"] or words[-1] != "background":
        raise InvalidArgumentError(f"caption {text!r} must end with 'on a <background> background'")
    background = words[-2]
    if background not in BACKGROUNDS:
        raise InvalidArgumentError(f"unknown background {background!r} in {text!r}; use one of {sorted(BACKGROUNDS)}")
    objects = [_parse_object(phrase.split(), text) for phrase in " ".join(words[:-4]).split(" and ")]
    return SceneSpec(tuple(objects), background)


def _parse_object(w: list[str], text: str) -> ObjectSpec:
    if len(w) < 6 or w[0] != "a":
        raise InvalidArgumentError(f"object phrase {' '.join(w)!r} in {text!r} must read 'a <size> <colour> <shape> on the <position>'")
    size, colour, shape, position = w[1], w[2], w[3], " ".join(w[6:])
    for kind, value, known in (("size", size, SIZES), ("colour", colour, COLOURS), ("shape", shape, SHAPES),
                               ("position", position, POSITIONS)):
        if value not in known:
            raise InvalidArgumentError(f"unknown {kind} {value!r} in {text!r}; use one of {sorted(known)}")
    obj = ObjectSpec(size, colour, shape, position)
    if " ".join(w[4:6]) != _PREPOSITION.get(position, "at the"):
        raise InvalidArgumentError(f"{' '.join(w)!r} in {text!r}: write {object_phrase(obj)!r}")
    return obj


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
