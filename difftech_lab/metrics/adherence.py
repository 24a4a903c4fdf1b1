"""Deterministic prompt-adherence scorer for the shapes world: per object size, colour, shape and position, the
object count, and the background.

Pixel rules read colour, background and position (nearest palette colour, connected components, the 3×3 grid);
shape is the best intersection-over-union against the world's own shapes drawn with the object's area and centroid;
size compares the object's area with the two sizes of its shape (the geometric mean between them decides).

Blended edges: a pixel between an object's colour and the background's belongs to the object when it is nearer the
object's colour, so an edge blended half-way is split evenly and area, centroid and shape stay those of the hard-
edged object. The rule is checked on the dataset's own scenes drawn anti-aliased (4× supersampled) and blurred
(tests/unit/test_adherence.py), never tuned on a model's images.

Two verdicts per image:
- **strict** (``Score.correct``): as many objects as the prompt names, no more; each matched to one prompt object
  with every attribute the prompt names right (size included); the background right when named.
- **lenient** (``Score.lenient``): each prompt object's colour, shape and position right on its best-matching
  detection; extra objects, size and background ignored (the first model card's "image all-right").
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from itertools import permutations

import numpy as np
from PIL import Image

from difftech_lab.errors import InvalidArgumentError, ShapeError
from difftech_lab import scenes

_NAMES = list(scenes.COLOURS) + list(scenes.BACKGROUNDS)
_PALETTE = np.array([*scenes.COLOURS.values(), *scenes.BACKGROUNDS.values()], np.float32)
_N_OBJECT_COLOURS = len(scenes.COLOURS)
_GRID_NAMES = {v: k for k, v in scenes.POSITIONS.items()}
MIN_AREA = 0.004  # an object covers at least this fraction of the image (a small triangle covers ~0.027)


ATTRIBUTES = ("size", "colour", "shape", "position")


@dataclass(frozen=True)
class Detection:
    """One object found in an image: its size, colour, shape, grid position, centre (x, y in [0, 1]) and area
    fraction (edge pixels nearer its colour included)."""

    colour: str
    shape: str
    position: str
    centre: tuple[float, float]
    area: float
    size: str


@dataclass(frozen=True)
class ObjectScore:
    """How one object of the prompt came out; ``found`` is the detection it was matched with (or None).

    Each attribute is True/False, or None where the prompt leaves it open.
    """

    wanted: scenes.ObjectSpec
    found: Detection | None
    size: bool | None
    colour: bool | None
    shape: bool | None
    position: bool | None

    @property
    def correct(self) -> bool:
        """Every attribute the prompt names right."""
        return self.found is not None and all(getattr(self, a) is not False for a in ATTRIBUTES)

    @property
    def lenient(self) -> bool:
        """Colour, shape and position right where named; size ignored."""
        return self.found is not None and all(getattr(self, a) is not False for a in ("colour", "shape", "position"))


@dataclass(frozen=True)
class Score:
    """The adherence of one image to one prompt; ``background`` is None when the prompt names none."""

    objects: tuple[ObjectScore, ...]
    background: bool | None
    detected_background: str
    detections: tuple[Detection, ...]
    lenient_objects: tuple[ObjectScore, ...] = ()

    @property
    def count(self) -> bool:
        """As many objects in the image as the prompt names."""
        return len(self.detections) == len(self.objects)

    @property
    def correct(self) -> bool:
        """Strict: the count right, every named attribute of every object right, the background right if named."""
        return self.count and all(o.correct for o in self.objects) and self.background is not False

    @property
    def lenient(self) -> bool:
        """Each prompt object's colour, shape and position right somewhere in the image; extras, size and background
        ignored."""
        return all(o.lenient for o in self.lenient_objects or self.objects)


def _as_array(image) -> np.ndarray:
    arr = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image)
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise ShapeError(f"image of shape {arr.shape} is not H×W×3 RGB; pass a PIL image or an [H, W, 3] array")
    if arr.dtype != np.uint8:
        arr = np.clip(arr * 255 if arr.max() <= 1.0 else arr, 0, 255).round().astype(np.uint8)  # floats in [0, 1]
    return arr.astype(np.float32)


def palette_error(images) -> list[float]:
    """Per image, the mean distance (RGB, in [0, 1] units of the 0–255 range) of each pixel to its nearest colour of
    the world's palette: 0 for a rendered scene (edges aside), higher for washed-out, burnt or off-colour images."""
    out = []
    for image in images:
        rgb = _as_array(image)
        d = np.sqrt(((rgb[:, :, None, :] - _PALETTE) ** 2).sum(-1)).min(-1)
        out.append(float(d.mean() / 255.0))
    return out


