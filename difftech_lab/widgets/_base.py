"""What every difftech_lab widget shares: binary array traits, the background-picture traits, the error
banner, a stable ``__repr__`` and a latest-request-wins runner for slow kernel-side renders.

Widgets follow the anywidget convention (one Python class + one ES module, no build step); state lives in
synced traits, so the front end can be rebuilt from the model at any time. Custom messages carry only requests
(a button asking the kernel to run one of the widget's methods), never state. The shared look (theme colours,
type scale, the slider with a readout) is in ``static/_base.js``.
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anywidget
import numpy as np
import traitlets
from ipywidgets.widgets.trait_types import bytes_serialization

from ..errors import InvalidArgumentError
from ..images import png_bytes, to_pil

STATIC = Path(__file__).parent / "static"

# dtypes a browser can view without conversion (each has a JS typed-array twin)
WIRE_DTYPES = ("uint8", "int32", "float32", "float64")


def load_esm(name: str) -> str:
    """The widget's ES module with the shared front-end helpers (``_base.js``) prepended.

    anywidget inlines one module per widget, so sharing code without a build step means concatenating.
    """
    return (STATIC / "_base.js").read_text() + "\n" + (STATIC / name).read_text()


def binary_trait(**kwargs) -> traitlets.Bytes:
    """A synced ``Bytes`` trait that keeps browser→Python bytes (they arrive as ``memoryview``)."""
    return traitlets.Bytes(b"", **kwargs).tag(sync=True, **bytes_serialization)


def array_to_json(value: np.ndarray | None, widget=None) -> dict | None:
    """Serialise an array as ``{"data": bytes, "shape": [...], "dtype": str}`` (a DataView in JS)."""
    if value is None:
        return None
    a = np.ascontiguousarray(value)
    return {"data": a.tobytes(), "shape": list(a.shape), "dtype": str(a.dtype)}


def array_from_json(value: dict | None, widget=None) -> np.ndarray | None:
    """Inverse of :func:`array_to_json`; accepts the ``memoryview`` the browser sends."""
    if value is None:
        return None
    dtype = str(value["dtype"])
    if dtype not in WIRE_DTYPES:
        raise InvalidArgumentError(f"array dtype {dtype!r} cannot travel to the browser; use one of {WIRE_DTYPES}")
    shape = tuple(int(s) for s in value["shape"])
    return np.frombuffer(bytes(value["data"]), dtype=dtype).reshape(shape).copy()


class NDArray(traitlets.TraitType):
    """A numpy array (or None) synced as raw bytes plus shape and dtype."""

    default_value = None
    allow_none = True
    info_text = f"a numpy array of dtype {', '.join(WIRE_DTYPES)}"

    def __init__(self, default_value=None, **kwargs):
        super().__init__(default_value, allow_none=True, **kwargs)
        self.tag(sync=True, to_json=array_to_json, from_json=array_from_json)

    def validate(self, obj, value):
        if value is None:
            return None
        a = np.asarray(value)
        if str(a.dtype) not in WIRE_DTYPES:
            self.error(obj, value)
        return a


def background_traits(image: Any) -> dict:
    """``image``, ``width`` and ``height`` trait values for a picture to draw over (a Result: its first image)."""
    pil = to_pil(image)
    return {"image": png_bytes(pil), "width": pil.width, "height": pil.height}


class Widget(anywidget.AnyWidget):
    """Base of the difftech_lab widgets: an ``error`` banner, a ``busy`` flag and a fixed ``__repr__``."""

    error = traitlets.Unicode("").tag(sync=True)
    busy = traitlets.Bool(False).tag(sync=True)

    def __repr__(self) -> str:
        # the default repr carries a memory address, which changes every run and breaks nbval
        return f"{type(self).__name__}()"

    def report(self, exc: BaseException) -> None:
        """Show ``exc`` in the widget's error banner."""
        self.error = "".join(traceback.format_exception_only(type(exc), exc)).strip()

    def guarded(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Wrap a callback so an exception is shown in the widget and re-raised (never swallowed)."""

        def call(*args, **kwargs):
            try:
                result = fn(*args, **kwargs)
            except Exception as exc:
                self.report(exc)
                raise
            self.error = ""
            return result

        return call


class OverImage(Widget):
    """A widget drawn over a picture, or over a blank ``width`` × ``height`` canvas."""

    image = binary_trait(help="PNG bytes of the background picture; empty for a blank canvas")
    width = traitlets.Int(512).tag(sync=True)
    height = traitlets.Int(512).tag(sync=True)
    display_size = traitlets.Int(384, help="longest side on screen, in CSS pixels").tag(sync=True)

    def set_image(self, image) -> None:
        """Draw over ``image`` from now on (PIL, HWC array, or a Result: its first image)."""
        with self.hold_sync(), self.hold_trait_notifications():
            for name, value in background_traits(image).items():
                setattr(self, name, value)


class Superseded(Exception):
    """Raised inside a render whose request a newer one has replaced."""


class LatestRunner:
    """Runs slow kernel-side renders on one worker thread, latest request wins.

    ``submit(compute, apply)`` replaces any pending request; ``compute(is_stale)`` runs on the worker and may
    call ``is_stale()`` (or raise :class:`Superseded`) to abandon work a newer request has made pointless;
    ``apply(result)`` sets the widget's traits only if the request is still the newest. Exceptions go to the
    widget's ``error`` trait and to :attr:`exception`.
    """

    def __init__(self, widget: Widget):
        self.widget = widget
        self.exception: BaseException | None = None
        self._cond = threading.Condition()
        self._pending: tuple[int, Callable, Callable] | None = None
        self._generation = 0
        self._running = False
        self._thread: threading.Thread | None = None

    def submit(self, compute: Callable[[Callable[[], bool]], Any], apply: Callable[[Any], None]) -> int:
        """Queue a render, superseding any older one; returns its request number."""
        with self._cond:
            self._generation += 1
            self._pending = (self._generation, compute, apply)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="difftech-widget-render", daemon=True)
                self._thread.start()
            self._cond.notify_all()
            return self._generation

    def is_stale(self, generation: int) -> bool:
        """True once a newer request than ``generation`` has been submitted."""
        return generation != self._generation

    def wait(self, timeout: float | None = None) -> bool:
        """Block until no request is pending or running (for scripts and tests); False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._pending is None and not self._running, timeout)

    def _loop(self) -> None:
        while True:
            with self._cond:
                if not self._cond.wait_for(lambda: self._pending is not None, timeout=30.0):
                    self._thread = None
                    return
                generation, compute, apply = self._pending
                self._pending = None
                self._running = True
            self.widget.busy = True
            try:
                self._run(generation, compute, apply)
            finally:
                with self._cond:
                    self._running = False
                    if self._pending is None:  # before waking waiters, so wait() returns with busy already False
                        self.widget.busy = False
                    self._cond.notify_all()

    def _run(self, generation: int, compute: Callable, apply: Callable) -> None:
        try:
            result = compute(lambda: self.is_stale(generation))
            if self.is_stale(generation):
                return
            with self.widget.hold_sync():
                apply(result)
            self.widget.error = ""
            self.exception = None
        except Superseded:
            return
        except Exception as exc:
            if self.is_stale(generation):
                return
            self.exception = exc
            self.widget.report(exc)
