"""CurveEditor: keyframes over the denoising steps → one value per step for any guider scalar
(cfg, CFG-rescale φ, control strength, differential strength)."""

from __future__ import annotations

import math

import numpy as np
import traitlets

from ..errors import InvalidArgumentError
from ._base import Widget, load_esm


def _keyframes_from_json(value, widget=None):
    return [(int(step), float(v)) for step, v in value]


class CurveEditor(Widget):
    """``.values`` is piecewise linear between keyframes ``(step, value)``, constant beyond the first and last.

    Click to add a keyframe, drag one to move it, double-click (or select and press Delete) to remove it.
    Dragged values snap to a 1-2-5 increment of about 1/150 of ``value_range`` (0.1 for 0–15) and show with two
    decimals; the step and value fields below the plot edit the selected keyframe exactly. ``label`` names
    the value on the axis (e.g. ``label="cfg"``).

    ``.values`` is a list with one float per step, so it can be passed wherever a :data:`Curve` is accepted;
    a run of another step count takes ``.values_for(steps)`` (a Session refuses a curve of the wrong length).

    Keyboard, once a keyframe is selected: ←/→ move it one step, ↑/↓ one snap increment (Shift: ten),
    Delete or Backspace removes it, Escape deselects.
    """

    _esm = load_esm("curve_editor.js")

    steps = traitlets.Int(20).tag(sync=True)
    value_range = traitlets.Tuple(traitlets.Float(), traitlets.Float(), default_value=(0.0, 15.0)).tag(sync=True)
    keyframes = traitlets.List().tag(sync=True, from_json=_keyframes_from_json)
    label = traitlets.Unicode("value").tag(sync=True)

    def __init__(self, steps: int = 20, value_range=(0.0, 15.0), keyframes=None, label: str = "value", **kwargs):
        lo, hi = (float(v) for v in value_range)
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise InvalidArgumentError(f"value_range {value_range!r} must be two finite numbers, low < high")
        if keyframes is None:
            middle = (lo + hi) / 2
            keyframes = [(0, middle), (steps - 1, middle)]
        super().__init__(steps=steps, value_range=(lo, hi), label=label, **kwargs)
        self.keyframes = list(keyframes)  # after steps is set, so the step-count rescale does not apply

    @traitlets.validate("keyframes")
    def _check_keyframes(self, proposal):
        lo, hi = self.value_range
        by_step = {}
        for entry in proposal["value"]:
            if len(entry) != 2:
                raise InvalidArgumentError(f"keyframe {entry!r} must be (step, value)")
            step, value = entry
            if not (0 <= step <= self.steps - 1) or int(step) != step:
                raise InvalidArgumentError(f"keyframe step {step!r} must be an integer in [0, {self.steps - 1}]")
            if not lo <= value <= hi:
                raise InvalidArgumentError(f"keyframe value {value!r} at step {step} is outside value_range "
                                           f"({lo}, {hi}); widen value_range")
            by_step[int(step)] = float(value)
        if not by_step:
            raise InvalidArgumentError("a curve needs at least one keyframe")
        return sorted(by_step.items())

    @traitlets.validate("steps")
    def _check_steps(self, proposal):
        if proposal["value"] < 1:
            raise InvalidArgumentError(f"steps must be ≥ 1, got {proposal['value']}")
        return proposal["value"]

    @traitlets.observe("steps")
    def _rescale_keyframes(self, change):
        """Keep keyframes at the same fraction of the run when the step count changes."""
        old, new = change["old"], change["new"]
        if not self.keyframes:
            return
        scale = (new - 1) / (old - 1) if old and old > 1 else 0.0
        self.keyframes = [(round(step * scale), value) for step, value in self.keyframes]

    @property
    def values(self) -> list[float]:
        """One value per step, linear between keyframes."""
        steps, values = zip(*self.keyframes)
        return np.interp(np.arange(self.steps), steps, values).tolist()

    def values_for(self, steps: int) -> list[float]:
        """The curve resampled to ``steps`` values, each at the same fraction of the run as here (the first
        and last values stay the first and last), for a run of another step count."""
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise InvalidArgumentError(f"steps must be an integer ≥ 1, got {steps!r}")
        at, values = zip(*self.keyframes)
        return np.interp(np.linspace(0, self.steps - 1, steps), at, values).tolist()

    def __repr__(self) -> str:
        return f"CurveEditor(steps={self.steps}, {len(self.keyframes)} keyframes)"
