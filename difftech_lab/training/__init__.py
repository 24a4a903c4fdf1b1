"""Procedural captioned-shapes data, the adherence scorer, and the stages that train the bundled model."""

from difftech_lab.training.dataset import (
    ObjectSpec, Sample, SceneSpec, caption, held_out_specs, is_held_out, parse_caption, render, sample,
)
from difftech_lab.training.scorer import Score, score, score_batch

__all__ = [
    "ObjectSpec", "Sample", "SceneSpec", "caption", "held_out_specs", "is_held_out", "parse_caption", "render",
    "sample", "Score", "score", "score_batch",
]
