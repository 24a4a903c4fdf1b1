"""Image statistics that techniques move: edge sharpness, clipped pixels, saturation, brightness, and the change
between two images. Each takes PIL images or ``[H, W, 3]`` uint8 arrays and returns one value per image, so they
plug into ``automation.compare`` as metrics."""

from __future__ import annotations

import numpy as np

from ..images import to_rgb


def _pixels(image) -> np.ndarray:
    return np.asarray(to_rgb(image), dtype=np.float32) / 255.0


def sharpness(images) -> list[float]:
    """Mean gradient magnitude of the luminance (central differences), per image: higher is crisper edges."""
    out = []
    for image in images:
        y = _pixels(image) @ np.array([0.299, 0.587, 0.114], np.float32)
        gy, gx = np.gradient(y)
        out.append(float(np.hypot(gx, gy).mean()))
    return out


def clipped_fraction(images) -> list[float]:
    """The share of channel values at 0 or 255: what over-strong guidance burns out."""
    return [float(np.mean((p <= 0.0) | (p >= 1.0))) for p in map(_pixels, images)]


def saturation(images) -> list[float]:
    """Mean HSV saturation (max − min over max, 0 for black), per image."""
    out = []
    for p in map(_pixels, images):
        hi, lo = p.max(-1), p.min(-1)
        out.append(float(np.where(hi > 0, (hi - lo) / np.maximum(hi, 1e-8), 0.0).mean()))
    return out


def brightness(images) -> list[float]:
    """Mean luminance in [0, 1], per image."""
    return [float((p @ np.array([0.299, 0.587, 0.114], np.float32)).mean()) for p in map(_pixels, images)]


def change(before, after, mask=None) -> float:
    """Mean absolute pixel change in [0, 1] between two images of one size, inside ``mask`` (2-D, at image size,
    True/weights where counted) or everywhere."""
    d = np.abs(_pixels(after) - _pixels(before)).mean(-1)
    if mask is None:
        return float(d.mean())
    w = np.asarray(mask, dtype=np.float32)
    return float((d * w).sum() / max(w.sum(), 1e-8))
