"""The layout test sets: each set holds the scenes it says, and a scene drawn into its own boxes scores right
(the scorer and the sets agree on the truth); the side-by-side table of per-set comparisons."""

import numpy as np
import pytest

from difftech_lab import layouts, metrics
from difftech_lab.automation import compare_calls, side_by_side
from difftech_lab.errors import InvalidArgumentError
from difftech_lab.scenes import BACKGROUNDS, COLOURS, POSITIONS, shape_mask


def draw(layout: layouts.Layout) -> np.ndarray:
    """The scene drawn as the dataset draws it, each object big enough to read, at its box centre."""
    image = np.empty((64, 64, 3), np.uint8)
    image[:] = BACKGROUNDS[layout.scene.background]
    for obj, (x0, y0, x1, y1) in zip(layout.scene.objects, layout.boxes):
        r = 0.4 * 64 * min(x1 - x0, y1 - y0)
        image[shape_mask(obj.shape, (x0 + x1) * 32, (y0 + y1) * 32, r)] = COLOURS[obj.colour]
    return image


@pytest.mark.parametrize("name", list(layouts.SETS))
def test_every_scene_drawn_into_its_boxes_scores_right(name):
    for layout in layouts.SETS[name](40):
        assert metrics.score(draw(layout), layout.scene).correct, layout
        assert metrics.score(draw(layout), layout.prompt).correct  # the prompt names the same scene
        for prompt, box in layout.regions():
            assert prompt.endswith(f"on a {layout.scene.background} background")


def test_the_sets_hold_the_layouts_they_name():
    for layout in layouts.four_corners(20):
        assert sorted(o.position for o in layout.scene.objects) == ["bottom left", "bottom right", "top left",
                                                                     "top right"]
    for layout in layouts.neighbours(20):
        (ax, ay), (bx, by) = (POSITIONS[o.position] for o in layout.scene.objects)
        assert abs(ax - bx) + abs(ay - by) == 1
    for layout in layouts.free_boxes(20):
        assert len(layout.boxes) in (2, 3) and len({o.position for o in layout.scene.objects}) == len(layout.boxes)
        for a, b in [(a, b) for i, a in enumerate(layout.boxes) for b in layout.boxes[i + 1:]]:
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]  # disjoint
    assert layouts.in_grammar(5) == layouts.in_grammar(5) and layouts.free_boxes(5, seed=1) != layouts.free_boxes(5)
    assert layouts.cell_box("top right") == (2 / 3, 0.0, 1.0, 1 / 3)


def test_side_by_side_lists_each_set_with_the_nfe_range():
    class Fake:
        def __init__(self, nfe):
            self.images, self.nfe, self.timings = [np.zeros((2, 2, 3), np.uint8)], nfe, {"total": 1.0}

    cases = [1, 2, 3]
    methods = {"a": lambda s, c, i: Fake(10), "b": lambda s, c, i: Fake(10 * c)}
    tables = {"x": compare_calls(None, cases, methods, metric=lambda image, c: {"v": c % 2}, progress=False),
              "y": compare_calls(None, cases[:2], methods, metric=lambda image, c: {"v": 1.0}, progress=False)}
    text = side_by_side(tables, "v")
    assert text.splitlines()[0].split() == ["method", "NFE", "x", "y"]
    assert text.splitlines()[2].split()[:2] == ["a", "10"]
    assert text.splitlines()[3].split()[:2] == ["b", "15–20"]
    assert tables["x"].rows[0].metrics["v"][0] == pytest.approx(2 / 3) and tables["x"].rows[0].n == 3


def test_prompt_in_parts_groups_the_objects_evenly_before_one_background():
    layout = layouts.four_corners(1)[0]
    assert layout.prompt_in_parts(1) == layout.prompt
    halves = layout.prompt_in_parts().split(" BREAK ")
    assert [part.count(" and ") for part in halves] == [1, 1]  # two objects each; the background ends the last
    assert halves[1].endswith(f"on a {layout.scene.background} background") and "background" not in halves[0]
    assert metrics.score(draw(layout), layout.prompt_in_parts().replace(" BREAK ", " and ")).correct
    with pytest.raises(InvalidArgumentError, match="parts=5"):
        layout.prompt_in_parts(5)
