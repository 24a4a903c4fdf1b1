"""Widgets bound to the Session (anywidget front ends in ``static/``). Each also works on its own."""

from .box_editor import BoxEditor
from .curve_editor import CurveEditor
from .latent_navigator import LatentNavigator
from .mask_painter import MaskPainter
from .profiler_view import ProfilerView
from .schedule_plotter import SchedulePlotter
from .step_preview import StepPreview

__all__ = ["BoxEditor", "CurveEditor", "LatentNavigator", "MaskPainter", "ProfilerView", "SchedulePlotter",
           "StepPreview"]
