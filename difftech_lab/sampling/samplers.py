"""Samplers over a denoiser D(x; σ) ≈ x̂0, one contract for all (k-diffusion style).

``sample_NAME(denoiser, x, sigmas, *, generator=None, callback=None, **options) -> x``

- ``denoiser(x, sigma)`` returns x̂0; ``sigma`` is a tensor of shape ``[B]`` in x's dtype.
- ``x`` is already noised to ``sigmas[0]`` (the caller does ``noise_scaling``); ``sigmas`` ends in 0.
- ``callback(info)`` is called once per step with ``i``, ``sigma`` (σ_i), ``sigma_hat`` (σ after churn),
  ``x`` (after the step), ``denoised`` (x̂0 of the step's *first* evaluation, the one previews show) and
  ``nfe`` (denoiser calls so far).
- Fresh noise is drawn on the generator's device and moved to x's, so a CPU generator reproduces across devices.
- Options are spelled the same wherever they mean the same thing (``s_churn``, ``s_tmin``, ``s_tmax``,
  ``s_noise``, as in k-diffusion), so ``sampler_options`` carry over between samplers; see
  :func:`sampler_options` and :func:`check_sampler_options`.
"""

from __future__ import annotations

import inspect
import math
import numbers
from typing import Callable

import torch

from difftech_lab.errors import InvalidArgumentError, UnknownNameError
from difftech_lab.sampling.schedules import karras_sigmas

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class _CountedDenoiser:
    """Calls the denoiser with a per-sample σ and counts the calls (NFE)."""

    def __init__(self, denoiser: Denoiser):
        self.denoiser, self.nfe = denoiser, 0

    def __call__(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        self.nfe += 1
        return self.denoiser(x, sigma * x.new_ones(x.shape[0]))


def _noise(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    device = generator.device if generator is not None else x.device
    return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=device).to(x.device)


def _report(callback, model: _CountedDenoiser, i, sigma, sigma_hat, x, denoised) -> None:
    if callback is not None:
        callback({"i": i, "sigma": sigma, "sigma_hat": sigma_hat, "x": x, "denoised": denoised, "nfe": model.nfe})


def _floats(sigmas: torch.Tensor) -> list[float]:
    sigmas = torch.as_tensor(sigmas)
    if sigmas.ndim != 1 or len(sigmas) < 2:
        raise InvalidArgumentError(f"sigmas must be a 1-D tensor of ≥ 2 noise levels ending in 0, got {sigmas!r}")
    return sigmas.tolist()


def _to_d(x: torch.Tensor, sigma: float, denoised: torch.Tensor) -> torch.Tensor:
    """PF-ODE derivative dx/dσ = (x − D(x;σ))/σ (Karras et al. 2022 eq. 3 with σ(t)=t)."""
    return (x - denoised) / sigma


def _churn(x, sigma, N, s_churn, s_tmin, s_tmax, s_noise, generator):
    """Karras et al. 2022 Alg. 2 lines 4–6: raise σ to σ̂ = σ(1+γ) by adding fresh noise."""
    gamma = min(s_churn / N, math.sqrt(2) - 1) if s_tmin <= sigma <= s_tmax else 0.0
    sigma_hat = sigma * (1 + gamma)
    if gamma > 0:
        x = x + math.sqrt(sigma_hat**2 - sigma**2) * s_noise * _noise(x, generator)
    return x, sigma_hat


def _heun_step(model: _CountedDenoiser, x, sigma_hat, sigma_next):
    """Karras et al. 2022 Alg. 2 lines 7–11: Euler step, Heun correction unless σ_next = 0. Returns (x, x̂0)."""
    denoised = model(x, sigma_hat)
    d = _to_d(x, sigma_hat, denoised)
    x_next = x + (sigma_next - sigma_hat) * d
    if sigma_next != 0:
        d_prime = _to_d(x_next, sigma_next, model(x_next, sigma_next))
        x_next = x + (sigma_next - sigma_hat) * (d + d_prime) / 2
    return x_next, denoised


@torch.no_grad()
def sample_euler(
    denoiser, x, sigmas, *, generator=None, callback=None,
    s_churn: float = 0.0,            # total churn; 0 is the deterministic PF-ODE Euler method
    s_tmin: float = 0.0,             # churn only for σ in [s_tmin, s_tmax]
    s_tmax: float = math.inf,
    s_noise: float = 1.0,            # scale of the churn noise
) -> torch.Tensor:
    """Euler method on the PF-ODE (Karras et al. 2022 Alg. 2 without the Heun correction), optional churn."""
    model, sigmas = _CountedDenoiser(denoiser), _floats(sigmas)
    N = len(sigmas) - 1
    for i in range(N):
        x, sigma_hat = _churn(x, sigmas[i], N, s_churn, s_tmin, s_tmax, s_noise, generator)
        denoised = model(x, sigma_hat)
        x = x + (sigmas[i + 1] - sigma_hat) * _to_d(x, sigma_hat, denoised)
        _report(callback, model, i, sigmas[i], sigma_hat, x, denoised)
    return x


def get_ancestral_step(sigma_from: float, sigma_to: float, eta: float = 1.0) -> tuple[float, float]:
    """k-diffusion: split σ_from → σ_to into a step to σ_down and fresh noise σ_up, σ_down² + σ_up² = σ_to²."""
    if not eta:
        return sigma_to, 0.0
    sigma_up = min(sigma_to, eta * math.sqrt(sigma_to**2 * (sigma_from**2 - sigma_to**2) / sigma_from**2))
    return math.sqrt(sigma_to**2 - sigma_up**2), sigma_up


@torch.no_grad()
def sample_euler_ancestral(
    denoiser, x, sigmas, *, generator=None, callback=None,
    eta: float = 1.0,                # 1 = DDPM posterior variance, 0 = deterministic Euler
    s_noise: float = 1.0,            # scale of the fresh noise ("temperature"); 1 is exact
) -> torch.Tensor:
    """Ancestral Euler (k-diffusion sample_euler_ancestral): Euler to σ_down, then add σ_up of fresh noise."""
    model, sigmas = _CountedDenoiser(denoiser), _floats(sigmas)
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i])
        sigma_down, sigma_up = get_ancestral_step(sigmas[i], sigmas[i + 1], eta)
        x = x + (sigma_down - sigmas[i]) * _to_d(x, sigmas[i], denoised)
        if sigma_up > 0:
            x = x + _noise(x, generator) * s_noise * sigma_up
        _report(callback, model, i, sigmas[i], sigmas[i], x, denoised)
    return x


