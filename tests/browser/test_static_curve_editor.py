"""CurveEditor's JS on a static page with a fake model: drag, add and delete keyframes."""

import numpy as np
import pytest

from difftech_lab.widgets.curve_editor import CurveEditor


def plot_point(h, step, value):
    """Screen position of (step, value) from the rendered keyframe geometry (axes are linear)."""
    return h.page.evaluate("""([s, v]) => {
        const svg = document.querySelector("[data-testid=plot]"), r = svg.getBoundingClientRect();
        const k0 = svg.querySelector("[data-testid=kf-0]"), k1 = svg.querySelector("[data-testid=kf-1]");
        const [s0, v0, x0, y0] = [+k0.dataset.step, +k0.dataset.value, +k0.getAttribute("cx"), +k0.getAttribute("cy")];
        const [s1, v1, x1, y1] = [+k1.dataset.step, +k1.dataset.value, +k1.getAttribute("cx"), +k1.getAttribute("cy")];
        const x = x0 + (s - s0) * (x1 - x0) / (s1 - s0);
        const y = y0 + (v - v0) * (y1 - y0) / (v1 - v0);
        return [r.left + x * r.width / svg.viewBox.baseVal.width, r.top + y * r.height / svg.viewBox.baseVal.height];
    }""", [step, value])


@pytest.fixture
def editor(static_widget):
    return static_widget(CurveEditor(steps=11, value_range=(0, 10), keyframes=[(0, 2.0), (10, 8.0)]))


def test_dragging_a_keyframe_changes_values(editor):
    page = editor.page
    start = plot_point(editor, 10, 8.0)
    target = plot_point(editor, 10, 4.0)
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move(*target, steps=5)
    page.mouse.up()
    assert editor.saves() == [["keyframes"]]
    curve = editor.pull()
    (s0, v0), (s1, v1) = curve.keyframes
    assert (s0, v0, s1) == (0, 2.0, 10) and abs(v1 - 4.0) < 0.1
    np.testing.assert_allclose(curve.values, np.linspace(2.0, v1, 11), atol=1e-6)
    editor.screenshot("static_curve_editor_dragged")


def test_click_adds_and_delete_removes(editor):
    page = editor.page
    page.mouse.click(*plot_point(editor, 5, 9.0))
    curve = editor.pull()
    assert [s for s, _ in curve.keyframes] == [0, 5, 10] and abs(curve.keyframes[1][1] - 9.0) < 0.1
    assert curve.values[5] == curve.keyframes[1][1]
    page.get_by_test_id("delete").click()          # the new keyframe is selected
    assert editor.pull().keyframes == [(0, 2.0), (10, 8.0)]
    page.get_by_test_id("kf-1").dblclick()
    assert editor.pull().keyframes == [(0, 2.0)]
    assert editor.widget.values == [2.0] * 11


def test_drag_onto_another_keyframe_replaces_it(editor):
    editor.push(keyframes=[(0, 2.0), (5, 5.0), (10, 8.0)])
    page = editor.page
    page.mouse.move(*plot_point(editor, 5, 5.0))
    page.mouse.down()
    page.mouse.move(*plot_point(editor, 10, 1.0), steps=5)
    page.mouse.up()
    (s0, _), (s1, v1) = editor.pull().keyframes
    assert (s0, s1) == (0, 10) and abs(v1 - 1.0) < 0.1


def test_python_side_keyframes_render(editor):
    editor.push(keyframes=[(3, 7.0)])
    dot = editor.page.get_by_test_id("kf-0")
    assert dot.get_attribute("data-step") == "3" and editor.page.get_by_test_id("kf-1").count() == 0
    points = editor.page.get_by_test_id("curve").get_attribute("points").split()
    assert len(points) == 11 and len({p.split(",")[1] for p in points}) == 1   # a flat line