def _components(mask: np.ndarray) -> np.ndarray:
    """4-connected component labels (0 = outside) by propagating the largest pixel index to a fixed point."""
    h, w = mask.shape
    labels = np.where(mask, np.arange(1, h * w + 1).reshape(h, w), 0)
    while True:
        p = np.pad(labels, 1)
        grown = np.maximum.reduce([labels, p[:-2, 1:-1], p[2:, 1:-1], p[1:-1, :-2], p[1:-1, 2:]]) * mask
        if np.array_equal(grown, labels):
            return labels
        labels = grown


def _erode(mask: np.ndarray) -> np.ndarray:
    p = np.pad(mask, 1)
    return mask & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]


def _dilate(mask: np.ndarray) -> np.ndarray:
    p = np.pad(mask, 1)
    return mask | p[:-2, 1:-1] | p[2:, 1:-1] | p[1:-1, :-2] | p[1:-1, 2:]


@lru_cache(maxsize=1)
def _shape_geometry() -> dict[str, tuple[float, float, float]]:
    """Per shape: area / r² and the centroid's offset from the drawing centre in units of r (measured, r = 26)."""
    r, c = 26.0, scenes.RESOLUTION / 2
    geometry = {}
    for shape in scenes.SHAPES:
        ys, xs = np.nonzero(scenes.shape_mask(shape, c, c, r))
        geometry[shape] = (len(xs) / r**2, (xs.mean() + 0.5 - c) / r, (ys.mean() + 0.5 - c) / r)
    return geometry


@lru_cache(maxsize=1)
def _size_thresholds() -> dict[str, float]:
    """Per shape: the area (fraction of a 64×64 image) between its small and its big rendering (geometric mean)."""
    c, n = scenes.RESOLUTION / 2, scenes.RESOLUTION ** 2
    return {shape: float(np.sqrt(scenes.shape_mask(shape, c, c, scenes.SIZES["big"]).sum()
                                 * scenes.shape_mask(shape, c, c, scenes.SIZES["small"]).sum())) / n
            for shape in scenes.SHAPES}


def classify_size(shape: str, area: float) -> str:
    """"big" or "small" for an object of ``shape`` covering ``area`` of the image (scale-free: a fraction)."""
    return "big" if area >= _size_thresholds()[shape] else "small"


def classify_shape(mask: np.ndarray) -> str:
    """The grammar shape that, drawn with the mask's area and centroid, overlaps the mask best (IoU).

    Matching area and centroid instead of the bounding box keeps a stray edge pixel from reshaping the template.
    """
    ys, xs = np.nonzero(mask)
    area, cx, cy = len(xs), xs.mean() + 0.5, ys.mean() + 0.5
    best, best_iou = scenes.SHAPES[0], -1.0
    for shape, (k, ox, oy) in _shape_geometry().items():
        r = float(np.sqrt(area / k))
        template = scenes.shape_mask(shape, cx - ox * r, cy - oy * r, r, size=mask.shape)
        iou = (template & mask).sum() / (template | mask).sum()
        if iou > best_iou:
            best, best_iou = shape, iou
    return best


def detect(image) -> tuple[str, list[Detection]]:
    """The background colour name and the objects found in an image, largest first."""
    rgb = _as_array(image)
    h, w, _ = rgb.shape
    nearest = ((rgb[:, :, None, :] - _PALETTE) ** 2).sum(-1).argmin(-1)
    border = np.concatenate([nearest[0], nearest[-1], nearest[:, 0], nearest[:, -1]])
    background = int(np.bincount(border, minlength=len(_NAMES)).argmax())
    found = []
    for c in range(_N_OBJECT_COLOURS):
        if c == background:
            continue
        mask = nearest == c
        # Opening drops the thin rings that blurred edges leave in in-between colours; tips come back below.
        core = _dilate(_erode(mask))
        if core.sum() < MIN_AREA * h * w:
            continue
        labels = _components(mask & _dilate(_dilate(core)))
        ids, counts = np.unique(labels[labels > 0], return_counts=True)
        for i, n in zip(ids, counts):
            if n < MIN_AREA * h * w or not (core & (labels == i)).any():
                continue
            # Edge pixels blended with the background belong to the object when nearer its colour than the
            # background's: without them small squares lose their corners and read as circles.
            near = _dilate(_dilate(labels == i))
            comp = near & (((rgb - _PALETTE[c]) ** 2).sum(-1) < ((rgb - _PALETTE[background]) ** 2).sum(-1))
            ys, xs = np.nonzero(comp)
            cx, cy = (xs.mean() + 0.5) / w, (ys.mean() + 0.5) / h
            cell = (min(int(cx * 3), 2), min(int(cy * 3), 2))
            shape, area = classify_shape(comp), len(xs) / (h * w)
            found.append(Detection(_NAMES[c], shape, _GRID_NAMES[cell], (float(cx), float(cy)), area,
                                   classify_size(shape, area)))
    found.sort(key=lambda d: -d.area)
    return _NAMES[background], found[:6]


