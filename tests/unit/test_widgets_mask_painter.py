"""MaskPainter's Python side: sizes, default brush, mask validation, clear/invert/feather, area resize to latent
size."""

import numpy as np
import pytest
from PIL import Image

from difftech_lab.errors import InvalidArgumentError, ShapeError
from difftech_lab.images import blur_mask, from_png_bytes
from difftech_lab.widgets.mask_painter import MaskPainter


class FakeSession:
    def latent_shape(self, width, height):
        return 4, height // 8, width // 8


def test_image_sets_canvas_size_and_background():
    painter = MaskPainter(Image.new("RGB", (40, 24), (10, 20, 30)))
    assert (painter.width, painter.height) == (40, 24)
    assert painter.mask.shape == (24, 40) and painter.mask.dtype == np.float32 and painter.mask.max() == 0
    assert from_png_bytes(painter.image).getpixel((3, 3)) == (10, 20, 30)


def test_result_like_object_uses_its_first_image():
    class Result:
        images = [Image.new("RGB", (16, 8))]
    assert MaskPainter(Result()).mask.shape == (8, 16)


def test_blank_canvas():
    painter = MaskPainter(width=30, height=20)
    assert painter.image == b"" and painter.mask.shape == (20, 30)
    with pytest.raises(InvalidArgumentError, match="0x20"):
        MaskPainter(width=0, height=20)


def test_mask_is_validated_clipped_and_float32():
    painter = MaskPainter(width=4, height=2)
    painter.mask = np.array([[-1, 0.5, 2, 1]] * 2, dtype=np.float64)
    assert painter.mask.dtype == np.float32
    assert painter.mask[0].tolist() == [0.0, 0.5, 1.0, 1.0]
    with pytest.raises(ShapeError, match=r"\(3, 4\)"):
        painter.mask = np.zeros((3, 4))


def test_mask_at_is_the_area_average():
    rng = np.random.default_rng(0)
    painter = MaskPainter(width=64, height=48, session=FakeSession())
    painter.mask = rng.random((48, 64))
    expected = painter.mask.reshape(6, 8, 8, 8).mean(axis=(1, 3))      # mean over each 8×8 block
    np.testing.assert_allclose(painter.mask_at(6, 8), expected, rtol=1e-5)
    np.testing.assert_allclose(painter.mask_at(), expected, rtol=1e-5)  # the session's latent size


def test_mask_at_keeps_a_constant_mask_constant_at_any_size():
    painter = MaskPainter(width=50, height=30)
    painter.mask = np.full((30, 50), 0.25)
    np.testing.assert_allclose(painter.mask_at(7, 11), 0.25, rtol=1e-6)
    with pytest.raises(InvalidArgumentError, match="session"):
        painter.mask_at()


def test_repr_is_stable():
    assert repr(MaskPainter(width=8, height=4)) == "MaskPainter(8x4)"


def test_set_image_of_another_size_starts_a_blank_mask_and_same_size_keeps_it():
    painter = MaskPainter(width=8, height=4)
    painter.mask = np.ones((4, 8))
    painter.set_image(Image.new("RGB", (8, 4), (255, 0, 0)))
    assert painter.mask.max() == 1.0 and from_png_bytes(painter.image).getpixel((0, 0)) == (255, 0, 0)
    painter.set_image(Image.new("RGB", (6, 3)))
    assert painter.mask.shape == (3, 6) and painter.mask.max() == 0.0


def test_default_brush_is_an_eighth_of_the_shorter_side():
    assert MaskPainter(Image.new("RGB", (64, 48))).brush_size == 6
    assert MaskPainter(width=512, height=768).brush_size == 64
    assert MaskPainter(width=4, height=3).brush_size == 1
    assert MaskPainter(width=64, height=64, brush_size=20).brush_size == 20


def test_default_brush_follows_a_new_picture_but_a_chosen_one_stays():
    painter = MaskPainter(width=64, height=64)
    painter.set_image(Image.new("RGB", (256, 128)))
    assert painter.brush_size == 16
    painter.brush_size = 5
    painter.set_image(Image.new("RGB", (64, 64)))
    assert painter.brush_size == 5


def test_clear_and_invert_change_the_mask_without_a_browser():
    painter = MaskPainter(width=4, height=2)
    painter.mask = np.array([[0, 0.25, 1, 1]] * 2)
    painter.invert()
    assert painter.mask[0].tolist() == [1.0, 0.75, 0.0, 0.0] and painter.mask.dtype == np.float32
    painter.clear()
    assert painter.mask.shape == (2, 4) and painter.mask.max() == 0.0


def test_feather_is_the_gaussian_blur_of_the_inpainting_helpers():
    painter = MaskPainter(width=32, height=32, feather_radius=2)
    square = np.zeros((32, 32), np.float32)
    square[8:24, 8:24] = 1
    painter.mask = square
    painter.feather()
    np.testing.assert_array_equal(painter.mask, blur_mask(square, 2))
    assert 0 < painter.mask[8, 16] < 1 and painter.mask[16, 16] == 1.0
    painter.mask = square
    painter.feather(5)
    np.testing.assert_array_equal(painter.mask, blur_mask(square, 5))
    with pytest.raises(InvalidArgumentError, match="feather radius"):
        painter.feather(-1)


def test_toolbar_requests_run_the_methods_and_other_messages_are_ignored():
    painter = MaskPainter(width=4, height=2)
    painter._handle_custom_msg({"request": "invert"}, [])
    assert painter.mask.min() == 1.0
    painter._handle_custom_msg({"request": "feather"}, [])
    painter._handle_custom_msg({"request": "clear"}, [])
    assert painter.mask.max() == 0.0
    painter._handle_custom_msg({"request": "format the disk"}, [])
    painter._handle_custom_msg("invert", [])
    assert painter.mask.max() == 0.0 and painter.error == ""


def test_a_failing_request_shows_in_the_widget(monkeypatch):
    painter = MaskPainter(width=4, height=2)
    monkeypatch.setattr("difftech_lab.widgets.mask_painter.blur_mask", lambda mask, radius: 1 / 0)
    painter._handle_custom_msg({"request": "feather"}, [])     # ipywidgets logs it, as a kernel would
    assert painter.error.startswith("ZeroDivisionError")
