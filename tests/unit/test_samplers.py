"""Samplers against the Gaussian-data oracle (ALGORITHMS §0), no-op identities, NFE plans and noise variances."""

import json
import math

import numpy as np
import pytest
import torch

from difftech_lab.errors import InvalidArgumentError, UnknownNameError
from difftech_lab.sampling.samplers import (
    SAMPLERS,
    check_sampler_options,
    get_ancestral_step,
    get_sampler,
    normalize_sampler_options,
    sample_dpmpp_2m,
    sample_edm,
    sample_euler,
    sample_euler_ancestral,
    sample_flow_euler,
    sample_heun,
    sample_restart,
    sampler_nfe,
    sampler_options,
)
from difftech_lab.sampling.schedules import flow_sigmas, karras_sigmas

MU, S = 0.5, 2.0  # x0 ~ N(μ, s²) per coordinate
SIGMA_MIN, SIGMA_MAX = 0.002, 80.0


def gaussian_denoiser(x, sigma):
    """Exact E[x0 | x_σ] for Gaussian data: μ + s²/(s²+σ²)(x−μ)."""
    sigma = sigma.view(-1, *[1] * (x.ndim - 1))
    return MU + S**2 / (S**2 + sigma**2) * (x - MU)


def gaussian_ode_map(x, sigma):
    """Exact PF-ODE map from σ to 0, which is also the consistency function: μ + (x−μ)·s/√(s²+σ²)."""
    sigma = torch.as_tensor(sigma, dtype=x.dtype).view(-1, *[1] * (x.ndim - 1))
    return MU + (x - MU) * S / (S**2 + sigma**2).sqrt()


def flow_gaussian_denoiser(x, t):
    """Exact x̂0 for Gaussian data under x_t = (1−t)x0 + tε (ALGORITHMS §0)."""
    t = t.view(-1, *[1] * (x.ndim - 1))
    return MU + (1 - t) * S**2 / ((1 - t) ** 2 * S**2 + t**2) * (x - (1 - t) * MU)


def start(sigma_0, n=10_000, dims=2, seed=0):
    """Samples of the exact marginal at σ_0, N(μ, s² + σ_0²), standardised per column so that a deterministic
    sampler's (affine) output has mean and std off only by its discretisation error."""
    g = torch.Generator().manual_seed(seed)
    eps = torch.randn(n, dims, generator=g, dtype=torch.float64)
    if n > 1:
        eps = (eps - eps.mean(0)) / eps.std(0)
    return MU + eps * math.sqrt(S**2 + sigma_0**2)


# (sampler, steps, options): enough steps that the first-order stochastic samplers' O(h) bias is below 2 %
ORACLE_CASES = [
    ("euler", 200, {}),
    ("euler", 600, {"s_churn": 20.0, "s_tmin": 0.05, "s_tmax": 50.0}),
    ("euler_ancestral", 600, {}),
    ("heun", 50, {}),
    ("dpmpp_2m", 50, {}),
    ("edm", 50, {}),
    ("edm", 150, {"s_churn": 20.0, "s_tmin": 0.05, "s_tmax": 50.0}),
    ("restart", 50, {}),
    ("lcm", 4, {}),
]


@pytest.mark.parametrize("name,steps,options", ORACLE_CASES)
def test_gaussian_oracle_mean_and_std(name, steps, options):
    sigmas = karras_sigmas(steps, SIGMA_MIN, 20.0).double()
    denoiser = gaussian_ode_map if name == "lcm" else gaussian_denoiser
    x = get_sampler(name)(denoiser, start(20.0), sigmas, generator=torch.Generator().manual_seed(1), **options)
    assert abs(x.mean().item() - MU) < 0.05
    assert abs(x.std().item() - S) < 0.05


