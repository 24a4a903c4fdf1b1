"""BoxEditor: draw, move, resize and label boxes over an image, for GLIGEN-style grounded generation."""

from __future__ import annotations

import math

import traitlets

from ..errors import InvalidArgumentError
from ._base import OverImage, background_traits, load_esm


def _boxes_from_json(value, widget=None):
    return [(str(phrase), [float(c) for c in box]) for phrase, box in value]


def normalise_box(phrase, box) -> tuple[str, list[float]]:
    """One ``(phrase, [x0, y0, x1, y1])`` entry with corners ordered and inside the unit square (GLIGEN)."""
    coords = [float(c) for c in box]
    if len(coords) != 4 or not all(math.isfinite(c) for c in coords):
        raise InvalidArgumentError(f"box {box!r} for {phrase!r} must be 4 finite numbers [x0, y0, x1, y1]")
    if not all(-1e-6 <= c <= 1 + 1e-6 for c in coords):
        raise InvalidArgumentError(f"box {box!r} for {phrase!r} is not normalised: divide pixels by width/height")
    x0, y0, x1, y1 = (min(max(c, 0.0), 1.0) for c in coords)
    return str(phrase), [min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)]


class BoxEditor(OverImage):
    """``.boxes == [(phrase, [x0, y0, x1, y1]), …]`` in [0, 1] image coordinates, top-left origin.

    Drag on empty space to draw a box (labelled with ``new_phrase``), drag a box to move it, drag a corner to
    resize it; edit or delete labels in the list below the image. A box's colour follows its label, never its
    place in the list: the colour the label names (red, green, blue, yellow, cyan, magenta, purple, orange,
    pink, brown, white, black, gray), else one picked by a stable hash of the label.

    Keyboard, once the picture has focus (click it, or Tab to it; clicking a box selects it, as does focusing
    its label in the list): ``Delete`` or ``Backspace`` removes the selected box; the arrow keys move it by one
    image pixel (with ``Shift``: ten); ``Escape`` deselects it. In the list, Enter commits an edited label.
    """

    _esm = load_esm("box_editor.js")

    boxes = traitlets.List().tag(sync=True, from_json=_boxes_from_json)
    new_phrase = traitlets.Unicode("object", help="label given to a newly drawn box").tag(sync=True)

    def __init__(self, image=None, boxes=(), *, width: int = 512, height: int = 512, **kwargs):
        size = {"width": width, "height": height}
        if image is not None:
            size = background_traits(image)
        super().__init__(**size, boxes=list(boxes), **kwargs)

    @traitlets.validate("boxes")
    def _check_boxes(self, proposal):
        entries = []
        for entry in proposal["value"]:
            if len(entry) != 2:
                raise InvalidArgumentError(f"box entry {entry!r} must be (phrase, [x0, y0, x1, y1])")
            entries.append(normalise_box(*entry))
        return entries

    def __repr__(self) -> str:
        return f"BoxEditor({len(self.boxes)} boxes)"
