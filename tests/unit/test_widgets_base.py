"""The shared widget mechanics: array/bytes serialisation, image conversion, error reporting, the runner."""

import threading

import numpy as np
import pytest
from PIL import Image

from difftech_lab.errors import InvalidArgumentError, ShapeError
from difftech_lab.images import from_png_bytes
from difftech_lab.widgets._base import (
    LatestRunner,
    NDArray,
    Superseded,
    Widget,
    array_from_json,
    array_to_json,
    background_traits,
    binary_trait,
)


class Holder(Widget):
    _esm = "export default { render() {} };"
    values = NDArray()
    blob = binary_trait()


def test_array_json_round_trip_accepts_memoryview_like_the_browser_sends():
    a = np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)
    wire = array_to_json(a)
    assert wire["shape"] == [3, 4] and wire["dtype"] == "float32"
    back = array_from_json({**wire, "data": memoryview(wire["data"])})
    np.testing.assert_array_equal(back, a)
    back[0, 0] = 5  # a writable copy, not a view of the message buffer
    assert array_to_json(None) is None and array_from_json(None) is None


def test_array_from_json_rejects_dtype_the_browser_cannot_view():
    with pytest.raises(InvalidArgumentError, match="float16"):
        array_from_json({"data": b"\0\0", "shape": [1], "dtype": "float16"})


def test_set_state_keeps_browser_bytes_and_arrays():
    w = Holder()
    w.set_state({"blob": memoryview(b"abc"),
                 "values": {"data": memoryview(np.arange(3, dtype=np.int32).tobytes()), "shape": [3], "dtype": "int32"}})
    assert w.blob == b"abc"
    np.testing.assert_array_equal(w.values, [0, 1, 2])


def test_ndarray_trait_rejects_unsupported_dtype():
    with pytest.raises(Exception, match="numpy array"):
        Holder(values=np.zeros(2, dtype=np.float16))


def test_background_traits_carry_the_picture_losslessly_with_its_size():
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    traits = background_traits(rgb)
    assert (traits["width"], traits["height"]) == (7, 5)
    np.testing.assert_array_equal(np.asarray(from_png_bytes(traits["image"])), rgb)
    assert np.asarray(from_png_bytes(background_traits(np.ones((2, 2)))["image"])).tolist() == [[255, 255]] * 2
    assert background_traits(Image.new("L", (3, 2)))["width"] == 3
    with pytest.raises(ShapeError, match=r"\(2, 2, 5\)"):
        background_traits(np.zeros((2, 2, 5)))


def test_repr_is_fixed():
    assert repr(Holder()) == "Holder()" == repr(Holder())


def test_guarded_callback_shows_error_and_reraises():
    w = Holder()

    def boom():
        raise ValueError("bad seed 7")

    with pytest.raises(ValueError):
        w.guarded(boom)()
    assert w.error == "ValueError: bad seed 7"
    assert w.guarded(lambda: 3)() == 3 and w.error == ""


def test_runner_applies_only_the_latest_request():
    w = Holder()
    runner = LatestRunner(w)
    release = threading.Event()
    started = threading.Event()
    applied = []

    def slow(is_stale):
        started.set()
        assert release.wait(30)  # held until both newer requests are queued: the order does not hang on timing
        if is_stale():
            raise Superseded
        return "first"

    runner.submit(slow, applied.append)
    assert started.wait(30), "the first request is running before the newer ones arrive"
    runner.submit(lambda is_stale: "second", applied.append)
    runner.submit(lambda is_stale: "third", applied.append)
    release.set()
    assert runner.wait(30)
    assert applied == ["third"]
    assert not w.busy  # cleared before wait() returns: a caller never sees a finished runner still busy


def test_runner_reports_exceptions_in_the_widget():
    w = Holder()
    runner = LatestRunner(w)
    runner.submit(lambda is_stale: 1 / 0, lambda r: None)
    assert runner.wait(5)
    assert w.error.startswith("ZeroDivisionError")
    assert isinstance(runner.exception, ZeroDivisionError)
    runner.submit(lambda is_stale: 2, lambda r: setattr(w, "values", np.array([r], dtype=np.int32)))
    assert runner.wait(5)
    assert w.error == "" and w.values.tolist() == [2]