def _as_spec(prompt_or_spec) -> scenes.SceneSpec:
    if isinstance(prompt_or_spec, scenes.SceneSpec):
        return prompt_or_spec
    if isinstance(prompt_or_spec, str):
        return scenes.parse_caption(prompt_or_spec)
    raise InvalidArgumentError(f"cannot score against {prompt_or_spec!r}; pass a caption string or a SceneSpec")


def _object_score(want: scenes.ObjectSpec, det: Detection | None) -> ObjectScore:
    if det is None:
        return ObjectScore(want, None, *(False if getattr(want, a) is not None else None for a in ATTRIBUTES))
    return ObjectScore(want, det, *(getattr(det, a) == getattr(want, a) if getattr(want, a) is not None else None
                                    for a in ATTRIBUTES))


def _match(spec: scenes.SceneSpec, dets: list[Detection], attributes: tuple[str, ...]) -> tuple[ObjectScore, ...]:
    """The one-to-one assignment of detections to prompt objects with the most named attributes right."""
    options = list(dets) + [None] * len(spec.objects)
    best, best_key = None, None
    for perm in permutations(range(len(options)), len(spec.objects)):
        objs = tuple(_object_score(o, options[j]) for o, j in zip(spec.objects, perm))
        # Colour decides identity first; then the other attributes; then the larger detections.
        key = (sum(3 * bool(o.colour) + sum(bool(getattr(o, a)) for a in attributes if a != "colour") for o in objs),
               sum(o.found.area for o in objs if o.found is not None))
        if best_key is None or key > best_key:
            best, best_key = objs, key
    return best


def score(image, prompt_or_spec) -> Score:
    """Score an image against a prompt (any phrasing :func:`scenes.parse_caption` reads) or a SceneSpec."""
    spec = _as_spec(prompt_or_spec)
    background, dets = detect(image)
    return Score(_match(spec, dets, ATTRIBUTES), None if spec.background is None else background == spec.background,
                 background, tuple(dets), _match(spec, dets, ("colour", "shape", "position")))


def adherence_value(image, prompt_or_spec) -> float:
    """A graded adherence in [0, 1] for ranking images: the mean of the count being right, every attribute the
    prompt names for every object, and the background if named (1 exactly when the strict verdict is right)."""
    s = score(image, prompt_or_spec)
    checks = [s.count] + [getattr(o, a) for o in s.objects for a in ATTRIBUTES if getattr(o, a) is not None]
    if s.background is not None:
        checks.append(s.background)
    return float(sum(bool(c) for c in checks) / len(checks))


def _rate(values) -> float | None:
    named = [v for v in values if v is not None]
    return float(np.mean(named)) if named else None


def score_batch(images, prompts) -> dict[str, float]:
    """Rates over a batch. Per object (over the objects whose prompt names the attribute): size, colour, shape,
    position, object (every named attribute); per image: count, background (where named), strict, lenient."""
    if len(images) != len(prompts):
        raise InvalidArgumentError(f"{len(images)} images but {len(prompts)} prompts; pass one prompt per image")
    return batch_rates([score(i, p) for i, p in zip(images, prompts)])


def batch_rates(scores: list[Score]) -> dict[str, float]:
    """:func:`score_batch`'s rates from scores already made."""
    objects = [o for s in scores for o in s.objects]
    rates = {"n": len(scores)}
    rates.update({a: _rate(getattr(o, a) for o in objects) for a in ATTRIBUTES})
    rates.update({"object": _rate(o.correct for o in objects), "count": _rate(s.count for s in scores),
                  "background": _rate(s.background for s in scores), "strict": _rate(s.correct for s in scores),
                  "lenient": _rate(s.lenient for s in scores)})
    return rates