def test_gaussian_oracle_flow_euler():
    g = torch.Generator().manual_seed(0)
    x = sample_flow_euler(flow_gaussian_denoiser, torch.randn(10_000, 2, generator=g, dtype=torch.float64),
                          flow_sigmas(200).double())
    assert abs(x.mean().item() - MU) < 0.04 and abs(x.std().item() - S) < 0.04


def _ode_error(sampler, n):
    """Max error against the exact PF-ODE solution from σ=10 to σ=0.05, μ + (x−μ)·√((s²+0.05²)/(s²+10²)).

    The schedule stops at 0.05 so the final Euler step to 0 (exact only as σ_min → 0) adds no error floor.
    """
    x = start(10.0, n=256, dims=1)
    sigmas = karras_sigmas(n, 0.05, 10.0).double()[:-1]
    exact = MU + (x - MU) * math.sqrt((S**2 + 0.05**2) / (S**2 + 10.0**2))
    return (sampler(gaussian_denoiser, x, sigmas) - exact).abs().max().item()


@pytest.mark.parametrize("sampler,order", [(sample_euler, 1), (sample_heun, 2), (sample_dpmpp_2m, 2)])
def test_ode_error_falls_at_solver_order(sampler, order):
    steps = [8, 16, 32, 64]
    errors = [_ode_error(sampler, n) for n in steps]
    slope = np.polyfit(np.log(steps), np.log(errors), 1)[0]
    assert -slope == pytest.approx(order, abs=0.25)


def test_point_mass_lands_in_one_step():
    c = torch.tensor([[1.5, -2.0, 0.25]], dtype=torch.float64)
    x = torch.randn(1, 3, dtype=torch.float64)
    point = lambda x, sigma: c.expand_as(x)  # noqa: E731
    assert torch.allclose(sample_euler(point, c + 80.0 * x, torch.tensor([80.0, 0.0])), c, rtol=0, atol=1e-12)
    assert torch.allclose(sample_flow_euler(point, x, torch.tensor([1.0, 0.0])), c, rtol=0, atol=1e-12)


def test_ancestral_eta_0_is_euler_bit_for_bit():
    sigmas, x = karras_sigmas(10, SIGMA_MIN, SIGMA_MAX), start(SIGMA_MAX, n=64)
    assert torch.equal(sample_euler_ancestral(gaussian_denoiser, x, sigmas, eta=0.0),
                       sample_euler(gaussian_denoiser, x, sigmas))


def test_ancestral_step_invariant():
    for sigma_from, sigma_to, eta in [(10.0, 5.0, 1.0), (1.0, 0.3, 0.5), (2.0, 0.0, 1.0), (3.0, 2.9, 7.0)]:
        down, up = get_ancestral_step(sigma_from, sigma_to, eta)
        assert down**2 + up**2 == pytest.approx(sigma_to**2) and 0 <= up <= sigma_to


def test_edm_without_churn_is_heun_and_ignores_s_noise():
    sigmas, x = karras_sigmas(12, SIGMA_MIN, SIGMA_MAX), start(SIGMA_MAX, n=64)
    heun = sample_heun(gaussian_denoiser, x, sigmas)
    assert torch.equal(sample_edm(gaussian_denoiser, x, sigmas, s_noise=1.7, generator=torch.Generator()), heun)


def test_edm_gamma_capped_at_sqrt2_minus_1():
    seen = []
    sample_edm(gaussian_denoiser, start(10.0, n=8), karras_sigmas(4, 0.1, 10.0), s_churn=1e6,
               callback=lambda info: seen.append(info["sigma_hat"] / info["sigma"]))
    assert seen == pytest.approx([math.sqrt(2)] * 4)


@pytest.mark.parametrize("restart_list", [{}, {9: [3, 0, 0.1, 2.0]}])
def test_restart_without_restarts_is_edm(restart_list):
    sigmas, x = karras_sigmas(12, SIGMA_MIN, SIGMA_MAX), start(SIGMA_MAX, n=64)
    assert torch.equal(sample_restart(gaussian_denoiser, x, sigmas, restart_list=restart_list),
                       sample_edm(gaussian_denoiser, x, sigmas))


