"""Procedural captioned shapes: 64×64 scenes whose ground truth (spec, boxes, masks) is known exactly."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from difftech_lab.errors import InvalidArgumentError
from difftech_lab.scenes import (BACKGROUNDS, COLOURS, POSITIONS, RESOLUTION, SHAPES, SIZES, ObjectSpec, SceneSpec,
                                 caption, shape_mask)

ANCHORS = (14.0, 32.0, 50.0)  # pixel centre of each grid column/row
JITTER = 2.0  # uniform ± pixels around the anchor
HELD_OUT_MODULUS = 8  # a caption is held out for evaluation when its hash is 0 modulo this


@dataclass
class Sample:
    """One rendered scene with its ground truth; ``boxes`` are normalised xyxy, ``masks`` are ``[n, 64, 64]`` bool."""

    image: np.ndarray
    caption: str
    spec: SceneSpec
    boxes: np.ndarray
    masks: np.ndarray
    centres: np.ndarray


def is_held_out(text: str) -> bool:
    """Whether a caption belongs to the evaluation prompts that training never sees (a stable hash rule)."""
    return int(hashlib.md5(text.encode()).hexdigest()[:8], 16) % HELD_OUT_MODULUS == 0


def _far_apart(a: str, b: str) -> bool:
    """Objects in one scene sit two grid cells apart (in x or y), so even two big ones never touch."""
    (ax, ay), (bx, by) = POSITIONS[a], POSITIONS[b]
    return max(abs(ax - bx), abs(ay - by)) >= 2


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
        if all(_far_apart(p, q) for q in positions):
            positions.append(p)
        elif len(positions) and rng.random() < 0.3:
            positions = []  # a dead end (no free far cell) is rare; start over
    objects = tuple(ObjectSpec(str(rng.choice(list(SIZES))), str(c), str(rng.choice(SHAPES)), p)
                    for c, p in zip(colours, positions))
    return SceneSpec(objects, str(rng.choice(list(BACKGROUNDS))))


def render(spec: SceneSpec, rng: np.random.Generator | None = None) -> Sample:
    """Draw a scene (jittered around the grid anchors when ``rng`` is given) with its boxes and masks."""
    image = np.empty((RESOLUTION, RESOLUTION, 3), np.uint8)
    image[:] = BACKGROUNDS[spec.background]
    masks, boxes, centres = [], [], []
    for obj in spec.objects:
        col, row = POSITIONS[obj.position]
        jitter = rng.uniform(-JITTER, JITTER, 2) if rng is not None else np.zeros(2)
        cx, cy = ANCHORS[col] + jitter[0], ANCHORS[row] + jitter[1]
        m = shape_mask(obj.shape, cx, cy, SIZES[obj.size])
        image[m] = COLOURS[obj.colour]
        ys, xs = np.nonzero(m)
        masks.append(m)
        boxes.append([xs.min() / RESOLUTION, ys.min() / RESOLUTION, (xs.max() + 1) / RESOLUTION, (ys.max() + 1) / RESOLUTION])
        centres.append([cx / RESOLUTION, cy / RESOLUTION])
    return Sample(image, caption(spec), spec, np.array(boxes, np.float32), np.stack(masks), np.array(centres, np.float32))


def sample(seed: int, n_objects: int | None = None, *, training: bool = True) -> Sample:
    """The scene for one seed; training samples skip every held-out caption."""
    rng = np.random.default_rng(seed)
    while True:
        spec = random_spec(rng, n_objects)
        if not training or not is_held_out(caption(spec)):
            return render(spec, rng)


def batch(seed: int, n: int, n_objects: int | None = None) -> tuple[np.ndarray, list[str]]:
    """``n`` training scenes from one seed as a ``[n, 64, 64, 3]`` uint8 array and their captions."""
    samples = [sample(seed * 1_000_003 + i, n_objects) for i in range(n)]
    return np.stack([s.image for s in samples]), [s.caption for s in samples]


def held_out_specs(n_objects: int, count: int) -> list[SceneSpec]:
    """The fixed evaluation prompts with ``n_objects`` objects: the first ``count`` held-out captions of a fixed stream."""
    rng = np.random.default_rng(20_000 + n_objects)
    specs, seen = [], set()
    while len(specs) < count:
        spec = random_spec(rng, n_objects)
        text = caption(spec)
        if is_held_out(text) and text not in seen:
            seen.add(text)
            specs.append(spec)
    return specs
