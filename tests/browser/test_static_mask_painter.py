"""MaskPainter's JS on a static page with a fake model: strokes, erase, soft brush, undo/redo, the clear/invert/
feather buttons (run by the Python methods), readouts, a toolbar that stays put, keyboard, pixelated drawing."""

import numpy as np
import pytest
from PIL import Image

from difftech_lab.images import blur_mask
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


def page_mask(h):
    """The mask the page holds (what it draws), as the kernel would receive it."""
    value = h.model_get("mask")
    return np.frombuffer(bytes(value["data"]), np.float32).reshape(value["shape"])


def test_undo_redo_in_the_browser(painter, drag):
    page = painter.page
    drag(page, canvas_box(painter), [(0.1, 0.5), (0.9, 0.5)])
    painted = painter.pull().mask.copy()
    page.get_by_test_id("undo").click()
    assert painter.pull().mask.max() == 0.0
    page.get_by_test_id("redo").click()
    np.testing.assert_array_equal(painter.pull().mask, painted)


def test_clear_invert_feather_buttons_run_the_python_methods(painter, drag):
    """The buttons ask the kernel, so the mask they give is the one the methods give without a browser."""
    page = painter.page
    drag(page, canvas_box(painter), [(0.1, 0.5), (0.9, 0.5)])
    painted = painter.pull().mask.copy()
    expected = MaskPainter(width=64, height=48)
    expected.mask = painted

    page.get_by_test_id("invert").click()
    assert painter.relay() == [{"request": "invert"}]
    expected.invert()
    np.testing.assert_array_equal(painter.widget.mask, expected.mask)
    np.testing.assert_array_equal(page_mask(painter), expected.mask)       # and the page shows it
    painter.page.get_by_test_id("readout").filter(has_text=f"mean {expected.mask.mean():.3f}").wait_for()

    page.get_by_test_id("undo").click()                                     # a kernel edit is undoable here
    np.testing.assert_array_equal(painter.pull().mask, painted)

    painter.page.get_by_test_id("feather-radius").fill("3")
    page.get_by_test_id("feather").click()
    assert painter.relay() == [{"request": "feather"}]
    np.testing.assert_array_equal(painter.widget.mask, blur_mask(painted, 3))
    np.testing.assert_array_equal(page_mask(painter), blur_mask(painted, 3))
    assert 0.0 < painter.widget.mask[24 - 6, 32] < 1.0                      # the hard edge became a ramp

    page.get_by_test_id("clear").click()
    painter.relay()
    assert painter.widget.mask.max() == 0.0 and page_mask(painter).max() == 0.0


def test_sliders_show_numeric_readouts(painter):
    page = painter.page
    assert page.get_by_test_id("size-value").inner_text() == "8 px"
    assert page.get_by_test_id("opacity-value").inner_text() == "1.00"
    assert page.get_by_test_id("feather-radius-value").inner_text() == "4 px"
    page.get_by_test_id("size").fill("20")
    assert page.get_by_test_id("size-value").inner_text() == "20 px" and painter.pull().brush_size == 20
    painter.push(opacity=0.35, feather_radius=6)
    assert page.get_by_test_id("opacity-value").inner_text() == "0.35"
    assert page.get_by_test_id("feather-radius-value").inner_text() == "6 px"


def test_toolbar_does_not_move_when_the_mode_or_a_value_changes(painter):
    controls = painter.root.locator("button, input, output")

    def where():
        return [controls.nth(i).bounding_box() for i in range(controls.count())]

    before = where()
    assert len(before) == 13
    painter.page.get_by_test_id("mode").click()
    assert painter.pull().mode == "erase"
    assert where() == before
    painter.page.get_by_test_id("soft").click()
    painter.push(brush_size=32, opacity=0.05, feather_radius=12)
    assert where() == before


def test_image_and_mask_are_drawn_pixelated(painter):
    for testid in ("image", "canvas"):
        assert painter.style(painter.page.get_by_test_id(testid), "image-rendering") == "pixelated"


def test_keyboard_brush_size_mode_undo_and_escape(painter, drag):
    page = painter.page
    box = canvas_box(painter)
    page.get_by_test_id("stage").focus()
    page.keyboard.press("]")
    assert painter.pull().brush_size == 10
    page.keyboard.press("[")
    page.keyboard.press("[")
    assert painter.pull().brush_size == 6
    page.keyboard.press("x")
    assert painter.pull().mode == "erase"
    page.keyboard.press("x")

    drag(page, box, [(0.1, 0.5), (0.9, 0.5)])
    assert page.evaluate("() => document.activeElement.dataset.testid") == "stage"   # painting focuses it
    page.keyboard.press("Control+z")
    assert painter.pull().mask.max() == 0.0
    page.keyboard.press("Control+Shift+z")
    painted = painter.pull().mask.copy()
    assert painted.max() == 1.0

    saves = len(painter.saves())
    page.mouse.move(box["x"] + 0.5 * box["width"], box["y"] + 0.1 * box["height"])
    page.mouse.down()
    page.mouse.move(box["x"] + 0.5 * box["width"], box["y"] + 0.9 * box["height"], steps=5)
    page.keyboard.press("Escape")                                           # cancels the stroke being drawn
    page.mouse.up()
    assert len(painter.saves()) == saves
    np.testing.assert_array_equal(page_mask(painter), painted)
    painter.page.get_by_test_id("readout").filter(has_text="undo 1").wait_for()


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


def test_default_brush_is_relative_to_the_image(static_widget):
    h = static_widget(MaskPainter(Image.new("RGB", (64, 48)), display_size=256))
    assert h.page.get_by_test_id("size-value").inner_text() == "6 px"     # an eighth of 48, not 24
    box = canvas_box(h)
    h.page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    ring = h.page.get_by_test_id("brush-ring").bounding_box()
    assert abs(ring["width"] - 6 * box["width"] / 64) < 1.5


@pytest.mark.parametrize("theme_name", ["light", "dark"])
def test_screenshots_light_and_dark(static_widget, drag, theme_name):
    yy, xx = np.mgrid[0:48, 0:64]
    picture = Image.fromarray(np.stack([xx * 4, yy * 5, 255 - xx * 4], -1).astype(np.uint8))
    h = static_widget(MaskPainter(picture, display_size=256), theme=theme_name)
    drag(h.page, canvas_box(h), [(0.2, 0.3), (0.7, 0.6)])
    h.screenshot(f"static_mask_painter_{theme_name}")
