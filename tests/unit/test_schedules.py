"""σ schedules: closed-form properties (ALGORITHMS §7, §18) and parity with diffusers' schedulers."""

import math

import pytest
import torch
from diffusers import EulerDiscreteScheduler, FlowMatchEulerDiscreteScheduler

from difftech_lab.errors import InvalidArgumentError, UnknownNameError
from difftech_lab.models.parameterization import model_sampling_from_config
from difftech_lab.sampling.schedules import (
    RANGE_SCHEDULES,
    SCHEDULES,
    discrete_sigmas,
    dynamic_flow_shift,
    exponential_sigmas,
    flow_shift,
    flow_sigmas,
    karras_sigmas,
    make_sigmas,
    polyexponential_sigmas,
    resolution_shift_mu,
    schedules_for,
    sgm_uniform_sigmas,
    uniform_sigmas,
)

SD = dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, num_train_timesteps=1000, steps_offset=1)
SD3 = {"_class_name": "FlowMatchEulerDiscreteScheduler", "shift": 3.0, "num_train_timesteps": 1000}
SIGMA_MIN, SIGMA_MAX = 0.0291675, 14.614642


@pytest.fixture(scope="module")
def sd():
    return model_sampling_from_config(SD)


def _assert_valid(sigmas, n):
    assert sigmas.dtype == torch.float32 and sigmas.shape == (n + 1,)
    assert sigmas[-1] == 0 and bool((sigmas[1:] < sigmas[:-1]).all())


@pytest.mark.parametrize("fn", [karras_sigmas, exponential_sigmas, polyexponential_sigmas])
@pytest.mark.parametrize("n", [2, 10, 37])
def test_range_schedules_endpoints_exact(fn, n):
    sigmas = fn(n, SIGMA_MIN, SIGMA_MAX)
    _assert_valid(sigmas, n)
    assert sigmas[0] == torch.tensor(SIGMA_MAX) and sigmas[-2] == torch.tensor(SIGMA_MIN)


def test_karras_rho_1_is_linspace():
    expected = torch.linspace(SIGMA_MAX, SIGMA_MIN, 12, dtype=torch.float64).float()
    assert torch.allclose(karras_sigmas(12, SIGMA_MIN, SIGMA_MAX, rho=1.0)[:-1], expected, rtol=1e-6)


def test_polyexponential_rho_1_is_exponential():
    assert torch.allclose(polyexponential_sigmas(15, 0.002, 80.0), exponential_sigmas(15, 0.002, 80.0), rtol=1e-6)


def test_exponential_constant_log_spacing():
    steps = exponential_sigmas(20, 0.002, 80.0)[:-1].double().log().diff()
    assert torch.allclose(steps, steps.mean().expand_as(steps), rtol=1e-5)
    assert steps.mean().item() == pytest.approx(math.log(0.002 / 80.0) / 19, rel=1e-5)


def test_karras_rho_7_matches_closed_form():
    i = torch.arange(5, dtype=torch.float64)
    expected = (80.0 ** (1 / 7) + i / 4 * (0.002 ** (1 / 7) - 80.0 ** (1 / 7))) ** 7
    assert torch.allclose(karras_sigmas(5, 0.002, 80.0)[:-1].double(), expected, rtol=1e-6)


@pytest.mark.parametrize("spacing", ["leading", "linspace", "trailing"])
@pytest.mark.parametrize("n", [1, 4, 10, 25, 28, 50])
def test_discrete_matches_diffusers_euler(sd, spacing, n):
    scheduler = EulerDiscreteScheduler(**SD, timestep_spacing=spacing)
    scheduler.set_timesteps(n)
    ours = discrete_sigmas(sd, n, spacing, steps_offset=1)
    assert torch.equal(ours, scheduler.sigmas)
    if spacing != "linspace":  # integer timesteps: the σ→t map must give diffusers' timesteps back
        assert torch.equal(sd.sigma_to_t(ours[:-1]), scheduler.timesteps)


def test_trailing_starts_at_last_training_step(sd):
    sigmas = discrete_sigmas(sd, 10, "trailing")
    assert torch.equal(sd.sigma_to_t(sigmas[:-1]), torch.arange(999, 0, -100, dtype=torch.float32))


def test_flow_matches_diffusers_sd3_shift_3():
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)
    scheduler.set_timesteps(28)
    ms = model_sampling_from_config(SD3)
    ours = make_sigmas("flow", ms, 28)
    assert torch.allclose(ours, scheduler.sigmas, rtol=0, atol=1e-7)
    assert torch.allclose(ms.timestep(ours[:-1]), scheduler.timesteps, rtol=0, atol=1e-4)
    assert torch.equal(make_sigmas("default", ms, 28), ours)


