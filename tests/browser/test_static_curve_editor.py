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


def test_end_keyframes_cover_no_tick_label(static_widget):
    h = static_widget(CurveEditor(steps=11, value_range=(0, 10), keyframes=[(0, 0.0), (10, 10.0)]))
    overlaps = h.page.evaluate("""() => {
        const svg = document.querySelector("[data-testid=plot]");
        const hit = (a, b) => a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom;
        const dots = [...svg.querySelectorAll("[data-testid^=kf-]")].map((d) => d.getBoundingClientRect());
        const texts = [...svg.querySelectorAll("text")];
        return [texts.length, texts.filter((t) => dots.some((d) => hit(d, t.getBoundingClientRect())))
                                   .map((t) => t.textContent)];
    }""")
    assert overlaps[0] > 10 and overlaps[1] == []


def test_dragged_values_snap_and_show_two_decimals(editor):
    page = editor.page
    page.mouse.move(*plot_point(editor, 10, 8.0))
    page.mouse.down()
    page.mouse.move(*plot_point(editor, 10, 3.3838), steps=5)
    page.mouse.up()
    value = editor.pull().keyframes[1][1]
    assert abs(value - 3.38) < 0.1 and round(value, 1) == value, "snapped to 0.1 on a 0–10 range"
    readout = page.get_by_test_id("readout").inner_text()
    assert readout == f"value at step 10: {value:g}"
    ticks = page.locator("[data-testid=plot] text").all_text_contents()
    assert all(len(t.split(".")[-1]) <= 2 for t in ticks if "." in t)


def test_typed_step_and_value_edit_the_selected_keyframe(editor):
    page = editor.page
    assert page.get_by_test_id("kf-value").is_disabled(), "nothing selected: nothing to type into"
    page.mouse.move(*plot_point(editor, 10, 8.0))
    page.mouse.down()
    page.mouse.up()
    assert page.get_by_test_id("kf-step").input_value() == "10"
    assert page.get_by_test_id("kf-value").input_value() == "8"
    page.get_by_test_id("kf-value").fill("3.25")
    page.get_by_test_id("kf-value").press("Enter")
    assert editor.pull().keyframes == [(0, 2.0), (10, 3.25)], "a typed value is kept as typed"
    page.get_by_test_id("kf-step").fill("6")
    page.get_by_test_id("kf-step").press("Enter")
    assert editor.pull().keyframes == [(0, 2.0), (6, 3.25)]
    page.get_by_test_id("kf-value").fill("40")
    page.get_by_test_id("kf-value").press("Enter")
    assert editor.pull().keyframes == [(0, 2.0), (6, 10.0)], "clamped to value_range"


def test_keyboard_nudges_removes_and_deselects(editor):
    page = editor.page
    editor.push(keyframes=[(0, 2.0), (5, 5.0), (10, 8.0)])
    page.mouse.move(*plot_point(editor, 10, 8.0))
    page.mouse.down()
    page.mouse.up()
    root = editor.root
    root.press("ArrowDown")
    root.press("Shift+ArrowDown")
    root.press("ArrowLeft")
    assert editor.pull().keyframes == [(0, 2.0), (5, 5.0), (9, 6.9)]
    for _ in range(4):
        root.press("ArrowLeft")
    assert editor.pull().keyframes[1:] == [(5, 5.0), (6, 6.9)], "an arrow stops at the neighbour"
    root.press("Delete")
    assert editor.pull().keyframes == [(0, 2.0), (5, 5.0)]
    page.get_by_test_id("kf-0").click()
    root.press("Escape")
    assert page.get_by_test_id("kf-step").is_disabled()
    root.press("Delete")
    assert editor.pull().keyframes == [(0, 2.0), (5, 5.0)], "Delete with nothing selected removes nothing"


def test_label_names_the_axis_and_the_readout(static_widget):
    h = static_widget(CurveEditor(steps=20, value_range=(0, 12), keyframes=[(0, 9.0), (19, 2.0)], label="cfg"))
    assert h.page.get_by_test_id("axis-label").text_content() == "cfg"
    h.page.get_by_test_id("kf-0").click()
    assert h.page.get_by_test_id("readout").inner_text() == "cfg at step 0: 9"
    h.screenshot("static_curve_editor_cfg")
