"""Notebook 7 smoke test: a MaskPainter renders, a stroke reaches Python, a Python change re-renders."""

import pytest

pytestmark = pytest.mark.browser

CELLS = [
    "from difftech_lab.widgets.mask_painter import MaskPainter\n"
    "import numpy as np\n"
    "painter = MaskPainter(width=80, height=60, display_size=240, brush_size=10)\npainter",
]


def test_mask_painter_in_notebook7(lab):
    nb = lab.open(CELLS, ui="notebook")
    nb.run_all()
    painter = nb.widget("mask-painter")
    box = painter.get_by_test_id("canvas").bounding_box()
    nb.page.mouse.move(box["x"] + 0.2 * box["width"], box["y"] + 0.3 * box["height"])
    nb.page.mouse.down()
    nb.page.mouse.move(box["x"] + 0.8 * box["width"], box["y"] + 0.7 * box["height"], steps=6)
    nb.page.mouse.up()
    assert nb.wait_until("float(painter.mask.max())", lambda v: v == 1.0) == 1.0
    assert nb.py("painter.mask[30, 40].item()") == 1.0     # the stroke's midpoint
    nb.execute("painter.mask = np.ones((60, 80), np.float32)")
    painter.get_by_test_id("readout").filter(has_text="mean 1.000").wait_for(timeout=10_000)
    nb.screenshot("notebook7_mask_painter")