@torch.no_grad()
def sample_heun(denoiser, x, sigmas, *, generator=None, callback=None) -> torch.Tensor:
    """Heun's 2nd-order method on the PF-ODE (Karras et al. 2022 Alg. 1); Euler on the last step to σ=0."""
    model, sigmas = _CountedDenoiser(denoiser), _floats(sigmas)
    for i in range(len(sigmas) - 1):
        x, denoised = _heun_step(model, x, sigmas[i], sigmas[i + 1])
        _report(callback, model, i, sigmas[i], sigmas[i], x, denoised)
    return x


@torch.no_grad()
def sample_dpmpp_2m(denoiser, x, sigmas, *, generator=None, callback=None) -> torch.Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022, arXiv 2211.01095) in σ-space, λ = −log σ; first order on first/last step."""
    model, sigmas = _CountedDenoiser(denoiser), _floats(sigmas)
    old_denoised = None
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = model(x, sigma)
        if sigma_next == 0:
            x = denoised  # the exponential integrator's limit as σ_next → 0
        else:
            h = math.log(sigma) - math.log(sigma_next)
            D = denoised
            if old_denoised is not None:
                r = (math.log(sigmas[i - 1]) - math.log(sigma)) / h
                D = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old_denoised
            x = (sigma_next / sigma) * x - math.expm1(-h) * D
        old_denoised = denoised
        _report(callback, model, i, sigma, sigma, x, denoised)
    return x


@torch.no_grad()
def sample_edm(
    denoiser, x, sigmas, *, generator=None, callback=None,
    s_churn: float = 0.0,            # total stochasticity; 0 = deterministic Heun (the paper's S_churn)
    s_tmin: float = 0.0,             # churn only for t_i in [s_tmin, s_tmax]
    s_tmax: float = math.inf,
    s_noise: float = 1.0,            # noise inflation (EDM ImageNet best: 1.003)
) -> torch.Tensor:
    """EDM stochastic sampler, Karras et al. 2022 Algorithm 2 (NVlabs/edm edm_sampler); NFE 2N−1."""
    model, t = _CountedDenoiser(denoiser), _floats(sigmas)
    N = len(t) - 1
    for i in range(N):
        x_hat, t_hat = _churn(x, t[i], N, s_churn, s_tmin, s_tmax, s_noise, generator)
        x, denoised = _heun_step(model, x_hat, t_hat, t[i + 1])
        _report(callback, model, i, t[i], t_hat, x, denoised)
    return x


def default_restart_list(steps: int) -> dict:
    """A1111's default for SD: one restart σ 0.1 → 2 with 9 Heun steps (≥ 36 steps: steps//4 steps, twice)."""
    if steps < 20:
        return {}
    if steps >= 36:
        return {0.1: [steps // 4, 2, 0.1, 2.0]}
    return {0.1: [9, 1, 0.1, 2.0]}


def _restart_plan(sigmas: list[float], restart_list: dict) -> dict[int, tuple[int, int, float]]:
    """{main index j: (N_restart, K, t_max)}: a key is a main-step index (int) or a σ snapped to the nearest σ_j."""
    plan = {}
    for key, (n_restart, K, _t_min, t_max) in restart_list.items():
        if isinstance(key, int):
            j = key
        else:
            j = min(range(1, len(sigmas) - 1), key=lambda k: abs(sigmas[k] - float(key)), default=0)
        if not 1 <= j <= len(sigmas) - 2:
            raise InvalidArgumentError(
                f"restart at {key!r} is not inside the schedule; use a main-step index in 1..{len(sigmas) - 2} "
                "or a σ between the first and last non-zero σ"
            )
        if not t_max > sigmas[j] or n_restart < 1 or K < 0:
            raise InvalidArgumentError(
                f"restart {key!r}: need N_restart ≥ 1, K ≥ 0 and t_max > t_min = σ_{j} = {sigmas[j]:.4g}, "
                f"got {[n_restart, K, _t_min, t_max]}"
            )
        plan[j] = (int(n_restart), int(K), float(t_max))
    return plan


@torch.no_grad()
def sample_restart(
    denoiser, x, sigmas, *, generator=None, callback=None,
    restart_list: dict | None = None,  # {main index or σ: [N_restart, K, t_min, t_max]}; None = A1111 default
    s_noise: float = 1.0,              # scale of the forward-jump noise; 1 is exact
    rho: float = 7.0,                  # Karras ρ of the restart segments
) -> torch.Tensor:
    """Restart sampling, Xu et al. 2023 (arXiv 2306.14878): Heun ODE; at t_min jump K times to t_max and re-solve.

    t_min is snapped to the main σ at the restart index, as the official code does. Each restart segment is
    N_restart Heun steps over a Karras grid t_max → t_min, so it costs 2·N_restart evaluations. The official
    code's small churn inside segments is left out, so K=0 is exactly :func:`sample_edm` with s_churn=0.
    Unlike A1111 the main schedule is used as given (A1111 shortens it to keep the total NFE).
    Callback steps are numbered through main and restart steps alike. The jump assumes σ-space
    ``x_σ = x0 + σ·ε`` (VE, or VP models through their ModelSampling), not flow models.
    """
    model, sigmas = _CountedDenoiser(denoiser), _floats(sigmas)
    plan = _restart_plan(sigmas, default_restart_list(len(sigmas) - 1) if restart_list is None else restart_list)
    step = 0
    for i in range(len(sigmas) - 1):
        x, denoised = _heun_step(model, x, sigmas[i], sigmas[i + 1])
        _report(callback, model, step, sigmas[i], sigmas[i], x, denoised)
        step += 1
        n_restart, K, t_max = plan.get(i + 1, (0, 0, 0.0))
        t_min = sigmas[i + 1]
        segment = karras_sigmas(n_restart + 1, t_min, t_max, rho)[:-1].tolist() if K else []
        for _ in range(K):
            x = x + s_noise * math.sqrt(t_max**2 - t_min**2) * _noise(x, generator)  # forward jump t_min → t_max
            for t_cur, t_next in zip(segment[:-1], segment[1:]):
                x, denoised = _heun_step(model, x, t_cur, t_next)
                _report(callback, model, step, t_cur, t_cur, x, denoised)
                step += 1
    return x


@torch.no_grad()
def sample_lcm(denoiser, x, sigmas, *, generator=None, callback=None) -> torch.Tensor:
    """Multistep consistency sampling (Song et al. 2023; LCM, Luo et al. 2023): x̂0, then re-noise to σ_next.

    The denoiser is the consistency function f(x, σ); no noise is added after the last step.
    """
    model, sigmas = _CountedDenoiser(denoiser), _floats(sigmas)
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i])
        x = denoised + sigmas[i + 1] * _noise(x, generator) if sigmas[i + 1] > 0 else denoised
        _report(callback, model, i, sigmas[i], sigmas[i], x, denoised)
    return x