@pytest.mark.parametrize("s_noise", [1.0, 1.5])
def test_restart_jump_variance(s_noise):
    """Right after the jump t_min → t_max, x ~ N(μ, s² + t_min² + s_noise²(t_max² − t_min²))."""
    t_min, t_max = 0.5, 3.0
    jumped = []

    def spy(x, sigma):
        if sigma[0] == t_max and not jumped:
            jumped.append(x)
        return gaussian_denoiser(x, sigma)

    sigmas = torch.tensor([1.0, t_min, 0.0], dtype=torch.float64)
    x = sample_restart(spy, start(1.0), sigmas, restart_list={1: [4, 1, t_min, t_max]},
                       s_noise=s_noise, generator=torch.Generator().manual_seed(3))
    expected = math.sqrt(S**2 + t_min**2 + s_noise**2 * (t_max**2 - t_min**2))
    assert jumped[0].std().item() == pytest.approx(expected, rel=0.02)
    if s_noise == 1.0:
        assert jumped[0].std().item() == pytest.approx(math.sqrt(S**2 + t_max**2), rel=0.02)
        assert x.std().item() == pytest.approx(S, rel=0.02)


def test_churn_s_noise_inflation_is_predictable():
    """One churned Euler step σ → 0 returns D(x̂; σ̂), so std = s²/(s²+σ̂²)·√(s²+σ²+s_noise²(σ̂²−σ²))."""
    sigma, s_noise = 1.0, 1.5
    sigma_hat = sigma * math.sqrt(2)  # γ capped at √2−1
    x = sample_euler(gaussian_denoiser, start(sigma), torch.tensor([sigma, 0.0], dtype=torch.float64),
                     s_churn=10.0, s_noise=s_noise, generator=torch.Generator().manual_seed(4))
    expected = S**2 / (S**2 + sigma_hat**2) * math.sqrt(S**2 + sigma**2 + s_noise**2 * (sigma_hat**2 - sigma**2))
    assert x.std().item() == pytest.approx(expected, rel=0.02)


def test_ancestral_s_noise_inflates_variance():
    sigmas = karras_sigmas(30, SIGMA_MIN, SIGMA_MAX).double()
    stds = [sample_euler_ancestral(gaussian_denoiser, start(SIGMA_MAX), sigmas, s_noise=s_noise,
                                   generator=torch.Generator().manual_seed(5)).std().item() for s_noise in (1.0, 1.3)]
    assert stds[1] > stds[0] * 1.1


@pytest.mark.parametrize("name,options", [(name, {}) for name in SAMPLERS] + [
    ("restart", {"restart_list": {3: [4, 2, 0.0, 5.0]}}),
    ("restart", {"restart_list": None}),
    ("edm", {"s_churn": 5.0}),
])
def test_nfe_and_callback_match_plan(name, options):
    steps = 24 if options.get("restart_list", 0) is None else 10
    sigmas = karras_sigmas(steps, 0.1, 10.0).double()
    infos, calls = [], []

    def denoiser(x, sigma):
        calls.append(sigma)
        assert sigma.shape == (x.shape[0],) and sigma.dtype == x.dtype
        return gaussian_denoiser(x, sigma)

    get_sampler(name)(denoiser, start(10.0, n=5), sigmas, generator=torch.Generator().manual_seed(0),
                      callback=infos.append, **options)
    assert len(calls) == infos[-1]["nfe"] == sampler_nfe(name, steps, **options)
    assert set(infos[0]) == {"i", "sigma", "sigma_hat", "x", "denoised", "nfe"}
    assert [info["i"] for info in infos] == list(range(len(infos)))
    if name != "restart":
        assert len(infos) == steps


