"""Noise schedules: functions returning a 1-D float32 σ tensor, strictly decreasing, ending in 0 (k-diffusion style).

A schedule of ``n`` steps has ``n + 1`` entries: the σ each step starts from, and the final 0.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

from difftech_lab.errors import InvalidArgumentError, UnknownNameError
from difftech_lab.models.parameterization import DiscreteModelSampling, FlowMatch, ModelSampling

SPACINGS = ("leading", "linspace", "trailing")


def _check_steps(n: int) -> None:
    if not isinstance(n, int) or n < 1:
        raise InvalidArgumentError(f"number of steps must be an integer ≥ 1, got {n!r}")


def _check_range(sigma_min: float, sigma_max: float) -> None:
    if not 0 < sigma_min < sigma_max < math.inf:
        raise InvalidArgumentError(
            f"need 0 < sigma_min < sigma_max < inf, got sigma_min={sigma_min}, sigma_max={sigma_max}; "
            "use the model's model_sampling.sigma_min / sigma_max"
        )


def _append_zero(sigmas: torch.Tensor) -> torch.Tensor:
    return torch.cat([sigmas.to(torch.float32), sigmas.new_zeros(1, dtype=torch.float32)])


def karras_sigmas(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> torch.Tensor:
    """Karras et al. 2022 eq. 5: σ_i = (σ_max^{1/ρ} + i/(n−1)·(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ."""
    _check_steps(n)
    _check_range(sigma_min, sigma_max)
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    max_inv_rho, min_inv_rho = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    return _append_zero((max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** rho)


def exponential_sigmas(n: int, sigma_min: float, sigma_max: float) -> torch.Tensor:
    """Constant step in log σ from σ_max to σ_min (k-diffusion get_sigmas_exponential)."""
    _check_steps(n)
    _check_range(sigma_min, sigma_max)
    return _append_zero(torch.linspace(math.log(sigma_max), math.log(sigma_min), n, dtype=torch.float64).exp())


def polyexponential_sigmas(n: int, sigma_min: float, sigma_max: float, rho: float = 1.0) -> torch.Tensor:
    """Polynomial in log σ: σ_i = exp(ramp_i^ρ·(ln σ_max − ln σ_min) + ln σ_min), ramp = linspace(1, 0, n)."""
    _check_steps(n)
    _check_range(sigma_min, sigma_max)
    ramp = torch.linspace(1, 0, n, dtype=torch.float64) ** rho
    return _append_zero((ramp * (math.log(sigma_max) - math.log(sigma_min)) + math.log(sigma_min)).exp())


def _spaced_timesteps(num_train_timesteps: int, n: int, spacing: str, steps_offset: int) -> np.ndarray:
    """Inference timesteps as diffusers EulerDiscreteScheduler.set_timesteps picks them (Lin et al. 2023 Table 2)."""
    T = num_train_timesteps
    if spacing == "linspace":
        return np.linspace(0, T - 1, n, dtype=np.float32)[::-1].copy()
    if spacing == "leading":
        return (np.arange(0, n) * (T // n)).round()[::-1].astype(np.float32) + steps_offset
    if spacing == "trailing":
        return np.arange(T, 0, -T / n).round().astype(np.float32) - 1
    raise UnknownNameError("timestep spacing", spacing, SPACINGS)


def discrete_sigmas(
    model_sampling: ModelSampling, n: int, spacing: str = "leading", steps_offset: int = 1
) -> torch.Tensor:
    """The model's own training σ's at diffusers' spaced timesteps, σ linearly interpolated in t as diffusers does."""
    _check_steps(n)
    sigmas = model_sampling.sigmas
    T = len(sigmas)
    if n > T:
        raise InvalidArgumentError(f"{n} steps exceed the model's {T} training timesteps; use at most {T}")
    timesteps = _spaced_timesteps(T, n, spacing, steps_offset)
    if timesteps.max() > T - 1:
        raise InvalidArgumentError(
            f"steps_offset={steps_offset} pushes timestep {timesteps.max():g} past the last training step {T - 1}"
        )
    picked = np.interp(timesteps, np.arange(T), sigmas.numpy())
    return _append_zero(torch.from_numpy(picked))


def _timestep_range(model_sampling: ModelSampling) -> tuple[float, float]:
    """Timesteps of the model's σ_max and σ_min."""
    ends = torch.tensor([model_sampling.sigma_max, model_sampling.sigma_min], dtype=torch.float64)
    start, end = model_sampling.sigma_to_t(ends).tolist()
    return start, end


def sgm_uniform_sigmas(model_sampling: ModelSampling, n: int) -> torch.Tensor:
    """Uniform in timestep from t(σ_max), n of n+1 points, the last replaced by 0 (SGM / ComfyUI sgm_uniform)."""
    _check_steps(n)
    start, end = _timestep_range(model_sampling)
    timesteps = torch.linspace(start, end, n + 1, dtype=torch.float64)[:-1]
    return _append_zero(model_sampling.t_to_sigma(timesteps))


def uniform_sigmas(model_sampling: ModelSampling, n: int) -> torch.Tensor:
    """Uniform in timestep from t(σ_max) to t(σ_min) inclusive, then 0 (ComfyUI "normal")."""
    _check_steps(n)
    start, end = _timestep_range(model_sampling)
    return _append_zero(model_sampling.t_to_sigma(torch.linspace(start, end, n, dtype=torch.float64)))


def simple_sigmas(model_sampling: ModelSampling, n: int) -> torch.Tensor:
    """Every (T/n)-th training σ counted down from σ_max (ComfyUI "simple")."""
    _check_steps(n)
    sigmas = model_sampling.sigmas
    if n > len(sigmas):
        raise InvalidArgumentError(f"{n} steps exceed the model's {len(sigmas)} training timesteps")
    stride = len(sigmas) / n
    return _append_zero(torch.stack([sigmas[-(1 + int(i * stride))] for i in range(n)]))


def flow_shift(sigmas: torch.Tensor, shift: float) -> torch.Tensor:
    """SD3 timestep shift (Esser et al. 2024): σ' = s·σ/(1 + (s−1)·σ); fixes 0 and 1, identity at s=1."""
    return shift * sigmas / (1 + (shift - 1) * sigmas)


def dynamic_flow_shift(sigmas: torch.Tensor, mu: float) -> torch.Tensor:
    """Flux exponential shift: σ' = e^μ/(e^μ + (1/σ − 1)); equals flow_shift with s = e^μ."""
    return math.exp(mu) / (math.exp(mu) + (1 / sigmas - 1))


def resolution_shift_mu(
    image_seq_len: int,
    base_seq_len: int = 256,
    max_seq_len: int = 4096,
    base_shift: float = 0.5,
    max_shift: float = 1.15,
) -> float:
    """μ linear in the token count: base_shift at base_seq_len → max_shift at max_seq_len (diffusers calculate_shift)."""
    m = (max_shift - base_shift) / (max_seq_len - base_seq_len)
    return image_seq_len * m + base_shift - m * base_seq_len


def flow_sigmas(
    n: int, shift: float = 1.0, *, sigma_min: float | None = None, sigma_max: float = 1.0, mu: float | None = None
) -> torch.Tensor:
    """Flow-matching σ's: linspace(σ_max, σ_min, n) then shifted (static ``shift``, or Flux ``mu`` if given), then 0.

    ``sigma_min`` defaults to 1/n, a uniform grid 1, (n−1)/n, … 1/n. diffusers FlowMatchEulerDiscreteScheduler uses
    the model's smallest (already shifted) training σ instead; :func:`make_sigmas` passes that to match it.
    """
    _check_steps(n)
    sigma_min = 1.0 / n if sigma_min is None else sigma_min
    if not 0 < sigma_min <= sigma_max <= 1:
        raise InvalidArgumentError(f"flow sigmas need 0 < sigma_min ≤ sigma_max ≤ 1, got {sigma_min}, {sigma_max}")
    sigmas = torch.linspace(sigma_max, sigma_min, n, dtype=torch.float64)
    sigmas = dynamic_flow_shift(sigmas, mu) if mu is not None else flow_shift(sigmas, shift)
    return _append_zero(sigmas)


def _model_flow_sigmas(model_sampling: ModelSampling, n: int, **options) -> torch.Tensor:
    if not isinstance(model_sampling, FlowMatch):
        raise InvalidArgumentError("schedule 'flow' needs a FlowMatch model; use 'karras' or 'leading' for VP models")
    if model_sampling.use_dynamic_shifting and "mu" not in options:
        if "image_seq_len" not in options:
            raise InvalidArgumentError(
                "this flow model shifts by image size: pass image_seq_len=(latent h/2)·(latent w/2) or mu=..."
            )
        ms = model_sampling
        options["mu"] = resolution_shift_mu(
            options.pop("image_seq_len"), ms.base_image_seq_len, ms.max_image_seq_len, ms.base_shift, ms.max_shift
        )
    options.setdefault("shift", model_sampling.shift)
    return flow_sigmas(n, sigma_min=model_sampling.sigma_min, sigma_max=model_sampling.sigma_max, **options)


def _default_sigmas(model_sampling: ModelSampling, n: int, **options) -> torch.Tensor:
    """The model's own schedule: its configured spacing for discrete VP models, the flow schedule for flow models."""
    if isinstance(model_sampling, FlowMatch):
        return _model_flow_sigmas(model_sampling, n, **options)
    if isinstance(model_sampling, DiscreteModelSampling):
        options.setdefault("steps_offset", model_sampling.steps_offset)
        return discrete_sigmas(model_sampling, n, model_sampling.timestep_spacing, **options)
    return karras_sigmas(n, model_sampling.sigma_min, model_sampling.sigma_max, **options)


def _range_schedule(fn: Callable) -> Callable:
    def schedule(model_sampling: ModelSampling, n: int, **options) -> torch.Tensor:
        options.setdefault("sigma_min", model_sampling.sigma_min)
        options.setdefault("sigma_max", model_sampling.sigma_max)
        return fn(n, **options)

    return schedule


def _spacing_schedule(spacing: str) -> Callable:
    def schedule(model_sampling: ModelSampling, n: int, **options) -> torch.Tensor:
        return discrete_sigmas(model_sampling, n, spacing, **options)

    return schedule


# Schedules over any σ range: they take sigma_min/sigma_max options and use the model only for their defaults
RANGE_SCHEDULES = ("karras", "exponential", "polyexponential")

SCHEDULES: dict[str, Callable[..., torch.Tensor]] = {
    "default": _default_sigmas,
    "karras": _range_schedule(karras_sigmas),
    "exponential": _range_schedule(exponential_sigmas),
    "polyexponential": _range_schedule(polyexponential_sigmas),
    "leading": _spacing_schedule("leading"),
    "linspace": _spacing_schedule("linspace"),
    "trailing": _spacing_schedule("trailing"),
    "sgm_uniform": sgm_uniform_sigmas,
    "uniform": uniform_sigmas,
    "simple": simple_sigmas,
    "flow": _model_flow_sigmas,
}


def make_sigmas(name: str, model_sampling: ModelSampling, steps: int, **options) -> torch.Tensor:
    """σ's for ``steps`` steps of schedule ``name`` over the model's σ range (options override, e.g. ``rho=5``)."""
    if name not in SCHEDULES:
        raise UnknownNameError("schedule", name, SCHEDULES)
    return SCHEDULES[name](model_sampling, steps, **options)


def schedules_for(model_sampling: ModelSampling) -> list[str]:
    """Names in :data:`SCHEDULES` that apply to ``model_sampling``, in table order ("flow" needs a flow model)."""
    return [name for name in SCHEDULES if name != "flow" or isinstance(model_sampling, FlowMatch)]