@torch.no_grad()
def sample_flow_euler(denoiser, x, sigmas, *, generator=None, callback=None) -> torch.Tensor:
    """Euler on a rectified-flow ODE (SD3 convention, σ from 1 to 0): x ← x + (σ_next − σ)·v̂, v̂ = (x − x̂0)/σ.

    Same update as :func:`sample_euler` written for flow models: with x_σ = (1−σ)x0 + σε the velocity
    ε − x0 equals (x − x̂0)/σ, so one step from σ=1 to 0 lands exactly on x̂0.
    """
    model, sigmas = _CountedDenoiser(denoiser), _floats(sigmas)
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i])
        v = (x - denoised) / sigmas[i]
        x = x + (sigmas[i + 1] - sigmas[i]) * v
        _report(callback, model, i, sigmas[i], sigmas[i], x, denoised)
    return x


SAMPLERS: dict[str, Callable[..., torch.Tensor]] = {
    "euler": sample_euler,
    "euler_ancestral": sample_euler_ancestral,
    "heun": sample_heun,
    "dpmpp_2m": sample_dpmpp_2m,
    "edm": sample_edm,
    "restart": sample_restart,
    "lcm": sample_lcm,
    "flow_euler": sample_flow_euler,
}

_SECOND_ORDER = {"heun", "edm", "restart"}