@pytest.mark.parametrize("name", ["euler", "heun", "dpmpp_2m", "edm", "lcm", "flow_euler"])
def test_batch_independence(name):
    sigmas = flow_sigmas(6).double() if name == "flow_euler" else karras_sigmas(6, 0.1, 10.0).double()
    a, b = start(10.0, n=2, seed=1), start(10.0, n=3, seed=2)
    sampler = get_sampler(name)
    denoiser = flow_gaussian_denoiser if name == "flow_euler" else gaussian_denoiser
    if name == "lcm":  # deterministic only with σ's that end right after the first step
        sigmas = torch.tensor([10.0, 0.0], dtype=torch.float64)
    assert torch.allclose(sampler(denoiser, torch.cat([a, b]), sigmas)[:2], sampler(denoiser, a, sigmas),
                          rtol=0, atol=1e-12)


def test_same_cpu_generator_reproduces():
    sigmas, x = karras_sigmas(8, 0.1, 10.0), start(10.0, n=16)
    run = lambda seed: sample_euler_ancestral(gaussian_denoiser, x, sigmas,  # noqa: E731
                                              generator=torch.Generator().manual_seed(seed))
    assert torch.equal(run(7), run(7)) and not torch.equal(run(7), run(8))


def test_errors():
    with pytest.raises(UnknownNameError, match="'dpm_fast'.*euler"):
        get_sampler("dpm_fast")
    with pytest.raises(UnknownNameError):
        sampler_nfe("dpm_fast", 10)
    sigmas = karras_sigmas(8, 0.1, 10.0)
    with pytest.raises(InvalidArgumentError, match="t_max"):
        sample_restart(gaussian_denoiser, start(10.0, n=2), sigmas, restart_list={3: [4, 1, 0.0, 0.01]})
    with pytest.raises(InvalidArgumentError, match="1..7"):
        sample_restart(gaussian_denoiser, start(10.0, n=2), sigmas, restart_list={9: [4, 1, 0.0, 50.0]})
    with pytest.raises(InvalidArgumentError, match="sigmas"):
        sample_euler(gaussian_denoiser, start(10.0, n=2), torch.tensor([1.0]))


def test_sampler_options_list_each_samplers_options_and_defaults():
    churn = {"s_churn": 0.0, "s_tmin": 0.0, "s_tmax": math.inf, "s_noise": 1.0}
    assert sampler_options("euler") == sampler_options("edm") == churn
    assert sampler_options("euler_ancestral") == {"eta": 1.0, "s_noise": 1.0}
    assert sampler_options("restart") == {"restart_list": None, "s_noise": 1.0, "rho": 7.0}
    assert sampler_options("heun") == {}
    with pytest.raises(UnknownNameError, match="'dpm_fast'"):
        sampler_options("dpm_fast")


def test_one_spelling_carries_over_between_samplers():
    """The same s_noise/s_churn options run on every sampler that has them (they used to be S_… on edm/restart)."""
    sigmas, x = karras_sigmas(6, 0.1, 10.0).double(), start(10.0, n=4)
    for name in ("euler", "euler_ancestral", "edm", "restart"):
        options = {key: value for key, value in {"s_churn": 1.0, "s_noise": 1.01}.items()
                   if key in sampler_options(name)}
        assert check_sampler_options(name, options) == options
        get_sampler(name)(gaussian_denoiser, x, sigmas, generator=torch.Generator().manual_seed(0), **options)


def test_check_passes_good_options_and_returns_a_copy():
    options = {"s_churn": 2, "s_tmin": 0.05, "s_tmax": np.float64(50.0)}
    checked = check_sampler_options("euler", options)
    assert checked == options and checked is not options
    assert check_sampler_options("restart", {"restart_list": {3: [4, 2, 0.0, 5.0], 0.1: [2, 1, 0.1, 2.0]}})
    assert check_sampler_options("restart", {"restart_list": None}) == {"restart_list": None}
    assert check_sampler_options("heun", {}) == {}


