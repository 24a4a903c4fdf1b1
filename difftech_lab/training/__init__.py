"""Procedural captioned-shapes data and the stages that train the bundled model."""

from difftech_lab.training.dataset import Sample, held_out_specs, is_held_out, render, sample

__all__ = ["Sample", "held_out_specs", "is_held_out", "render", "sample"]
