"""Parameterisations: exact round trips, the σ ↔ t map, and agreement with diffusers' schedulers."""

import math

import pytest
import torch
from diffusers import EulerDiscreteScheduler, LCMScheduler

from difftech_lab.errors import InvalidArgumentError, UnknownNameError
from difftech_lab.models.parameterization import (
    ZERO_SNR_ALPHA_BAR,
    EpsDiscrete,
    FlowMatch,
    VDiscrete,
    X0Discrete,
    betas_for,
    lcm_boundary_scalings,
    model_sampling_from_config,
    rescale_zero_terminal_snr,
)

SD = dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, num_train_timesteps=1000, steps_offset=1)


@pytest.fixture(scope="module")
def sd():
    return model_sampling_from_config(SD)


def _x_sigma(batch=3):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 4, 5, 5, generator=g, dtype=torch.float64) * 3
    return x, torch.tensor([0.03, 1.7, 14.0], dtype=torch.float64), torch.randn(x.shape, generator=g, dtype=x.dtype)


@pytest.mark.parametrize("cls", [EpsDiscrete, VDiscrete, X0Discrete])
def test_prediction_inverts_denoised(cls):
    ms = cls.from_betas(betas_for("linear", 1e-4, 0.02, 1000))
    x, sigma, out = _x_sigma()
    assert torch.allclose(ms.prediction(x, sigma, ms.denoised(x, sigma, out)), out, rtol=0, atol=1e-12)
    assert torch.allclose(ms.denoised(x, sigma, ms.prediction(x, sigma, out)), out, rtol=0, atol=1e-12)


def test_flow_prediction_inverts_denoised():
    x, sigma, v = _x_sigma()
    ms = FlowMatch(shift=3.0)
    sigma = sigma / 15
    assert torch.allclose(ms.prediction(x, sigma, ms.denoised(x, sigma, v)), v, rtol=0, atol=1e-10)


def test_eps_and_v_match_ddpm_formulas(sd):
    """ε: x0 = (x_t − √(1−ᾱ)ε)/√ᾱ; v: x0 = √ᾱ·x_t − √(1−ᾱ)·v, with x_t = x_σ·√ᾱ (ALGORITHMS cross-cutting notes)."""
    x, sigma, out = _x_sigma()
    a = (1 / (sigma**2 + 1)).view(-1, 1, 1, 1)
    x_t = sd.scale_input(x, sigma)
    assert torch.allclose(x_t, x * a.sqrt(), atol=1e-12)
    eps_x0 = (x_t - (1 - a).sqrt() * out) / a.sqrt()
    v_x0 = a.sqrt() * x_t - (1 - a).sqrt() * out
    assert torch.allclose(sd.denoised(x, sigma, out), eps_x0, atol=1e-10)
    v = model_sampling_from_config(dict(SD, prediction_type="v_prediction"))
    assert torch.allclose(v.denoised(x, sigma, out), v_x0, atol=1e-10)


def test_denoised_recovers_x0_from_true_prediction():
    x0, sigma, eps = _x_sigma()
    s = sigma.view(-1, 1, 1, 1)
    flow = FlowMatch()
    x_flow = flow.noise_scaling(sigma, eps, x0)
    assert torch.allclose(flow.denoised(x_flow, sigma, eps - x0), x0, atol=1e-12)
    x_ve = EpsDiscrete.from_betas(betas_for("linear", 1e-4, 0.02, 1000)).noise_scaling(sigma, eps, x0)
    assert torch.allclose(x_ve, x0 + s * eps)


def test_flow_noise_scaling_endpoints():
    x0, _, eps = _x_sigma()
    ms = FlowMatch()
    assert torch.equal(ms.noise_scaling(0.0, eps, x0), x0)
    assert torch.equal(ms.noise_scaling(1.0, eps, x0), eps)
    assert ms.timestep(torch.tensor(0.25)) == 250
    assert ms.scale_input(x0, 0.5) is x0


def test_sd_sigmas_match_euler_discrete(sd):
    sched = EulerDiscreteScheduler(**SD)
    assert torch.equal(sd.sigmas, sched.sigmas[:-1].flip(0))
    assert sd.sigmas.dtype == torch.float32
    assert sd.sigma_min == pytest.approx(0.0292, abs=1e-4)
    assert sd.sigma_max == pytest.approx(14.6146, abs=1e-4)


