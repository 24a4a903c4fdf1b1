"""BoxEditor's Python side: GLIGEN-normalised boxes, browser JSON, validation."""

import pytest
from PIL import Image

from difftech_lab.errors import InvalidArgumentError
from difftech_lab.widgets.box_editor import BoxEditor


def test_boxes_are_ordered_and_tuples():
    editor = BoxEditor(Image.new("RGB", (20, 10)), boxes=[["cat", (0.6, 0.8, 0.1, 0.2)]])
    assert editor.boxes == [("cat", [0.1, 0.2, 0.6, 0.8])]
    assert (editor.width, editor.height) == (20, 10)


def test_boxes_from_the_browser_become_tuples():
    editor = BoxEditor()
    editor.set_state({"boxes": [["a dog", [0, 0.5, 0.25, 1]], ["sky", [0, 0, 1, 0.2]]]})
    assert editor.boxes == [("a dog", [0.0, 0.5, 0.25, 1.0]), ("sky", [0.0, 0.0, 1.0, 0.2])]


def test_pixel_coordinates_are_refused():
    editor = BoxEditor()
    with pytest.raises(InvalidArgumentError, match="normalised"):
        editor.boxes = [("cat", [10, 20, 200, 300])]
    with pytest.raises(InvalidArgumentError, match="4 finite numbers"):
        editor.boxes = [("cat", [0.1, 0.2, 0.3])]
    with pytest.raises(InvalidArgumentError, match="phrase"):
        editor.boxes = [("cat",)]
    assert editor.boxes == []


def test_repr_is_stable():
    assert repr(BoxEditor(boxes=[("a", [0, 0, 1, 1])])) == "BoxEditor(1 boxes)"


def test_set_image_keeps_normalised_boxes():
    editor = BoxEditor(boxes=[("cat", [0.1, 0.1, 0.5, 0.5])])
    editor.set_image(Image.new("RGB", (30, 60)))
    assert (editor.width, editor.height) == (30, 60) and editor.image.startswith(b"\x89PNG")
    assert editor.boxes == [("cat", [0.1, 0.1, 0.5, 0.5])]
