"""Procedural captioned shapes: 64×64 scenes whose ground truth (spec, boxes, masks) is known exactly."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from difftech_lab.errors import InvalidArgumentError
from difftech_lab.scenes import (BACKGROUNDS, COLOURS, POSITIONS, RESOLUTION, SHAPES, SIZES, ObjectSpec, SceneSpec,
                                 caption, free_caption, far_apart, object_phrase, parse_caption, phrase, scene_key,
                                 shape_mask)

ANCHORS = (14.0, 32.0, 50.0)  # pixel centre of each grid column/row
JITTER = 2.0  # uniform ± pixels around the anchor
HELD_OUT_MODULUS = 8  # a scene is held out for evaluation when its hash is 0 modulo this
FREE_PHRASING = 0.5  # the share of training captions written in free phrasing (the rest canonical)


@dataclass
class Sample:
    """One rendered scene with its ground truth; ``boxes`` are normalised xyxy, ``masks`` are ``[n, 64, 64]`` bool."""

    image: np.ndarray
    caption: str
    spec: SceneSpec
    named: SceneSpec  # what the caption says (free phrasing may leave attributes open)
    ends: list[int]  # each object's last token in the caption (start-of-text = 0)
    boxes: np.ndarray
    masks: np.ndarray
    centres: np.ndarray


def is_held_out(scene: SceneSpec | str) -> bool:
    """Whether a scene belongs to the evaluation that no training stage sees, in any phrasing or object order.

    The rule hashes the scene (its objects as a set, and its background), not a caption string, so "a red circle
    on the left and a blue square on the right" and the same two objects listed the other way round fall on the
    same side. A caption string is parsed first and must name the whole scene.
    """
    spec = parse_caption(scene) if isinstance(scene, str) else scene
    if not spec.complete:
        raise InvalidArgumentError(f"{scene!r} leaves attributes open; the split is defined on whole scenes")
    return int(hashlib.md5(scene_key(spec).encode()).hexdigest()[:8], 16) % HELD_OUT_MODULUS == 0


def random_spec(rng: np.random.Generator, n_objects: int | None = None) -> SceneSpec:
    """A random scene: 1–3 objects of distinct colours at far-apart positions, on a background."""
    n = int(rng.choice([1, 2, 3], p=[0.4, 0.4, 0.2])) if n_objects is None else n_objects
    if n not in (1, 2, 3):
        raise InvalidArgumentError(f"n_objects={n_objects!r}; a scene has 1, 2 or 3 objects")
    colours = rng.choice(list(COLOURS), size=n, replace=False)
    positions: list[str] = []
    names = list(POSITIONS)
    while len(positions) < n:
        p = names[rng.integers(len(names))]
        if all(far_apart(p, q) for q in positions):
            positions.append(p)
        elif len(positions) and rng.random() < 0.3:
            positions = []  # a dead end (no free far cell) is rare; start over
    objects = tuple(ObjectSpec(str(rng.choice(list(SIZES))), str(c), str(rng.choice(SHAPES)), p)
                    for c, p in zip(colours, positions))
    return SceneSpec(objects, str(rng.choice(list(BACKGROUNDS))))


def canonical_ends(spec: SceneSpec) -> list[int]:
    """Each object's last token in the canonical caption (start-of-text = 0)."""
    ends, n = [], 0
    for obj in spec.objects:
        n += len(object_phrase(obj).split())
        ends.append(n)
        n += 1  # "and"
    return ends


def render(spec: SceneSpec, rng: np.random.Generator | None = None, free: bool = False,
           drop: dict[str, float] | None = None) -> Sample:
    """Draw a scene (jittered around the grid anchors when ``rng`` is given) with its boxes and masks.

    ``free`` writes the caption in free phrasing (drawn from ``rng`` after the jitter, leaving attributes out at
    the rates ``drop`` sets, see :func:`scenes.free_caption`); otherwise it is canonical.
    """
    centres = []
    for obj in spec.objects:
        col, row = POSITIONS[obj.position]
        jitter = rng.uniform(-JITTER, JITTER, 2) if rng is not None else np.zeros(2)
        centres.append((ANCHORS[col] + jitter[0], ANCHORS[row] + jitter[1]))
    image, boxes, masks = draw(spec, centres)
    text, named, ends = free_caption(spec, rng, drop) if free and rng is not None else (caption(spec), spec, canonical_ends(spec))
    return Sample(image, text, spec, named, ends, boxes, masks, np.array(centres, np.float32) / RESOLUTION)


