"""Images, masks and pixel tensors: the one place they are converted, gridded, encoded and composited.

Conventions: a PIL image is RGB; an image array is ``(H, W[, 1|3|4])``, uint8 in [0, 255] or float in [0, 1];
a mask is float32 ``(H, W)`` in [0, 1] with 1 = "change here"; pixel tensors are ``[B, 3, H, W]`` in [−1, 1].
"""

from __future__ import annotations

import base64
import io
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageFilter

from .errors import InvalidArgumentError, ShapeError


def to_pil(image: Any) -> Image.Image:
    """A PIL image from PIL, a path, a Result (its first image), or an ``(H, W[, C])`` uint8 / [0, 1] float array."""
    if hasattr(image, "images") and not isinstance(image, Image.Image):
        image = image.images[0]
    if isinstance(image, (str, Path)):
        try:
            return Image.open(image).copy()
        except OSError as err:
            raise InvalidArgumentError(f"cannot read an image from {str(image)!r}: {err}") from err
    if isinstance(image, Image.Image):
        return image
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    if not isinstance(image, np.ndarray):
        raise InvalidArgumentError(f"image must be a PIL image, an H×W×3 array or a path, got {type(image).__name__}")
    a = image
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (1, 3, 4)):
        raise ShapeError(f"image of shape {a.shape} is not (H, W) or (H, W, 1|3|4); pass a PIL image or HWC array")
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.dtype != np.uint8:
        a = a.astype(np.float64)
        if not np.isfinite(a).all():
            raise InvalidArgumentError(f"image array holds {int((~np.isfinite(a)).sum())} NaN/inf values; give "
                                       "finite pixels (uint8 in [0, 255] or float in [0, 1])")
        a = (np.clip(a, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return Image.fromarray(a)


def to_rgb(image: Any) -> Image.Image:
    """:func:`to_pil`, as RGB (what the VAE takes)."""
    return to_pil(image).convert("RGB")


def to_pixels(images) -> torch.Tensor:
    """RGB images (one or a list) as a ``[B, 3, H, W]`` float tensor in [−1, 1]."""
    images = list(images) if isinstance(images, (list, tuple)) else [images]
    arrays = [np.asarray(to_rgb(im), dtype=np.float32) for im in images]
    if len({a.shape for a in arrays}) != 1:
        raise ShapeError(f"images have different sizes {[a.shape[:2] for a in arrays]}; give one size")
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2) / 127.5 - 1


def from_pixels(pixels: torch.Tensor) -> list[Image.Image]:
    """A ``[B, 3, H, W]`` tensor in [−1, 1] as PIL images (rounded, as diffusers' ``output_type="pil"``)."""
    array = ((pixels.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(a) for a in array]


def mask_array(mask: Any) -> np.ndarray:
    """A float32 array from an array, tensor or (greyscale) PIL image (scaled to [0, 1]), size unchecked."""
    if isinstance(mask, Image.Image):
        mask = np.asarray(mask.convert("L"), dtype=np.float32) / 255.0
    elif isinstance(mask, torch.Tensor):
        mask = mask.detach().float().cpu().numpy()
    return np.asarray(mask, dtype=np.float32).squeeze()


def to_mask(mask: Any, width: int, height: int) -> np.ndarray:
    """A float32 ``(height, width)`` mask in [0, 1] from an array, tensor or (greyscale) PIL image."""
    mask = mask_array(mask)
    if mask.shape != (height, width):
        raise ShapeError(f"mask has shape {mask.shape}, but the image is {height}×{width} (H×W); give a mask of "
                         "the image's size (MaskPainter(image).mask is)")
    if not np.isfinite(mask).all() or mask.min() < 0 or mask.max() > 1:
        raise InvalidArgumentError(f"mask values span [{np.nanmin(mask):.3g}, {np.nanmax(mask):.3g}]; they must lie "
                                   "in [0, 1] (1 = change)")
    return mask


def box_mask(box, width: int, height: int) -> np.ndarray:
    """A hard ``(height, width)`` mask of the pixels whose centres lie in ``box`` = (x0, y0, x1, y1) in [0, 1]."""
    try:
        x0, y0, x1, y1 = (float(v) for v in box)
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"box {box!r} must be four numbers (x0, y0, x1, y1) in [0, 1]") from None
    if not all(np.isfinite([x0, y0, x1, y1])) or min(x0, y0, x1, y1) < 0 or max(x0, y0, x1, y1) > 1:
        raise InvalidArgumentError(f"box {box!r} lies outside [0, 1]; give (x0, y0, x1, y1) as fractions of the "
                                   "image's width and height")
    if not (x0 < x1 and y0 < y1):
        raise InvalidArgumentError(f"box {box!r} is empty; give x0 < x1 and y0 < y1")
    xs, ys = (np.arange(width) + 0.5) / width, (np.arange(height) + 0.5) / height
    inside = (ys[:, None] >= y0) & (ys[:, None] < y1) & (xs[None, :] >= x0) & (xs[None, :] < x1)
    if not inside.any():
        raise InvalidArgumentError(f"box {box!r} holds no pixel centre of a {width}×{height} image; make it larger")
    return inside.astype(np.float32)


def resize_mask(mask: np.ndarray | torch.Tensor, height: int, width: int) -> torch.Tensor:
    """A mask area-averaged to ``(height, width)`` as ``[1, 1, height, width]``: area resizing keeps its mean,
    so a soft edge stays soft at latent size."""
    m = torch.as_tensor(np.asarray(mask, dtype=np.float32))[None, None]
    return torch.nn.functional.interpolate(m, size=(height, width), mode="area")


def blur_mask(mask: np.ndarray, radius: float) -> np.ndarray:
    """A Gaussian-blurred copy of ``mask`` (A1111's "mask blur"); radius 0 returns it unchanged."""
    if radius <= 0:
        return mask
    image = Image.fromarray((mask * 255).round().astype(np.uint8), "L")
    return np.asarray(image.filter(ImageFilter.GaussianBlur(radius)), dtype=np.float32) / 255.0


def composite(generated: Image.Image, original: Image.Image, mask: np.ndarray) -> Image.Image:
    """``generated`` where ``mask`` is 1, ``original`` where it is 0, blended in between.

    Where the mask is exactly 0 the result is ``original``'s pixels, bit for bit: what a technique that keeps a
    region promises, since the VAE decoder mixes the whole latent and would otherwise shift kept pixels.
    """
    g = np.asarray(generated.convert("RGB"), dtype=np.float32)
    o = np.asarray(original.convert("RGB"), dtype=np.float32)
    m = mask[..., None]
    out = np.where(m == 0, o, np.where(m == 1, g, o * (1 - m) + g * m))
    return Image.fromarray(np.clip(out + 0.5, 0, 255).astype(np.uint8))


def grid(images, columns: int | None = None, scale: int = 1) -> Image.Image:
    """Images in rows of ``columns`` (default: one row), enlarged ``scale`` times without smoothing.

    Accepts PIL images or arrays, and a list of rows (each a list) for a table of pictures.
    """
    if images and isinstance(images[0], (list, tuple)):
        columns = max(len(row) for row in images)
        images = [im for row in images for im in list(row) + [None] * (columns - len(row))]
    pictures = [None if im is None else to_pil(im).convert("RGB") for im in images]
    if not any(pictures):
        raise InvalidArgumentError("grid needs at least one image")
    columns = columns or len(pictures)
    w, h = next(p for p in pictures if p is not None).size
    rows = math.ceil(len(pictures) / columns)
    canvas = Image.new("RGB", (columns * w, rows * h), "white")
    for k, picture in enumerate(pictures):
        if picture is not None:
            canvas.paste(picture, ((k % columns) * w, (k // columns) * h))
    return enlarge(canvas, scale)


def enlarge(image: Image.Image, scale: int) -> Image.Image:
    """``image`` enlarged ``scale`` times with nearest-neighbour sampling (pixels stay sharp)."""
    return image.resize((image.width * scale, image.height * scale), Image.NEAREST) if scale > 1 else image


def png_bytes(image: Any) -> bytes:
    """The PNG encoding of an image (PIL or array)."""
    buffer = io.BytesIO()
    to_pil(image).save(buffer, format="PNG")
    return buffer.getvalue()


def from_png_bytes(data: bytes) -> Image.Image:
    """Inverse of :func:`png_bytes`."""
    return Image.open(io.BytesIO(bytes(data))).copy()


def png_text(image: Any) -> str:
    """An image as base64 PNG text (lossless, so a recipe reproduces img2img bit for bit)."""
    return base64.b64encode(png_bytes(image)).decode("ascii")


def from_png_text(text: str) -> Image.Image:
    """Inverse of :func:`png_text`, as RGB."""
    return from_png_bytes(base64.b64decode(text)).convert("RGB")