def test_sigma_t_round_trip_exact_at_training_steps(sd):
    t = torch.arange(1000, dtype=torch.float32)
    assert torch.equal(sd.sigma_to_t(sd.sigmas), t)
    assert torch.equal(sd.t_to_sigma(t), sd.sigmas)


def test_sigma_to_t_monotone_and_log_interpolated(sd):
    grid = torch.logspace(math.log10(sd.sigma_min), math.log10(sd.sigma_max), 5000, dtype=torch.float64)
    t = sd.sigma_to_t(grid)
    assert bool((t[1:] > t[:-1]).all())
    assert t[0] == 0 and t[-1] == 999
    mid = sd.t_to_sigma(torch.tensor([10.5], dtype=torch.float64))
    assert mid.item() == pytest.approx(math.sqrt(float(sd.sigmas[10]) * float(sd.sigmas[11])), rel=1e-12)
    assert sd.sigma_to_t(mid).item() == pytest.approx(10.5, abs=1e-9)


def test_zero_terminal_snr_rescale():
    betas = betas_for("scaled_linear", 0.00085, 0.012, 1000)
    rescaled = rescale_zero_terminal_snr(betas)
    alphas_cumprod = torch.cumprod(1 - rescaled.double(), 0)
    assert alphas_cumprod[-1] < 1e-12
    assert alphas_cumprod[0] == pytest.approx(1 - float(betas[0]), rel=1e-6)
    assert bool(((rescaled > 0) & (rescaled <= 1)).all()) and rescaled[-1] == 1


def test_zero_terminal_snr_sigma_is_finite_and_matches_diffusers():
    config = dict(SD, rescale_betas_zero_snr=True, prediction_type="v_prediction")
    ms = model_sampling_from_config(config)
    assert isinstance(ms, VDiscrete)
    assert ms.sigma_max == pytest.approx(math.sqrt((1 - ZERO_SNR_ALPHA_BAR) / ZERO_SNR_ALPHA_BAR))
    assert torch.equal(ms.sigmas, EulerDiscreteScheduler(**config).sigmas[:-1].flip(0))


def test_cosine_betas_match_diffusers():
    config = dict(beta_schedule="squaredcos_cap_v2", num_train_timesteps=1000)
    assert torch.equal(betas_for("squaredcos_cap_v2", 0, 0, 1000), EulerDiscreteScheduler(**config).betas)
    assert torch.equal(model_sampling_from_config(config).sigmas, EulerDiscreteScheduler(**config).sigmas[:-1].flip(0))


def test_from_config_types_and_errors():
    assert isinstance(model_sampling_from_config(dict(SD, prediction_type="sample")), X0Discrete)
    trained = model_sampling_from_config({"trained_betas": torch.linspace(1e-4, 0.02, 50).tolist()})
    assert len(trained.sigmas) == 50
    flow = model_sampling_from_config({"_class_name": "FlowMatchEulerDiscreteScheduler", "shift": 3.0})
    assert isinstance(flow, FlowMatch) and flow.shift == 3.0 and flow.sigma_max == 1.0
    with pytest.raises(UnknownNameError, match="'x_start'"):
        model_sampling_from_config(dict(SD, prediction_type="x_start"))
    with pytest.raises(UnknownNameError, match="'cubic'"):
        betas_for("cubic", 0.1, 0.2, 10)
    with pytest.raises(InvalidArgumentError):
        FlowMatch(shift=0)


def test_lcm_boundary_scalings_match_diffusers():
    sched = LCMScheduler(**SD)
    for t in (0, 19, 499, 999):
        ours = lcm_boundary_scalings(t)
        theirs = sched.get_scalings_for_boundary_condition_discrete(torch.tensor(t))
        assert torch.allclose(torch.stack(ours), torch.stack([torch.as_tensor(v, dtype=torch.float32) for v in theirs]))
    c_skip, c_out = lcm_boundary_scalings(0)
    assert c_skip == 1 and c_out == 0
