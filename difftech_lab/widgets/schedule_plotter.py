"""SchedulePlotter: σ and log-SNR against the step for several noise schedules overlaid, with the σ's a run
actually used (churn and restart segments included)."""

from __future__ import annotations

import math

import torch
import traitlets

from ..errors import InvalidArgumentError, UnknownNameError
from ..sampling.schedules import (
    exponential_sigmas,
    flow_sigmas,
    karras_sigmas,
    make_sigmas,
    polyexponential_sigmas,
)
from ._base import Widget, load_esm

SCHEDULES = ("karras", "exponential", "polyexponential", "model", "flow")

# SD 1.x/2.x's training range, shown when no model is given
DEFAULT_SIGMA_MIN, DEFAULT_SIGMA_MAX = 0.0292, 14.6146


def log_snr(sigma: float) -> float | None:
    """λ = log(α²/σ²) = −2·ln σ in the σ-space view (x = x0 + σ·ε); None (JSON null) at σ = 0."""
    return -2.0 * math.log(sigma) if sigma > 0 else None


def curve(name: str, sigmas) -> dict:
    """What the plot draws for one series: σ and log-SNR per point."""
    sigma = [float(s) for s in sigmas]
    return {"name": name, "sigma": sigma, "log_snr": [log_snr(s) for s in sigma]}


class SchedulePlotter(Widget):
    """Overlay of schedules; :attr:`sigmas` is the chosen one as a σ tensor (``steps + 1`` entries, last 0).

    Args:
        model_sampling: the model's σ-space view (adds its own schedule, "model", and sets the σ range).
        session: a Session, whose ``model_sampling`` is used.
        result: a Result whose ``sigmas_used`` to overlay (see :meth:`show_result`).
    """

    _esm = load_esm("schedule_plotter.js")

    steps = traitlets.Int(20).tag(sync=True)
    sigma_min = traitlets.Float(DEFAULT_SIGMA_MIN).tag(sync=True)
    sigma_max = traitlets.Float(DEFAULT_SIGMA_MAX).tag(sync=True)
    rho = traitlets.Float(7.0, help="Karras ρ").tag(sync=True)
    poly_rho = traitlets.Float(2.0, help="polyexponential ρ (1 is the exponential schedule)").tag(sync=True)
    shift = traitlets.Float(3.0, help="flow-matching timestep shift (SD3 uses 3)").tag(sync=True)
    shown = traitlets.List(traitlets.Unicode()).tag(sync=True)
    schedule = traitlets.Unicode("karras").tag(sync=True)
    curves = traitlets.List(help="computed: [{name, sigma: [...], log_snr: [...]}]").tag(sync=True)
    used = traitlets.Dict(help="computed: the σ's a run evaluated, in order, as a curve").tag(sync=True)

    def __init__(self, model_sampling=None, *, session=None, result=None, **kwargs):
        if model_sampling is None and session is not None:
            model_sampling = session.model_sampling
        self.model_sampling = model_sampling
        if model_sampling is not None:
            kwargs.setdefault("sigma_min", model_sampling.sigma_min)
            kwargs.setdefault("sigma_max", model_sampling.sigma_max)
        kwargs.setdefault("shown", [s for s in SCHEDULES if s != "model" or model_sampling is not None])
        super().__init__(**kwargs)
        self._recompute()
        if result is not None:
            self.show_result(result)

    def schedule_sigmas(self, name: str) -> torch.Tensor:
        """σ's of schedule ``name`` under the current controls."""
        n, lo, hi = self.steps, self.sigma_min, self.sigma_max
        if name == "karras":
            return karras_sigmas(n, lo, hi, self.rho)
        if name == "exponential":
            return exponential_sigmas(n, lo, hi)
        if name == "polyexponential":
            return polyexponential_sigmas(n, lo, hi, self.poly_rho)
        if name == "flow":
            return flow_sigmas(n, self.shift)
        if name == "model":
            if self.model_sampling is None:
                raise InvalidArgumentError("schedule 'model' needs model_sampling= or session= when building the plotter")
            return make_sigmas("default", self.model_sampling, n)
        raise UnknownNameError("schedule", name, SCHEDULES)

    @property
    def sigmas(self) -> torch.Tensor:
        """The chosen schedule's σ's, ready for a sampler."""
        return self.schedule_sigmas(self.schedule)

    def show_result(self, result) -> None:
        """Overlay the σ's ``result`` evaluated (``result.sigmas_used``, churn/restart segments included)."""
        self.used = curve("used", result.sigmas_used)

    @traitlets.validate("schedule")
    def _check_schedule(self, proposal):
        if proposal["value"] not in SCHEDULES:
            raise UnknownNameError("schedule", proposal["value"], SCHEDULES)
        return proposal["value"]

    @traitlets.observe("steps", "sigma_min", "sigma_max", "rho", "poly_rho", "shift", "shown")
    def _controls_changed(self, change):
        self.guarded(self._recompute)()

    def _recompute(self) -> None:
        self.curves = [curve(name, self.schedule_sigmas(name)) for name in self.shown]
        self.error = ""

    def __repr__(self) -> str:
        return f"SchedulePlotter(steps={self.steps}, schedule={self.schedule!r})"
