"""Layout test sets of the shapes world: scenes the caption grammar shows and scenes it never does, with the
regions and boxes that describe them.

Training scenes hold one to three objects two grid cells apart. The sets here measure what regional prompting
and grounding add beyond that: three objects as in the grammar, four objects in the four corners, two objects
in neighbouring cells, and boxes of free size and place. Each scene is a :class:`Layout`: the scene the scorer
checks (its positions are the grid cells of the box centres; sizes are left open, so any) and one box per object.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import InvalidArgumentError
from .scenes import BACKGROUNDS, COLOURS, POSITIONS, SHAPES, ObjectSpec, SceneSpec, phrase

_CELLS = {cell: name for name, cell in POSITIONS.items()}


@dataclass(frozen=True)
class Layout:
    """A scene with a box (x0, y0, x1, y1) in [0, 1] per object, in the scene's object order."""

    scene: SceneSpec
    boxes: tuple[tuple[float, float, float, float], ...]

    @property
    def prompt(self) -> str:
        """The whole scene in one prompt, as a user would write it without regions."""
        return " and ".join(phrase(o) for o in self.scene.objects) + f" on a {self.scene.background} background"

    def prompt_in_parts(self, parts: int = 2) -> str:
        """The prompt with its objects in ``parts`` groups of near-equal size joined by BREAK (each part is encoded
        on its own), the background after the last: for a scene past the captions the model was trained on,
        each part reads like one it knows (four corners: two parts of two objects)."""
        objects = self.scene.objects
        if not 1 <= parts <= len(objects):
            raise InvalidArgumentError(f"parts={parts!r}: must be from 1 to the scene's {len(objects)} objects")
        groups = np.array_split(np.arange(len(objects)), parts)
        return " BREAK ".join(" and ".join(phrase(objects[i]) for i in group) for group in groups) + \
            f" on a {self.scene.background} background"

    def regions(self) -> list[tuple[str, tuple[float, float, float, float]]]:
        """One region per object: the object alone on the background, written as the grammar writes a
        one-object scene, over its box."""
        return [(f"{phrase(o)} on a {self.scene.background} background", box)
                for o, box in zip(self.scene.objects, self.boxes)]

    def phrases(self) -> list[tuple[str, tuple[float, float, float, float]]]:
        """One grounding phrase per object (what the object is, not where: the box says where)."""
        return [(phrase(o, position=False), box) for o, box in zip(self.scene.objects, self.boxes)]

    @property
    def base_prompt(self) -> str:
        return f"on a {self.scene.background} background"


def cell_box(position: str) -> tuple[float, float, float, float]:
    """The grid cell of a position as a box in [0, 1]."""
    if position not in POSITIONS:
        raise InvalidArgumentError(f"position {position!r} is not one of {', '.join(POSITIONS)}")
    col, row = POSITIONS[position]
    return (col / 3, row / 3, (col + 1) / 3, (row + 1) / 3)


def _objects(rng, positions) -> tuple[ObjectSpec, ...]:
    colours = rng.choice(list(COLOURS), size=len(positions), replace=False)
    return tuple(ObjectSpec(None, str(c), str(rng.choice(SHAPES)), p) for c, p in zip(colours, positions))


def _at_cells(rng, positions) -> Layout:
    scene = SceneSpec(_objects(rng, positions), str(rng.choice(list(BACKGROUNDS))))
    return Layout(scene, tuple(cell_box(p) for p in positions))


def in_grammar(count: int, seed: int = 0) -> list[Layout]:
    """Three objects at far-apart cells, as training scenes are (held-out scenes, sizes left open)."""
    from .training.dataset import held_out_specs

    layouts = []
    for spec in held_out_specs(3, count):
        objects = tuple(ObjectSpec(None, o.colour, o.shape, o.position) for o in spec.objects)
        layouts.append(Layout(SceneSpec(objects, spec.background), tuple(cell_box(o.position) for o in objects)))
    return layouts


def four_corners(count: int, seed: int = 0) -> list[Layout]:
    """Four objects, one in each corner cell: one more object than any training scene."""
    rng = np.random.default_rng(60_000 + seed)
    corners = ["top left", "top right", "bottom left", "bottom right"]
    return [_at_cells(rng, list(rng.permutation(corners))) for _ in range(count)]


def neighbours(count: int, seed: int = 0) -> list[Layout]:
    """Two objects in neighbouring cells (sharing an edge), which training scenes never have."""
    rng = np.random.default_rng(61_000 + seed)
    pairs = [(a, b) for a, (ax, ay) in POSITIONS.items() for b, (bx, by) in POSITIONS.items()
             if abs(ax - bx) + abs(ay - by) == 1 and a < b]
    return [_at_cells(rng, list(pairs[rng.integers(len(pairs))])) for _ in range(count)]


def free_boxes(count: int, seed: int = 0) -> list[Layout]:
    """Two or three objects in boxes of free size (¼ to ⅖ of the side) and place, apart from each other and
    from the cell borders' ambiguity (each box centre at least 0.04 inside its cell)."""
    rng = np.random.default_rng(62_000 + seed)
    layouts = []
    while len(layouts) < count:
        n = int(rng.integers(2, 4))
        boxes: list[tuple[float, float, float, float]] = []
        for _ in range(200):
            if len(boxes) == n:
                break
            w, h = rng.uniform(0.25, 0.4, size=2)
            x0, y0 = rng.uniform(0, 1 - w), rng.uniform(0, 1 - h)
            box = (float(x0), float(y0), float(x0 + w), float(y0 + h))
            cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
            near_border = min(abs(cx * 3 - round(cx * 3)), abs(cy * 3 - round(cy * 3))) < 0.12
            overlaps = any(box[0] < b[2] + 0.03 and b[0] < box[2] + 0.03 and box[1] < b[3] + 0.03
                           and b[1] < box[3] + 0.03 for b in boxes)
            cell = (min(int(cx * 3), 2), min(int(cy * 3), 2))
            same_cell = any((min(int((b[0] + b[2]) * 1.5), 2), min(int((b[1] + b[3]) * 1.5), 2)) == cell
                            for b in boxes)
            if not (near_border or overlaps or same_cell):
                boxes.append(box)
        if len(boxes) < n:
            continue
        positions = [_CELLS[(min(int((b[0] + b[2]) * 1.5), 2), min(int((b[1] + b[3]) * 1.5), 2))] for b in boxes]
        scene = SceneSpec(_objects(rng, positions), str(rng.choice(list(BACKGROUNDS))))
        layouts.append(Layout(scene, tuple(boxes)))
    return layouts


SETS = {"three objects, in grammar": in_grammar, "four corners": four_corners,
        "neighbouring cells": neighbours, "free boxes": free_boxes}
