"""MaskPainter: paint a grayscale strength mask over an image, for inpainting, regional prompts and
differential diffusion.

Strokes and undo/redo run in the browser and the mask syncs to Python at stroke end. Clear, invert and feather
are Python methods; the toolbar's buttons ask the kernel to run them, so a button and a call give the same mask.
"""

from __future__ import annotations

import math

import numpy as np
import traitlets

from ..errors import InvalidArgumentError, ShapeError
from ..images import blur_mask, resize_mask
from ._base import NDArray, OverImage, background_traits, load_esm


def default_brush_size(width: int, height: int) -> int:
    """An eighth of the shorter side (at least 1 px): a stroke covers the same share of any picture."""
    return max(1, round(min(width, height) / 8))


class MaskPainter(OverImage):
    """Paint (1) and erase (0) over ``image``; ``.mask`` is a float32 ``(height, width)`` array in [0, 1].

    Args:
        image: the picture to paint over (PIL, HWC array, or a Result: its first image); None for a blank canvas.
        width, height: canvas size when there is no image.
        session: a Session; then :meth:`mask_at` defaults to the session's latent size.
        brush_size: brush diameter in image pixels; by default an eighth of the shorter side, and it follows the
            picture's size (through :meth:`set_image`) until you change it.

    Keyboard, once the picture has focus (click it, or Tab to it):
        ``[`` / ``]``: smaller / larger brush; ``X``: switch paint and erase; ``Ctrl+Z`` / ``Ctrl+Shift+Z`` (or
        ``Ctrl+Y``; ``Cmd`` on a Mac): undo / redo; ``Escape``: cancel the stroke being drawn. The sliders take
        the arrow keys, the buttons Enter and Space.
    """

    _esm = load_esm("mask_painter.js")

    mask = NDArray(help="float32 (height, width) strength map in [0, 1]")
    brush_size = traitlets.Int(64, min=1, help="brush diameter in image pixels").tag(sync=True)
    mode = traitlets.Enum(("paint", "erase"), "paint").tag(sync=True)
    soft = traitlets.Bool(False).tag(sync=True)
    opacity = traitlets.Float(1.0, min=0.0, max=1.0).tag(sync=True)
    feather_radius = traitlets.Int(4, min=1, help="Gaussian sigma of feather(), in image pixels").tag(sync=True)

    def __init__(self, image=None, width: int = 512, height: int = 512, session=None, **kwargs):
        if image is not None:
            kwargs.update(background_traits(image))
            width, height = kwargs.pop("width"), kwargs.pop("height")
        if width < 1 or height < 1:
            raise InvalidArgumentError(f"canvas size {width}x{height} must be positive; pass width= and height=")
        kwargs.setdefault("brush_size", default_brush_size(width, height))
        super().__init__(width=width, height=height, mask=np.zeros((height, width), np.float32), **kwargs)
        self.session = session
        self.on_msg(self._on_request)

    @traitlets.validate("mask")
    def _check_mask(self, proposal):
        mask = proposal["value"]
        if mask is None:
            return np.zeros((self.height, self.width), np.float32)
        mask = np.asarray(mask, dtype=np.float32)
        if mask.shape != (self.height, self.width):
            raise ShapeError(f"mask of shape {mask.shape} does not match the canvas ({self.height}, {self.width}); "
                             "resize it to the image first")
        return np.clip(mask, 0.0, 1.0)

    @traitlets.observe("width", "height")
    def _resize_canvas(self, change):
        """A picture of another size starts a blank mask: the old one no longer lines up with it. A brush still
        at the old size's default takes the new one."""
        if self.mask.shape != (self.height, self.width):
            old_h, old_w = self.mask.shape
            if self.brush_size == default_brush_size(old_w, old_h):
                self.brush_size = default_brush_size(self.width, self.height)
            self.mask = np.zeros((self.height, self.width), np.float32)

    def clear(self) -> None:
        """Erase the whole mask (all 0)."""
        self.mask = np.zeros((self.height, self.width), np.float32)

    def invert(self) -> None:
        """Swap painted and unpainted: every strength ``m`` becomes ``1 - m``."""
        self.mask = 1.0 - self.mask

    def feather(self, radius: float | None = None) -> None:
        """Soften the mask's edges with a Gaussian blur of standard deviation ``radius`` pixels (default:
        ``feather_radius``), as :func:`difftech_lab.images.blur_mask` does for inpainting."""
        radius = self.feather_radius if radius is None else radius
        if not (isinstance(radius, (int, float)) and math.isfinite(radius) and radius >= 0):
            raise InvalidArgumentError(f"feather radius {radius!r} must be a finite number of pixels >= 0")
        self.mask = blur_mask(self.mask, radius)

    def _on_request(self, _widget, content, _buffers) -> None:
        """Run a toolbar button's request ``{"request": "clear" | "invert" | "feather"}``; errors show in the
        widget's banner."""
        actions = {"clear": self.clear, "invert": self.invert, "feather": self.feather}
        action = actions.get(content.get("request")) if isinstance(content, dict) else None
        if action is not None:
            self.guarded(action)()

    def mask_at(self, height: int | None = None, width: int | None = None) -> np.ndarray:
        """The mask area-averaged to ``(height, width)`` (default: the session's latent size)."""
        if height is None or width is None:
            if self.session is None:
                raise InvalidArgumentError("mask_at() needs height and width, or a session to take the latent size from")
            _, height, width = self.session.latent_shape(self.width, self.height)
        return resize_mask(self.mask, height, width)[0, 0].numpy()

    def __repr__(self) -> str:
        return f"MaskPainter({self.width}x{self.height})"