def get_sampler(name: str) -> Callable[..., torch.Tensor]:
    """The sampler function registered under ``name``."""
    if name not in SAMPLERS:
        raise UnknownNameError("sampler", name, SAMPLERS)
    return SAMPLERS[name]


# Arguments of every sampler that belong to the contract, not to the method
_NOT_OPTIONS = {"denoiser", "x", "sigmas", "generator", "callback"}
# The released version spelled edm's and restart's options as the EDM paper does; its saved recipes still do
_OLD_SPELLINGS = {"S_churn": "s_churn", "S_tmin": "s_tmin", "S_tmax": "s_tmax", "S_noise": "s_noise"}
_NON_NEGATIVE = {"s_churn", "eta", "s_noise"}  # amounts of noise: below 0 they have no meaning
_POSITIVE = {"rho"}                            # a Karras ρ of 0 divides by zero


def sampler_options(name: str) -> dict[str, object]:
    """Options of sampler ``name`` with their defaults, read from its signature (``{}`` for e.g. heun)."""
    parameters = inspect.signature(get_sampler(name)).parameters.values()
    return {p.name: p.default for p in parameters if p.name not in _NOT_OPTIONS}


def normalize_sampler_options(name: str, options: dict) -> dict:
    """``options`` as a recipe of any version may hold them, in today's form for sampler ``name``.

    Renames the released version's ``S_churn``/``S_tmin``/``S_tmax``/``S_noise`` to the lower-case spelling
    and turns restart_list keys that JSON made strings back into step indices (``"3"``) or σ's (``"0.1"``).
    """
    known = sampler_options(name)
    renames = {old: new for old, new in _OLD_SPELLINGS.items() if old in options and new in known}
    for old, new in renames.items():
        if new in options:
            raise InvalidArgumentError(f"sampler {name!r} options give both {old!r} and {new!r}; keep only {new!r}")
    options = {renames.get(key, key): value for key, value in options.items()}
    if isinstance(options.get("restart_list"), dict):
        options["restart_list"] = {_restart_key(key): value for key, value in options["restart_list"].items()}
    return options


