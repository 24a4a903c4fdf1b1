"""BoxEditor's JS on a static page with a fake model: draw, move, resize, relabel, delete (button and keys),
arrow-key nudges, colours that follow the labels, pixelated drawing."""

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


def click_box(h, i):
    rb = h.page.get_by_test_id(f"box-{i}").bounding_box()
    h.page.mouse.click(rb["x"] + rb["width"] / 2, rb["y"] + rb["height"] / 2)


THREE = [("dog", [0.1, 0.1, 0.3, 0.3]), ("tree", [0.5, 0.5, 0.9, 0.9]), ("sun", [0.7, 0.0, 0.9, 0.2])]


@pytest.mark.parametrize("key", ["Delete", "Backspace"])
def test_delete_key_removes_the_selected_box(editor, key):
    editor.push(boxes=THREE)
    editor.page.get_by_test_id("stage").focus()
    editor.page.keyboard.press(key)                       # nothing selected: nothing removed
    assert len(editor.pull().boxes) == 3
    click_box(editor, 1)
    assert editor.page.get_by_test_id("box-1").get_attribute("data-selected") == "true"
    editor.page.keyboard.press(key)
    assert [p for p, _ in editor.pull().boxes] == ["dog", "sun"]
    editor.page.keyboard.press(key)                       # the selection went with the box
    assert len(editor.pull().boxes) == 2


def test_delete_key_in_a_label_edits_the_text_not_the_boxes(editor):
    editor.push(boxes=THREE)
    label = editor.page.get_by_test_id("phrase-0")
    label.click()
    label.press("End")
    label.press("Backspace")
    label.press("Enter")
    assert [p for p, _ in editor.pull().boxes] == ["do", "tree", "sun"]


def test_arrow_keys_nudge_the_selected_box_and_escape_deselects(editor):
    editor.push(boxes=[("dog", [0.2, 0.2, 0.4, 0.6])])
    click_box(editor, 0)
    editor.page.keyboard.press("ArrowRight")              # one image pixel: 1/80 of the width
    editor.page.keyboard.press("Shift+ArrowUp")           # ten image pixels: 10/40 of the height, clamped at 0
    assert close(editor.pull().boxes[0][1], [0.2125, 0.0, 0.4125, 0.4], tol=1e-6)
    editor.page.keyboard.press("Escape")
    assert editor.page.get_by_test_id("box-0").get_attribute("data-selected") == "false"
    editor.page.keyboard.press("Delete")
    assert len(editor.pull().boxes) == 1


# the colours a label names, as the widget draws them
BLUE, GREEN, WHITE, RED = "#1e88e5", "#43a047", "#ffffff", "#e53935"


def test_box_colour_follows_its_label_not_its_index(editor):
    editor.push(boxes=[("blue square", [0.0, 0.0, 0.2, 0.2]), ("a Green tree", [0.3, 0.3, 0.5, 0.5]),
                       ("cat", [0.6, 0.6, 0.7, 0.7]), ("a red ball on a blue mat", [0.1, 0.6, 0.3, 0.9])])
    stroke = lambda i: editor.page.get_by_test_id(f"box-{i}").get_attribute("stroke")  # noqa: E731
    swatch = lambda i: editor.style(editor.page.get_by_test_id(f"swatch-{i}"), "background-color")  # noqa: E731
    assert [stroke(0), stroke(1), stroke(3)] == [BLUE, GREEN, RED]          # the first colour named wins
    assert swatch(0) == "rgb(30, 136, 229)"
    cat = stroke(2)
    editor.push(boxes=[("cat", [0.6, 0.6, 0.7, 0.7]), ("blue square", [0.0, 0.0, 0.2, 0.2])])
    assert [stroke(0), stroke(1)] == [cat, BLUE]                            # reordering keeps the colours
    label = editor.page.get_by_test_id("phrase-0")
    label.fill("a white cat")
    label.press("Enter")
    assert stroke(0) == WHITE and swatch(0) == "rgb(255, 255, 255)"


def test_unnamed_labels_hash_to_a_stable_colour(static_widget):
    labels = ["cat", "a dog", "tree", "house", "sky", "moon"]
    boxes = [(p, [0.1 * i, 0.0, 0.1 * i + 0.05, 0.1]) for i, p in enumerate(labels)]
    h = static_widget(BoxEditor(width=40, height=40, boxes=boxes))
    first = [h.page.get_by_test_id(f"box-{i}").get_attribute("stroke") for i in range(len(labels))]
    h.push(boxes=list(reversed(boxes)))
    again = [h.page.get_by_test_id(f"box-{i}").get_attribute("stroke") for i in range(len(labels))]
    assert again == list(reversed(first))
    assert len(set(first)) > 1                                              # not one colour for everything


def test_image_is_drawn_pixelated(editor):
    assert editor.style(editor.page.get_by_test_id("image"), "image-rendering") == "pixelated"


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_screenshots_light_and_dark(static_widget, theme):
    import numpy as np

    yy, xx = np.mgrid[0:40, 0:80]
    picture = Image.fromarray(np.stack([xx * 3, yy * 6, 255 - xx * 3], -1).astype(np.uint8))
    h = static_widget(BoxEditor(picture, display_size=400, boxes=[
        ("a blue square", [0.05, 0.1, 0.4, 0.7]), ("a white cat", [0.5, 0.2, 0.7, 0.9]),
        ("tree", [0.75, 0.05, 0.95, 0.6])]), theme=theme)
    click_box(h, 1)
    h.screenshot(f"static_box_editor_{theme}")
