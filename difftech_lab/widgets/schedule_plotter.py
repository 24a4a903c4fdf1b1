"""SchedulePlotter: σ and log-SNR against the step for the noise schedules of ``sampling.schedules`` overlaid,
with the σ's a run actually used (churn and restart segments included)."""

from __future__ import annotations

import math

import torch
import traitlets

from ..errors import InvalidArgumentError, UnknownNameError
from ..models.parameterization import EpsDiscrete, FlowMatch, ModelSampling, betas_for
from ..sampling.schedules import RANGE_SCHEDULES, SCHEDULES, make_sigmas, schedules_for
from ._base import Widget, load_esm

# SD 1.x/2.x's training schedule, plotted when no model is given: the usual range, and every model-based
# schedule (default, leading, sgm_uniform, …) still has a model to be computed from
SD_MODEL_SAMPLING = EpsDiscrete.from_betas(betas_for("scaled_linear", 0.00085, 0.012, 1000))

# One colour per schedule, by its place in the table, so a schedule keeps its colour whichever are shown
PALETTE = ("#9467bd", "#1f77b4", "#ff7f0e", "#2ca02c", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
           "#393b79", "#d62728")
USED_COLOR = "#000"

# The ρ control of each schedule that has one
RHO_CONTROLS = {"karras": "rho", "polyexponential": "poly_rho"}


def log_snr(sigma: float, flow: bool = False) -> float | None:
    """λ = log(signal²/noise²); None (JSON null) where it is infinite.

    In the σ-space view (x = x0 + σ·ε) λ = −2·ln σ. A flow model's σ is its time t in [0, 1]
    (x = (1−σ)·x0 + σ·ε), so there λ = 2·ln((1−σ)/σ), infinite at both ends.
    """
    if flow:
        return 2.0 * math.log((1.0 - sigma) / sigma) if 0 < sigma < 1 else None
    return -2.0 * math.log(sigma) if sigma > 0 else None


def curve(name: str, sigmas, color: str, flow: bool = False) -> dict:
    """What the plot draws for one series: its colour, and σ and log-SNR per point."""
    sigma = [float(s) for s in sigmas]
    return {"name": name, "color": color, "sigma": sigma, "log_snr": [log_snr(s, flow) for s in sigma]}


def schedule_color(name: str) -> str:
    return PALETTE[list(SCHEDULES).index(name) % len(PALETTE)]


def _dynamic_shift(model_sampling: ModelSampling) -> bool:
    return isinstance(model_sampling, FlowMatch) and model_sampling.use_dynamic_shifting