def draw(spec: SceneSpec, centres) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The image of ``spec``'s objects at pixel ``centres`` on its background, each object's tight box
    (normalised xyxy) and mask."""
    image = np.empty((RESOLUTION, RESOLUTION, 3), np.uint8)
    image[:] = BACKGROUNDS[spec.background]
    masks, boxes = [], []
    for obj, (cx, cy) in zip(spec.objects, centres):
        m = shape_mask(obj.shape, cx, cy, SIZES[obj.size])
        image[m] = COLOURS[obj.colour]
        ys, xs = np.nonzero(m)
        masks.append(m)
        boxes.append([xs.min() / RESOLUTION, ys.min() / RESOLUTION, (xs.max() + 1) / RESOLUTION, (ys.max() + 1) / RESOLUTION])
    return image, np.array(boxes, np.float32), np.stack(masks)


def sample(seed: int, n_objects: int | None = None, *, training: bool = True, free: bool | None = None,
           drop: dict[str, float] | None = None) -> Sample:
    """The scene for one seed; training samples skip every held-out scene and mix canonical and free captions.

    ``free`` forces the caption style; by default training samples are free with probability ``FREE_PHRASING``
    and other samples canonical.
    """
    rng = np.random.default_rng(seed)
    while True:
        spec = random_spec(rng, n_objects)
        if not training or not is_held_out(spec):
            if free is None:
                free = training and rng.random() < FREE_PHRASING
            return render(spec, rng, free, drop)


def batch(seed: int, n: int, n_objects: int | None = None,
          drop: dict[str, float] | None = None) -> tuple[np.ndarray, list[str]]:
    """``n`` training scenes from one seed as a ``[n, 64, 64, 3]`` uint8 array and their captions (free ones
    leaving attributes out at the rates ``drop`` sets)."""
    samples = [sample(seed * 1_000_003 + i, n_objects, drop=drop) for i in range(n)]
    return np.stack([s.image for s in samples]), [s.caption for s in samples]


def held_out_specs(n_objects: int, count: int) -> list[SceneSpec]:
    """The fixed evaluation scenes with ``n_objects`` objects: the first ``count`` distinct held-out scenes of a fixed
    stream (there are 216 held-out single-object scenes)."""
    rng = np.random.default_rng(20_000 + n_objects)
    specs, seen = [], set()
    for _ in range(1_000_000):
        spec = random_spec(rng, n_objects)
        if is_held_out(spec) and scene_key(spec) not in seen:
            seen.add(scene_key(spec))
            specs.append(spec)
            if len(specs) == count:
                return specs
    raise InvalidArgumentError(f"only {len(specs)} held-out scenes with {n_objects} objects; ask for at most that many")


def held_out_free_prompts(n_objects: int, count: int) -> list[tuple[str, SceneSpec]]:
    """Free-phrasing evaluation prompts: held-out scenes written by the free grammar with a fixed stream, as
    (text, the spec the text names). The canonical sets use other draws of the same held-out scenes."""
    rng = np.random.default_rng(30_000 + n_objects)
    return [free_caption(spec, rng)[:2] for spec in held_out_specs(n_objects, count)]


# Free layouts, for grounding: one to four objects of any size at any place (apart from each other), which the
# caption grammar cannot say; the boxes say it.
LAYOUT_COUNTS = {1: 0.15, 2: 0.3, 3: 0.3, 4: 0.25}
LAYOUT_GAP = 2.0  # pixels between two objects' extents
_CELL_NAMES = {cell: name for name, cell in POSITIONS.items()}


@dataclass
class LayoutSample:
    """A free-layout scene: the rendered truth, the caption, one grounding phrase and tight box per object."""

    image: np.ndarray
    caption: str
    spec: SceneSpec  # positions are the grid cells of the object centres
    phrases: list[str]
    boxes: np.ndarray  # [n, 4] normalised xyxy


def cell_of(x: float, y: float) -> str:
    """The grid position whose cell holds the point (x, y), in [0, 1]."""
    return _CELL_NAMES[(min(int(x * 3), 2), min(int(y * 3), 2))]


def layout_sample(seed: int) -> LayoutSample:
    """One free-layout training scene. Sizes are named in half the captions and phrases (the box tells the size
    otherwise), positions (the centre's cell) in half the captions; phrases never name a position."""
    rng = np.random.default_rng(seed)
    n = int(rng.choice(list(LAYOUT_COUNTS), p=list(LAYOUT_COUNTS.values())))
    colours = rng.choice(list(COLOURS), size=n, replace=False)
    objects, centres, extents = [], [], []
    for colour in colours:
        for _ in range(100):
            size, shape = str(rng.choice(list(SIZES))), str(rng.choice(SHAPES))
            r = SIZES[size] * 1.15  # the widest shape's half-extent (the star)
            cx, cy = rng.uniform(r, RESOLUTION - r, 2)
            if all(max(abs(cx - x) - r - e, abs(cy - y) - r - e) >= LAYOUT_GAP for (x, y), e in zip(centres, extents)):
                objects.append(ObjectSpec(size, str(colour), shape, cell_of(cx / RESOLUTION, cy / RESOLUTION)))
                centres.append((float(cx), float(cy)))
                extents.append(r)
                break
    spec = SceneSpec(tuple(objects), str(rng.choice(list(BACKGROUNDS))))
    image, boxes, _ = draw(spec, centres)
    with_size, with_position = rng.random() < 0.5, rng.random() < 0.5
    named = [ObjectSpec(o.size if with_size else None, o.colour, o.shape, o.position) for o in objects]
    text = " and ".join(phrase(o, position=with_position) for o in named) + f" on a {spec.background} background"
    return LayoutSample(image, text, spec, [phrase(o, position=False) for o in named], boxes)
