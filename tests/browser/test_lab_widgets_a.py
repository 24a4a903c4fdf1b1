"""MaskPainter, BoxEditor, CurveEditor and SchedulePlotter in a real JupyterLab: a gesture in the page changes
the Python side, and a change made in Python re-renders in the page (in every view of the widget)."""

import pytest

pytestmark = pytest.mark.browser

SETUP = """
import numpy as np
from PIL import Image
from difftech_lab.widgets.box_editor import BoxEditor
from difftech_lab.widgets.curve_editor import CurveEditor
from difftech_lab.widgets.mask_painter import MaskPainter
from difftech_lab.widgets.schedule_plotter import SchedulePlotter
yy, xx = np.mgrid[0:64, 0:96]
img = Image.fromarray(np.stack([xx * 2, yy * 3, 255 - xx * 2], -1).astype(np.uint8))
"""
CELLS = [
    SETUP,
    "painter = MaskPainter(img, display_size=288, brush_size=8)\npainter",
    "boxes = BoxEditor(img, display_size=288, new_phrase='a red ball')\nboxes",
    "curve = CurveEditor(steps=11, value_range=(0, 10), keyframes=[(0, 2.0), (10, 8.0)], label='cfg')\ncurve",
    "plotter = SchedulePlotter(steps=10)\nplotter",
    "painter  # the same widget shown again",
]


@pytest.fixture(scope="module")
def nb(module_lab):
    nb = module_lab.open(CELLS)
    nb.run_all()
    return nb


def test_stroke_paints_mask_and_python_mask_shows_in_both_views(nb, drag):
    painter = nb.widget("mask-painter")
    drag(nb.page, painter.get_by_test_id("canvas").bounding_box(), [(0.1, 0.5), (0.9, 0.5)])
    mean = nb.wait_until("float(painter.mask.mean())", lambda v: v > 0)
    assert 0.05 < mean < 0.3
    assert nb.py("painter.mask[32, 10:86].min().item()") == 1.0
    assert nb.py("painter.mask[:20].max().item()") == 0.0
    assert nb.py("painter.mask_at(8, 12).shape") == [8, 12]
    nb.screenshot("lab_mask_painter_stroke")
    nb.execute("m = np.zeros((64, 96), np.float32); m[:, :48] = 1; painter.mask = m")
    for view in (painter, nb.widget("mask-painter", 1)):
        view.get_by_test_id("readout").filter(has_text="mean 0.500").wait_for(timeout=10_000)


def test_drawn_box_appears_in_boxes_and_python_boxes_render(nb, drag):
    editor = nb.widget("box-editor")
    drag(nb.page, editor.get_by_test_id("overlay").bounding_box(), [(0.25, 0.25), (0.75, 0.5)])
    boxes = nb.wait_until("boxes.boxes", lambda v: len(v) == 1)
    (phrase, box), = boxes
    assert phrase == "a red ball"
    assert all(abs(a - b) < 0.02 for a, b in zip(box, [0.25, 0.25, 0.75, 0.5]))
    nb.screenshot("lab_box_editor_drawn")
    nb.execute("boxes.boxes = [('a tree', [0.0, 0.0, 0.5, 1.0]), ('sky', [0.5, 0.0, 1.0, 0.3])]")
    editor.get_by_test_id("box-1").wait_for(timeout=10_000)
    assert editor.get_by_test_id("box-0").get_attribute("data-phrase") == "a tree"


def test_dragged_keyframe_changes_values_and_python_keyframes_render(nb):
    editor = nb.widget("curve-editor")
    kf = editor.get_by_test_id("kf-1").bounding_box()
    plot = editor.get_by_test_id("plot").bounding_box()
    x, y = kf["x"] + kf["width"] / 2, kf["y"] + kf["height"] / 2
    nb.page.mouse.move(x, y)
    nb.page.mouse.down()
    nb.page.mouse.move(x, y + 0.3 * plot["height"], steps=5)
    nb.page.mouse.up()
    values = nb.wait_until("curve.values", lambda v: v[-1] < 7.5)
    assert values[0] == 2.0 and 2.0 < values[-1] < 7.5 and len(values) == 11
    nb.execute("curve.keyframes = [(0, 9.0), (5, 1.0), (10, 9.0)]")
    editor.get_by_test_id("kf-2").wait_for(timeout=10_000)
    assert editor.get_by_test_id("kf-1").get_attribute("data-step") == "5"


def test_schedule_control_changes_sigmas_and_errors_show_in_widget(nb):
    plotter = nb.widget("schedule-plotter")
    steps = plotter.get_by_test_id("steps")
    steps.fill("6")
    steps.press("Enter")
    assert nb.wait_until("len(plotter.sigmas)", lambda v: v == 7) == 7
    plotter.get_by_test_id("pick-exponential").click()
    assert nb.wait_until("plotter.schedule", lambda v: v == "exponential") == "exponential"
    nb.execute("plotter.steps = 12")
    nb.page.locator("[data-testid='schedule-plotter'][data-steps='12']").wait_for(timeout=10_000)
    assert len(plotter.get_by_test_id("line-exponential").first.get_attribute("points").split()) == 12
    nb.execute("try:\n    plotter.sigma_min = 100.0\nexcept Exception:\n    pass")
    banner = plotter.get_by_test_id("error")
    banner.wait_for(state="visible", timeout=10_000)
    assert "sigma_min=100" in banner.inner_text()
    nb.screenshot("lab_schedule_plotter_error")


def test_reloading_the_page_restores_every_widget_from_the_kernel(nb):
    """Runs last: reopening the notebook re-renders the widgets with the state the kernel holds."""
    nb.execute("painter.mask = np.full((64, 96), 0.25, np.float32); boxes.boxes = [('moon', [0.1, 0.1, 0.2, 0.2])]")
    nb.save()
    nb.reopen()
    nb.widget("mask-painter").get_by_test_id("readout").filter(has_text="mean 0.250").wait_for(timeout=20_000)
    assert nb.widget("box-editor").get_by_test_id("box-0").get_attribute("data-phrase") == "moon"
    assert nb.widget("curve-editor").get_by_test_id("kf-2").count() == 1
    nb.widget("schedule-plotter")
    nb.screenshot("lab_reloaded")