@pytest.mark.parametrize("name,options,message", [
    ("euler", {"foo": 1}, "sampler 'euler' has no option 'foo'; its options are s_churn, s_noise, s_tmax, s_tmin"),
    ("heun", {"eta": 0.5}, "sampler 'heun' has no option 'eta'; it takes no options"),
    ("edm", {"S_churn": 5.0}, "no option 'S_churn' (it is now spelled 's_churn')"),
    ("euler", {"s_churn": "10"}, "s_churn must be a number, got '10'"),
    ("edm", {"s_noise": True}, "s_noise must be a number, got True"),
    ("euler", {"s_churn": -1.0}, "s_churn must be ≥ 0, got -1.0; the default is 0.0"),
    ("euler_ancestral", {"eta": -0.5}, "eta must be ≥ 0, got -0.5"),
    ("restart", {"s_noise": float("nan")}, "s_noise must be ≥ 0, got nan"),
    ("restart", {"rho": 0}, "rho must be > 0, got 0"),
    ("edm", {"s_tmin": 5.0, "s_tmax": 1.0}, "s_tmin=5.0 > s_tmax=1.0"),
    ("restart", {"restart_list": [4, 1, 0.1, 2.0]}, "restart_list must map"),
    ("restart", {"restart_list": {3: [4, 1, 2.0]}}, "restart_list must map"),
    ("restart", {"restart_list": {"3": [4, 1, 0.1, 2.0]}}, "restart_list must map"),
])
def test_check_rejects_bad_options_before_any_work(name, options, message):
    with pytest.raises(InvalidArgumentError) as err:
        check_sampler_options(name, options)
    assert message in str(err.value)


def test_check_keeps_the_schedule_dependent_restart_errors_for_sampling_time():
    options = check_sampler_options("restart", {"restart_list": {3: [4, 1, 0.0, 0.01]}})
    with pytest.raises(InvalidArgumentError, match="t_max"):
        sample_restart(gaussian_denoiser, start(10.0, n=2), karras_sigmas(8, 0.1, 10.0), **options)


def test_check_unknown_sampler():
    with pytest.raises(UnknownNameError, match="'dpm_fast'"):
        check_sampler_options("dpm_fast", {})


def test_normalize_renames_the_released_spellings():
    old = {"S_churn": 20.0, "S_tmin": 0.05, "S_tmax": 50.0, "S_noise": 1.003}
    assert normalize_sampler_options("edm", old) == {"s_churn": 20.0, "s_tmin": 0.05, "s_tmax": 50.0, "s_noise": 1.003}
    assert normalize_sampler_options("restart", {"S_noise": 1.5, "rho": 5.0}) == {"s_noise": 1.5, "rho": 5.0}
    assert normalize_sampler_options("euler", {"s_churn": 1.0}) == {"s_churn": 1.0}
    assert normalize_sampler_options("heun", {"S_churn": 1.0}) == {"S_churn": 1.0}   # never valid: check names it
    with pytest.raises(InvalidArgumentError, match="both 'S_noise' and 's_noise'; keep only 's_noise'"):
        normalize_sampler_options("edm", {"S_noise": 1.0, "s_noise": 1.1})
    with pytest.raises(UnknownNameError):
        normalize_sampler_options("dpm_fast", {})


def test_normalize_restores_restart_keys_that_json_made_strings():
    """{3: …} is main step 3 and {0.1: …} the σ nearest 0.1; a recipe's JSON stores both keys as strings."""
    restart_list = {3: [4, 2, 0.0, 5.0], 0.1: [2, 1, 0.1, 2.0]}
    loaded = json.loads(json.dumps({"restart_list": restart_list}))
    assert normalize_sampler_options("restart", loaded) == {"restart_list": restart_list}
    assert check_sampler_options("restart", normalize_sampler_options("restart", loaded))
    assert normalize_sampler_options("restart", {"restart_list": None}) == {"restart_list": None}