def test_flow_dynamic_shift_matches_diffusers():
    scheduler = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True)
    mu = resolution_shift_mu(1024)
    scheduler.set_timesteps(8, mu=mu)
    ms = model_sampling_from_config({**scheduler.config, "_class_name": "FlowMatchEulerDiscreteScheduler"})
    assert torch.allclose(make_sigmas("flow", ms, 8, image_seq_len=1024), scheduler.sigmas, rtol=0, atol=1e-7)
    with pytest.raises(InvalidArgumentError, match="image_seq_len"):
        make_sigmas("flow", ms, 8)


def test_flow_shift_properties():
    grid = torch.linspace(0, 1, 101, dtype=torch.float64)
    assert torch.equal(flow_shift(grid, 1.0), grid)
    for s in (0.5, 3.0):
        shifted = flow_shift(grid, s)
        assert shifted[0] == 0 and shifted[-1] == 1 and bool((shifted.diff() > 0).all())
        assert torch.allclose(dynamic_flow_shift(grid[1:], math.log(s)), shifted[1:], atol=1e-12)


def test_flow_sigmas_unshifted_is_uniform_grid():
    assert torch.allclose(flow_sigmas(8), torch.linspace(1, 0, 9), atol=1e-7)
    _assert_valid(flow_sigmas(28, 3.0), 28)


def test_resolution_shift_mu_endpoints():
    assert resolution_shift_mu(256) == pytest.approx(0.5)
    assert resolution_shift_mu(4096) == pytest.approx(1.15)
    assert resolution_shift_mu(2176) == pytest.approx(0.825)


def test_timestep_uniform_schedules(sd):
    sgm = sgm_uniform_sigmas(sd, 10)
    _assert_valid(sgm, 10)
    assert sgm[0] == torch.tensor(sd.sigma_max)
    t = sd.sigma_to_t(sgm[:-1].double())
    assert torch.allclose(t.diff(), torch.full((9,), -99.9, dtype=torch.float64), atol=1e-3)
    uniform = uniform_sigmas(sd, 10)
    assert uniform[0] == torch.tensor(sd.sigma_max) and uniform[-2] == torch.tensor(sd.sigma_min)


@pytest.mark.parametrize("name", sorted(set(SCHEDULES) - {"flow"}))
def test_every_schedule_valid_for_sd(sd, name):
    _assert_valid(make_sigmas(name, sd, 12), 12)


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_every_schedule_valid_for_sd3(name):
    _assert_valid(make_sigmas(name, model_sampling_from_config(SD3), 12), 12)


def test_schedules_for_a_model(sd):
    assert schedules_for(sd) == [name for name in SCHEDULES if name != "flow"]
    assert schedules_for(model_sampling_from_config(SD3)) == list(SCHEDULES)


@pytest.mark.parametrize("name", RANGE_SCHEDULES)
def test_range_schedules_take_the_range_as_options(sd, name):
    assert make_sigmas(name, sd, 6, sigma_min=0.5, sigma_max=5.0)[[0, -2]].tolist() == pytest.approx([5.0, 0.5])


def test_make_sigmas_defaults_and_options(sd):
    assert torch.equal(make_sigmas("default", sd, 10), discrete_sigmas(sd, 10, "leading", 1))
    assert torch.equal(make_sigmas("karras", sd, 10, rho=3.0), karras_sigmas(10, sd.sigma_min, sd.sigma_max, 3.0))
    zsnr = model_sampling_from_config(dict(SD, timestep_spacing="trailing", rescale_betas_zero_snr=True))
    assert torch.equal(make_sigmas("default", zsnr, 10), discrete_sigmas(zsnr, 10, "trailing"))


def test_errors(sd):
    with pytest.raises(UnknownNameError, match="'nope'.*karras"):
        make_sigmas("nope", sd, 10)
    with pytest.raises(InvalidArgumentError, match="0"):
        karras_sigmas(0, 0.1, 10.0)
    with pytest.raises(InvalidArgumentError, match="sigma_min=10.0"):
        exponential_sigmas(5, 10.0, 1.0)
    with pytest.raises(InvalidArgumentError, match="FlowMatch"):
        make_sigmas("flow", sd, 10)
    with pytest.raises(UnknownNameError, match="'middle'"):
        discrete_sigmas(sd, 10, "middle")
    with pytest.raises(InvalidArgumentError, match="2000"):
        discrete_sigmas(sd, 2000)