def _restart_key(key):
    """A restart_list key that JSON made a string, back to a main-step index (int) or a σ (float)."""
    if not isinstance(key, str):
        return key
    for kind in (int, float):
        try:
            return kind(key)
        except ValueError:
            pass
    return key  # not a number: check_sampler_options names it


def check_sampler_options(name: str, options: dict) -> dict:
    """``options`` for sampler ``name``, checked before any work; raises InvalidArgumentError naming the fix.

    Checks that every option exists, that float options are numbers, that amounts of noise are ≥ 0,
    s_tmin ≤ s_tmax and the shape of restart_list (its schedule-dependent checks run when sampling).
    """
    known = sampler_options(name)
    for key, value in options.items():
        if key not in known:
            raise InvalidArgumentError(_unknown_option(name, key, known))
        if isinstance(known[key], float):
            _check_number(name, key, value, known[key])
    merged = {**known, **options}
    if "s_tmin" in merged and merged["s_tmin"] > merged["s_tmax"]:
        raise InvalidArgumentError(
            f"sampler {name!r}: s_tmin={merged['s_tmin']} > s_tmax={merged['s_tmax']} leaves no σ to churn; "
            "set s_tmin ≤ s_tmax (churn runs for σ in [s_tmin, s_tmax]), or s_churn=0 to turn churn off"
        )
    if "restart_list" in options:
        _check_restart_list(options["restart_list"])
    return dict(options)


def _unknown_option(name: str, key: str, known: dict) -> str:
    takes = f"its options are {', '.join(sorted(known))}" if known else "it takes no options"
    hint = f" (it is now spelled {_OLD_SPELLINGS[key]!r})" if _OLD_SPELLINGS.get(key) in known else ""
    return f"sampler {name!r} has no option {key!r}{hint}; {takes}"


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_number(name: str, key: str, value, default: float) -> None:
    if not _is_number(value):
        raise InvalidArgumentError(f"sampler {name!r}: {key} must be a number, got {value!r}; the default is {default}")
    if key in _NON_NEGATIVE and not value >= 0:
        raise InvalidArgumentError(f"sampler {name!r}: {key} must be ≥ 0, got {value!r}; the default is {default}")
    if key in _POSITIVE and not value > 0:
        raise InvalidArgumentError(f"sampler {name!r}: {key} must be > 0, got {value!r}; the default is {default}")


def _check_restart_list(restart_list) -> None:
    """Shape only: None, or {main-step index (int) or σ (float): [N_restart, K, t_min, t_max]}."""
    if restart_list is None:
        return
    well_formed = isinstance(restart_list, dict) and all(
        _is_number(key) and isinstance(entry, (list, tuple)) and len(entry) == 4 and all(map(_is_number, entry))
        for key, entry in restart_list.items()
    )
    if not well_formed:
        raise InvalidArgumentError(
            "restart_list must map a main-step index (int) or a σ (float) to [N_restart, K, t_min, t_max], "
            f"e.g. {{0.1: [9, 1, 0.1, 2.0]}}, or be None for A1111's default; got {restart_list!r}"
        )


def sampler_nfe(name: str, steps: int, **options) -> int:
    """Planned denoiser calls for ``steps`` steps over σ's ending in 0 (Heun: 2N−1, restart adds Σ K·2·N_restart)."""
    get_sampler(name)
    if name not in _SECOND_ORDER:
        return steps
    nfe = 2 * steps - 1
    if name == "restart":
        restart_list = options.get("restart_list")
        restart_list = default_restart_list(steps) if restart_list is None else restart_list
        nfe += sum(2 * int(n_restart) * int(K) for n_restart, K, *_ in restart_list.values())
    return nfe