class SchedulePlotter(Widget):
    """Overlay of the schedules in ``sampling.schedules.SCHEDULES``; :attr:`sigmas` is the chosen one as a σ
    tensor (``steps + 1`` entries, last 0). "default" is the model's own schedule.

    Click a schedule's chip in the legend (or Tab to it and press Enter or Space) to choose it; the σ's a
    Result used show as hollow markers over the schedules, in the order they were evaluated, and cannot be
    chosen. When their count differs from ``steps + 1`` (another step count, churn or restart evaluations)
    every series is drawn against the fraction of the run (step ÷ steps) instead of the step. For a flow
    model σ is the flow time t in [0, 1], drawn on a linear axis, and log-SNR is 2·ln((1−σ)/σ).

    Keyboard: in a number box, ↑/↓ change the value, Enter applies it and Escape abandons the edit.

    Args:
        model_sampling: the model's σ-space view; its σ range, its own schedule and the schedules built from its
            training σ's are plotted. Without one (and no session), SD 1.x's.
        session: a Session, whose ``model_sampling`` is used.
        result: a Result whose ``sigmas_used`` to overlay (see :meth:`show_result`).
    """

    _esm = load_esm("schedule_plotter.js")

    steps = traitlets.Int(20).tag(sync=True)
    sigma_min = traitlets.Float(help="σ range of karras/exponential/polyexponential; the model's by default").tag(
        sync=True)
    sigma_max = traitlets.Float().tag(sync=True)
    rho = traitlets.Float(7.0, help="Karras ρ").tag(sync=True)
    poly_rho = traitlets.Float(2.0, help="polyexponential ρ (1 is the exponential schedule)").tag(sync=True)
    shift = traitlets.Float(3.0, help="flow-matching timestep shift; the flow model's by default").tag(sync=True)
    shown = traitlets.List(traitlets.Unicode()).tag(sync=True)
    schedule = traitlets.Unicode("karras").tag(sync=True)
    curves = traitlets.List(help="computed: [{name, color, sigma: [...], log_snr: [...]}]").tag(sync=True)
    used = traitlets.Dict(help="computed: the σ's a run evaluated, in order, as a curve").tag(sync=True)
    flow = traitlets.Bool(False, read_only=True, help="True for a flow model, whose σ is its time in [0, 1]").tag(
        sync=True)

    def __init__(self, model_sampling=None, *, session=None, result=None, **kwargs):
        if model_sampling is None and session is not None:
            model_sampling = session.model_sampling
        self.model_sampling = SD_MODEL_SAMPLING if model_sampling is None else model_sampling
        kwargs.setdefault("sigma_min", self.model_sampling.sigma_min)
        kwargs.setdefault("sigma_max", self.model_sampling.sigma_max)
        if isinstance(self.model_sampling, FlowMatch):
            kwargs.setdefault("shift", self._model_shift())
        kwargs.setdefault("shown", schedules_for(self.model_sampling))
        super().__init__(**kwargs)
        self.set_trait("flow", isinstance(self.model_sampling, FlowMatch))
        self._recompute()
        if result is not None:
            self.show_result(result)

    def _model_shift(self) -> float:
        """The flow model's shift; for a size-dependent (Flux) one e^μ at its largest image, as "default" is shown."""
        ms = self.model_sampling
        return math.exp(ms.max_shift) if _dynamic_shift(ms) else ms.shift

    def schedule_options(self, name: str) -> dict:
        """The controls that apply to schedule ``name`` as make_sigmas options: pass them with the schedule as
        ``session.generate(schedule=name, schedule_options=...)`` to sample with what the plot shows."""
        options = {}
        if name in RANGE_SCHEDULES:
            options = {"sigma_min": self.sigma_min, "sigma_max": self.sigma_max}
        if name in RHO_CONTROLS:
            options["rho"] = getattr(self, RHO_CONTROLS[name])
        dynamic = _dynamic_shift(self.model_sampling)
        if name == "flow":
            options = {"mu": math.log(self.shift)} if dynamic else {"shift": self.shift}
        if name == "default" and dynamic:  # the shift follows the image size: show the model's largest
            options = {"image_seq_len": self.model_sampling.max_image_seq_len}
        return options

    def schedule_sigmas(self, name: str) -> torch.Tensor:
        """σ's of schedule ``name`` under the current controls."""
        return make_sigmas(name, self.model_sampling, self.steps, **self.schedule_options(name))

    @property
    def sigmas(self) -> torch.Tensor:
        """The chosen schedule's σ's, ready for a sampler."""
        return self.schedule_sigmas(self.schedule)

    def show_result(self, result) -> None:
        """Overlay the σ's ``result`` evaluated (``result.sigmas_used``, churn/restart segments included)."""
        self.used = curve("used", result.sigmas_used, USED_COLOR, self.flow)

    @traitlets.validate("schedule")
    def _check_schedule(self, proposal):
        name, applicable = proposal["value"], schedules_for(self.model_sampling)
        if name not in SCHEDULES:
            raise UnknownNameError("schedule", name, SCHEDULES)
        if name not in applicable:
            raise InvalidArgumentError(
                f"schedule {name!r} does not apply to this plotter's {type(self.model_sampling).__name__} model; "
                f"choose one of {', '.join(applicable)}, or pass a flow model as model_sampling= or session="
            )
        return name

    @traitlets.observe("steps", "sigma_min", "sigma_max", "rho", "poly_rho", "shift", "shown")
    def _controls_changed(self, change):
        self.guarded(self._recompute)()

    def _recompute(self) -> None:
        self.curves = [curve(name, self.schedule_sigmas(name), schedule_color(name), self.flow) for name in self.shown]
        self.error = ""

    def __repr__(self) -> str:
        return f"SchedulePlotter(steps={self.steps}, schedule={self.schedule!r})"
