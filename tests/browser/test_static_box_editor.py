"""BoxEditor's JS on a static page with a fake model: draw, move, resize, relabel, delete."""

import pytest
from PIL import Image

from difftech_lab.widgets.box_editor import BoxEditor


@pytest.fixture
def editor(static_widget):
    return static_widget(BoxEditor(Image.new("RGB", (80, 40), (200, 200, 180)), display_size=400, new_phrase="a cat"))


def close(a, b, tol=0.01):
    return all(abs(x - y) <= tol for x, y in zip(a, b))


def overlay(h):
    return h.page.get_by_test_id("overlay").bounding_box()


def test_drawn_box_syncs_normalised_coordinates(editor, drag):
    drag(editor.page, overlay(editor), [(0.6, 0.8), (0.1, 0.2)])      # drawn bottom-right to top-left
    assert editor.saves() == [["boxes"]]
    (phrase, box), = editor.pull().boxes
    assert phrase == "a cat" and close(box, [0.1, 0.2, 0.6, 0.8])
    editor.screenshot("static_box_editor_drawn")


def test_click_without_drag_draws_nothing(editor, drag):
    drag(editor.page, overlay(editor), [(0.5, 0.5)])
    assert editor.pull().boxes == []


def test_move_and_resize_keep_the_box_inside(editor, drag):
    editor.push(boxes=[("dog", [0.2, 0.2, 0.4, 0.6])])
    stage = overlay(editor)
    drag(editor.page, stage, [(0.3, 0.4), (0.5, 0.5)])       # move by (+0.2, +0.1)
    (_, box), = editor.pull().boxes
    assert close(box, [0.4, 0.3, 0.6, 0.7])
    drag(editor.page, stage, [(0.5, 0.5), (1.5, 0.5)])       # dragged far right: stops at the edge
    assert close(editor.pull().boxes[0][1], [0.8, 0.3, 1.0, 0.7])
    drag(editor.page, stage, [(0.8, 0.3), (0.5, 0.1)])
    assert close(editor.pull().boxes[0][1], [0.5, 0.1, 1.0, 0.7])


def test_relabel_and_delete(editor):
    editor.push(boxes=[("dog", [0.1, 0.1, 0.3, 0.3]), ("tree", [0.5, 0.5, 0.9, 0.9])])
    editor.page.get_by_test_id("phrase-0").fill("a red dog")
    editor.page.get_by_test_id("phrase-0").press("Enter")
    editor.page.get_by_test_id("delete-1").click()
    assert editor.pull().boxes == [("a red dog", [0.1, 0.1, 0.3, 0.3])]


def test_python_side_boxes_render(editor):
    editor.push(boxes=[("sun", [0.0, 0.0, 0.5, 0.5])])
    rect = editor.page.get_by_test_id("box-0")
    assert rect.get_attribute("data-phrase") == "sun"
    stage = overlay(editor)
    rb = rect.bounding_box()
    assert abs(rb["width"] - 0.5 * stage["width"]) < 3 and abs(rb["x"] - stage["x"]) < 3
    editor.push(boxes=[])
    assert editor.page.get_by_test_id("box-0").count() == 0
