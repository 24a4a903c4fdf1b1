"""Measures every notebook reports: prompt adherence on the bundled model's captioned-shapes grammar."""

from .adherence import Detection, ObjectScore, Score, classify_shape, detect, score, score_batch

__all__ = ["Detection", "ObjectScore", "Score", "classify_shape", "detect", "score", "score_batch"]
