"""Generation settings shared by every technique: validated once, serialised once.

A technique's public call takes these as keyword arguments beside its own parameters (``SETTINGS_DOC`` is the
one description of them); :func:`split_options` separates them from the run options, which shape how a run is
watched (callbacks, progress, trajectory) but never what it produces, so they are not recorded in a Recipe.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace

import numpy as np

from ..errors import InvalidArgumentError, UnknownNameError
from .curves import Curve, curve_values
from .samplers import check_sampler_options, get_sampler
from .schedules import SCHEDULES
from .thresholding import DynamicThreshold, MimicThreshold

THRESHOLDS = {"dynamic": DynamicThreshold, "mimic": MimicThreshold}
# seeds feed torch.Generator.manual_seed after adding the image index and a per-stage offset
SEED_LIMIT = 2**63 - 2**32

SETTINGS_DOC = """
        width, height: image size in pixels (multiples of the model's size multiple); default the model's own.
        steps: sampler steps. sampler: one of ``sampling.SAMPLERS`` (euler, euler_ancestral, heun, dpmpp_2m,
            edm, restart, lcm, flow_euler); sampler_options: its options, e.g. ``{"s_churn": 1.0}``.
        schedule: one of ``sampling.SCHEDULES`` ("default" is the model's own); schedule_options, e.g.
            ``{"rho": 5.0}``.
        cfg: guidance scale, a number or a per-step curve (a list of one value per step, or ``f(step, steps)``);
            ``None`` takes the model's recommended scale. cfg_rescale: φ of CFG rescale in [0, 1] (a curve too).
        threshold: ``None``, ``"dynamic"``, ``"mimic"``, a dict ``{"kind": ..., **parameters}`` or a
            DynamicThreshold/MimicThreshold.
        seed: image ``i`` of a batch uses noise seed ``seed + i``. batch_size: images per call.
        clip_skip: 1 uses the text encoder's last layer, 2 the one before (A1111's meaning).
        callback: called with each StepEvent; subscribers: a list of such callables.
        keep_trajectory: keep every step's x and x̂0 on the Result (for branching and scrubbing).
        progress: show a progress bar (default: the Session's setting).
"""


@dataclass
class Settings:
    """What every technique's run depends on besides the technique's own parameters (see ``SETTINGS_DOC``)."""

    width: int | None = None
    height: int | None = None
    steps: int = 20
    sampler: str = "euler"
    sampler_options: dict = field(default_factory=dict)
    schedule: str = "default"
    schedule_options: dict = field(default_factory=dict)
    cfg: Curve | None = None
    cfg_rescale: Curve = 0.0
    threshold: object = None
    seed: int = 0
    batch_size: int = 1
    clip_skip: int = 1

    def resolved(self, model) -> "Settings":
        """Validated, with the model's defaults filled in and curves as per-step lists: what a Recipe records.

        ``model`` is the ModelBundle the run uses (its default size, guidance scale and size multiple).
        """
        steps = _positive_int("steps", self.steps)
        dw, dh = model.default_size
        width, height = check_size(model, dw if self.width is None else self.width,
                                   dh if self.height is None else self.height)
        get_sampler(self.sampler)
        if self.schedule not in SCHEDULES:
            raise UnknownNameError("schedule", str(self.schedule), SCHEDULES)
        if not isinstance(self.schedule_options, dict):
            raise InvalidArgumentError(f"schedule_options {self.schedule_options!r} must be a dict, e.g. {{'rho': 5}}")
        cfg = model.default_cfg if self.cfg is None else self.cfg
        return replace(
            self, width=width, height=height, steps=steps,
            sampler_options=check_sampler_options(self.sampler, dict(self.sampler_options or {})),
            schedule_options=dict(self.schedule_options),
            cfg=curve_setting("cfg", cfg, steps, low=0.0),
            cfg_rescale=curve_setting("cfg_rescale", self.cfg_rescale, steps, low=0.0, high=1.0),
            threshold=threshold_spec(self.threshold), seed=check_seed(self.seed),
            batch_size=_positive_int("batch_size", self.batch_size), clip_skip=_positive_int("clip_skip", self.clip_skip))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Settings":
        unknown = sorted(set(data) - set(NAMES))
        if unknown:
            raise InvalidArgumentError(f"settings have unknown fields {unknown}; known: {', '.join(NAMES)}")
        return cls(**data)


NAMES = tuple(f.name for f in fields(Settings))
RUN_OPTIONS = ("callback", "subscribers", "keep_trajectory", "progress")
# what a branch from step k may change: the rest (size, steps, schedule, batch) fixes the states already made
BRANCHABLE = ("sampler", "sampler_options", "cfg", "cfg_rescale", "threshold", "seed", "clip_skip")


@dataclass
class RunOptions:
    """How a run is watched: step-event subscribers, the trajectory, the progress bar. Never recorded."""

    callback: object = None
    subscribers: list = field(default_factory=list)
    keep_trajectory: bool = False
    progress: bool | None = None

    def listeners(self) -> list:
        """The step-event subscribers, the callback last (so a widget sees the state the others produced)."""
        return [*self.subscribers, *([self.callback] if self.callback is not None else [])]


def split_options(options: dict, *, technique: str, own: tuple[str, ...] = ()) -> tuple[Settings, RunOptions]:
    """Separate a technique call's keyword arguments into Settings and RunOptions; name any unknown one."""
    unknown = sorted(set(options) - set(NAMES) - set(RUN_OPTIONS))
    if unknown:
        known = ", ".join(sorted({*NAMES, *RUN_OPTIONS, *own}))
        raise InvalidArgumentError(f"{technique} has no argument {', '.join(map(repr, unknown))}; it takes: {known}")
    settings = Settings(**{k: v for k, v in options.items() if k in NAMES})
    run = RunOptions(**{k: v for k, v in options.items() if k in RUN_OPTIONS})
    if run.callback is not None and not callable(run.callback):
        raise InvalidArgumentError(f"callback {run.callback!r} is not callable; pass f(event) or None")
    if not isinstance(run.subscribers, (list, tuple)) or not all(callable(s) for s in run.subscribers):
        raise InvalidArgumentError("subscribers must be a list of callables f(event)")
    run.subscribers = list(run.subscribers)
    return settings, run


def check_size(model, width, height) -> tuple[int, int]:
    """``(width, height)`` as ints, or an error naming the nearest size this model can make."""
    m = model.size_multiple
    for name, value in (("width", width), ("height", height)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < m or value % m:
            number = value if isinstance(value, (int, float)) and math.isfinite(value) else m
            near = max(m, int(round(number / m)) * m)
            raise InvalidArgumentError(
                f"{name} {value!r} is not a positive multiple of {m}, which this model's VAE and UNet need; "
                f"use {near}")
    return int(width), int(height)


def check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < SEED_LIMIT:
        raise InvalidArgumentError(f"seed {seed!r} must be an integer in [0, 2**63 − 2**32); any other "
                                   "value cannot seed torch's generator for every image of a batch")
    return int(seed)


def curve_setting(name: str, value, steps: int, *, low: float | None = None, high: float | None = None):
    """A number stays a float; a list or function becomes one value per step (what the Recipe records).

    A list must have exactly one value per step: a curve drawn for another step count would silently be cut
    or stretched.
    """
    if isinstance(value, (str, bytes, bool)) or not (isinstance(value, (int, float, np.number, list, tuple))
                                                      or callable(value)):
        raise InvalidArgumentError(f"{name} {value!r} must be a number, a list of one number per step, or "
                                   f"f(step, steps); got {type(value).__name__}")
    if isinstance(value, (list, tuple)):
        if len(value) != steps:
            raise InvalidArgumentError(f"{name} curve has {len(value)} values but the run has {steps} steps; give "
                                       f"one value per step (CurveEditor.values_for({steps}) resamples a drawn curve)")
        if any(isinstance(v, (str, bytes, bool)) or not isinstance(v, (int, float, np.number)) for v in value):
            raise InvalidArgumentError(f"{name} curve {list(value)!r} must hold numbers only")
    values = [float(value)] if isinstance(value, (int, float, np.number)) else curve_values(value, steps, name)
    bad = [v for v in values if not math.isfinite(v) or (low is not None and v < low) or (high is not None
                                                                                          and v > high)]
    if bad:
        span = f"[{low}, {high}]" if high is not None else f"≥ {low}"
        raise InvalidArgumentError(f"{name} value {bad[0]!r} is outside {span}; give finite values in that range")
    return values[0] if isinstance(value, (int, float, np.number)) else values


def threshold_spec(value) -> dict | None:
    """A threshold as ``{"kind": ..., **parameters}`` (checked by building it once), or None."""
    if value is None:
        return None
    if isinstance(value, str):
        value = {"kind": value}
    elif is_dataclass(value) or isinstance(value, tuple(THRESHOLDS.values())):
        kind = next((k for k, cls in THRESHOLDS.items() if isinstance(value, cls)), None)
        value = {"kind": kind, **vars(value)} if kind else value
    if not isinstance(value, dict):
        raise InvalidArgumentError(f"threshold {value!r} is not one of None, {sorted(THRESHOLDS)}, a dict "
                                   "{'kind': ..., ...} or a DynamicThreshold/MimicThreshold")
    make_threshold(value)
    return dict(value)


def make_threshold(spec: dict | None):
    """The threshold object a spec describes (the guider applies it to x̂0)."""
    if spec is None:
        return None
    options = dict(spec)
    kind = options.pop("kind", None)
    if kind not in THRESHOLDS:
        raise UnknownNameError("threshold", str(kind), THRESHOLDS)
    try:
        return THRESHOLDS[kind](**options)
    except TypeError as err:
        raise InvalidArgumentError(f"threshold {kind!r} does not take {sorted(options)}: {err}") from err


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InvalidArgumentError(f"{name} {value!r} must be a positive integer")
    return int(value)



def documents_settings(function):
    """Append the shared settings' description to a technique call's docstring (for help() and completion)."""
    function.__doc__ = (function.__doc__ or "").rstrip() + "\n\n    Settings and run options (keywords):" + SETTINGS_DOC
    return function
