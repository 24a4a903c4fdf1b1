"""Measuring instruments: prompt adherence on the bundled model's world, and image statistics."""

from .adherence import Detection, ObjectScore, Score, adherence_value, batch_rates, classify_shape, detect, palette_error, score, score_batch
from .image import brightness, change, clipped_fraction, saturation, sharpness

__all__ = ["Detection", "ObjectScore", "Score", "adherence_value", "batch_rates", "brightness", "change", "classify_shape", "clipped_fraction", "detect",
           "palette_error", "saturation", "score", "score_batch", "sharpness"]
