"""MaskPainter's JS on a static page with a fake model: strokes, erase, soft brush, undo/redo, invert, feather."""

import numpy as np
import pytest
from PIL import Image

from difftech_lab.widgets.mask_painter import MaskPainter


@pytest.fixture
def painter(static_widget):
    widget = MaskPainter(Image.new("RGB", (64, 48), (30, 90, 160)), display_size=256, brush_size=8)
    return static_widget(widget)


def canvas_box(h):
    return h.page.get_by_test_id("canvas").bounding_box()


def test_stroke_paints_a_band_and_syncs_once_at_stroke_end(painter, drag):
    drag(painter.page, canvas_box(painter), [(0.1, 0.5), (0.9, 0.5)])
    assert painter.saves() == [["mask"]]
    mask = painter.pull().mask
    assert mask.shape == (48, 64) and mask.dtype == np.float32
    assert mask[24, 10:54].min() == 1.0            # along the stroke, hard brush at full opacity
    assert mask[:15].max() == 0.0 and mask[34:].max() == 0.0   # brush radius 4 px: nothing far from the line
    painter.screenshot("static_mask_painter_stroke")


def test_erase_soft_and_opacity(painter, drag):
    box = canvas_box(painter)
    drag(painter.page, box, [(0.1, 0.5), (0.9, 0.5)])
    painter.page.get_by_test_id("mode").click()
    drag(painter.page, box, [(0.5, 0.1), (0.5, 0.9)])
    mask = painter.pull().mask
    assert mask[24, 32] == 0.0 and mask[24, 12] == 1.0
    painter.push(mode="paint", soft=True, opacity=0.5, brush_size=16)
    drag(painter.page, box, [(0.2, 0.15), (0.8, 0.15)])
    mask = painter.pull().mask
    row = mask[:, 32]
    assert 0.45 < row[7] <= 0.5                     # the centre reaches the opacity, not beyond
    assert 0.0 < row[12] < row[7]                   # soft falloff towards the rim


def test_undo_redo_clear_invert_feather(painter, drag):
    page = painter.page
    drag(page, canvas_box(painter), [(0.1, 0.5), (0.9, 0.5)])
    painted = painter.pull().mask.copy()
    page.get_by_test_id("undo").click()
    assert painter.pull().mask.max() == 0.0
    page.get_by_test_id("redo").click()
    np.testing.assert_array_equal(painter.pull().mask, painted)
    page.get_by_test_id("invert").click()
    np.testing.assert_allclose(painter.pull().mask, 1 - painted)
    page.get_by_test_id("invert").click()
    page.get_by_test_id("feather").click()
    feathered = painter.pull().mask
    assert 0.0 < feathered[24 - 6, 32] < 1.0       # the hard edge became a ramp
    assert abs(feathered.sum() - painted.sum()) < 0.05 * painted.sum()   # blur preserves mass (away from borders)
    page.get_by_test_id("clear").click()
    assert painter.pull().mask.max() == 0.0


def test_python_side_mask_renders(painter):
    mask = np.zeros((48, 64), np.float32)
    mask[:, :32] = 1.0
    painter.push(mask=mask)
    painter.page.get_by_test_id("readout").filter(has_text="mean 0.500").wait_for()
    # the overlay pixel under the left half is magenta, the right half is transparent
    alpha = painter.page.evaluate("""() => { const c = document.querySelector("[data-testid=canvas]");
        const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
        return [d[4 * (10 * c.width + 5) + 3], d[4 * (10 * c.width + 60) + 3]]; }""")
    assert alpha[0] > 100 and alpha[1] == 0


def test_brush_ring_follows_the_pointer_at_brush_size(painter):
    box = canvas_box(painter)
    painter.page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    ring = painter.page.get_by_test_id("brush-ring").bounding_box()
    assert abs(ring["width"] - 8 * box["width"] / 64) < 1.5       # brush 8 px on a 64 px wide image
    assert abs(ring["x"] + ring["width"] / 2 - (box["x"] + box["width"] / 2)) < 1.5
