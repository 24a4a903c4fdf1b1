"""MaskPainter: paint a grayscale strength mask over an image, for inpainting, regional prompts and
differential diffusion.

Strokes, undo/redo, clear, invert and feather all run in the browser; the mask syncs to Python at stroke end.
"""

from __future__ import annotations

import numpy as np
import traitlets

from ..errors import InvalidArgumentError, ShapeError
from ..images import resize_mask
from ._base import NDArray, OverImage, background_traits, load_esm


class MaskPainter(OverImage):
    """Paint (1) and erase (0) over ``image``; ``.mask`` is a float32 ``(height, width)`` array in [0, 1].

    Args:
        image: the picture to paint over (PIL, HWC array, or a Result: its first image); None for a blank canvas.
        width, height: canvas size when there is no image.
        session: a Session; then :meth:`mask_at` defaults to the session's latent size.
    """

    _esm = load_esm("mask_painter.js")

    mask = NDArray(help="float32 (height, width) strength map in [0, 1]")
    brush_size = traitlets.Int(24).tag(sync=True)
    mode = traitlets.Enum(("paint", "erase"), "paint").tag(sync=True)
    soft = traitlets.Bool(False).tag(sync=True)
    opacity = traitlets.Float(1.0, min=0.0, max=1.0).tag(sync=True)
    feather_radius = traitlets.Int(4, min=1).tag(sync=True)

    def __init__(self, image=None, width: int = 512, height: int = 512, session=None, **kwargs):
        if image is not None:
            kwargs.update(background_traits(image))
            width, height = kwargs.pop("width"), kwargs.pop("height")
        if width < 1 or height < 1:
            raise InvalidArgumentError(f"canvas size {width}x{height} must be positive; pass width= and height=")
        super().__init__(width=width, height=height, mask=np.zeros((height, width), np.float32), **kwargs)
        self.session = session

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
        """A picture of another size starts a blank mask: the old one no longer lines up with it."""
        if self.mask.shape != (self.height, self.width):
            self.mask = np.zeros((self.height, self.width), np.float32)

    def mask_at(self, height: int | None = None, width: int | None = None) -> np.ndarray:
        """The mask area-averaged to ``(height, width)`` (default: the session's latent size)."""
        if height is None or width is None:
            if self.session is None:
                raise InvalidArgumentError("mask_at() needs height and width, or a session to take the latent size from")
            _, height, width = self.session.latent_shape(self.width, self.height)
        return resize_mask(self.mask, height, width)[0, 0].numpy()

    def __repr__(self) -> str:
        return f"MaskPainter({self.width}x{self.height})"
