"""Model parameterisations in the EDM/k-diffusion denoiser view: network output → x̂0, and the σ ↔ timestep map.

Every sampler works in σ-space, ``x_σ = x0 + σ·ε`` (Karras et al. 2022), through a denoiser ``D(x; σ) ≈ x̂0``.
A :class:`ModelSampling` says how to call a trained network in that space: what input it expects
(:meth:`~ModelSampling.scale_input`), which timestep to feed it (:meth:`~ModelSampling.timestep`) and how its
output becomes x̂0 (:meth:`~ModelSampling.denoised`). Discrete VP models (DDPM/LDM, ``x_t = √ᾱ·x0 + √(1−ᾱ)·ε``)
are the same process rescaled, ``σ = √((1−ᾱ)/ᾱ)``, ``x_σ = x_t/√ᾱ``; flow models (SD3) use
``x_σ = (1−σ)·x0 + σ·ε`` instead.
"""

from __future__ import annotations

import math

import torch

from difftech_lab.errors import InvalidArgumentError, UnknownNameError

BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")

# ᾱ_T of a zero-terminal-SNR schedule is 0, so σ_T = √((1−ᾱ)/ᾱ) would be ∞ and log σ (used by the σ→t map)
# undefined. diffusers clamps it to the smallest positive fp16 subnormal, giving σ_max ≈ 4096: large enough
# that x = σ·ε is pure noise to the network, small enough to stay finite in fp16/fp32. We use the same value
# so our σ schedule lands on diffusers' timesteps.
ZERO_SNR_ALPHA_BAR = 2.0**-24


def _column(sigma, x: torch.Tensor) -> torch.Tensor:
    """σ (a number, a 0-d tensor or one value per sample) shaped to broadcast against x."""
    sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    return sigma.reshape(sigma.shape + (1,) * (x.ndim - sigma.ndim))


class ModelSampling:
    """σ-space view of a trained model over its training noise levels ``sigmas`` (ascending)."""

    def __init__(self, sigmas: torch.Tensor):
        sigmas = torch.as_tensor(sigmas, dtype=torch.float32)
        if sigmas.ndim != 1 or len(sigmas) < 2 or not bool((sigmas[1:] > sigmas[:-1]).all()):
            raise InvalidArgumentError(
                f"training sigmas must be a 1-D strictly ascending tensor of length ≥ 2, got {sigmas!r}; "
                "build them with from_betas(...) or model_sampling_from_config(...)"
            )
        self._sigmas = sigmas
        self._log_sigmas = sigmas.double().log()

    @property
    def sigmas(self) -> torch.Tensor:
        """Training noise levels, ascending, float32."""
        return self._sigmas

    @property
    def sigma_min(self) -> float:
        return float(self._sigmas[0])

    @property
    def sigma_max(self) -> float:
        return float(self._sigmas[-1])

    def sigma_to_t(self, sigma) -> torch.Tensor:
        """Continuous timestep: linear in log σ between training steps (k-diffusion DiscreteSchedule)."""
        sigma = torch.as_tensor(sigma)
        log_sigma = sigma.double().log()
        log_sigmas = self._log_sigmas.to(log_sigma.device)
        low = (torch.searchsorted(log_sigmas, log_sigma, right=True) - 1).clamp(0, len(log_sigmas) - 2)
        w = ((log_sigma - log_sigmas[low]) / (log_sigmas[low + 1] - log_sigmas[low])).clamp(0, 1)
        return (low + w).to(sigma.dtype if sigma.is_floating_point() else torch.float32)

    def t_to_sigma(self, t) -> torch.Tensor:
        """Inverse of :meth:`sigma_to_t`: log-σ interpolation at a continuous timestep."""
        t = torch.as_tensor(t)
        t64 = t.double().clamp(0, len(self._log_sigmas) - 1)
        log_sigmas = self._log_sigmas.to(t64.device)
        low = t64.floor().long().clamp(max=len(log_sigmas) - 2)
        w = t64 - low
        sigma = ((1 - w) * log_sigmas[low] + w * log_sigmas[low + 1]).exp()
        return sigma.to(t.dtype if t.is_floating_point() else torch.float32)

    def timestep(self, sigma) -> torch.Tensor:
        """What the network is fed as its timestep at noise level σ."""
        return self.sigma_to_t(sigma)

    def scale_input(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """Network input for x_σ: the VP sample ``x_t = x_σ/√(σ²+1)``."""
        return x / (_column(sigma, x) ** 2 + 1).sqrt()

    def noise_scaling(self, sigma, noise: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        """The latent noised to level σ (start of txt2img with latent=0, or of img2img): ``x0 + σ·ε``."""
        return latent + _column(sigma, noise) * noise

    def denoised(self, x: torch.Tensor, sigma, model_output: torch.Tensor) -> torch.Tensor:
        """x̂0 from the network output at x_σ."""
        raise NotImplementedError

    def prediction(self, x: torch.Tensor, sigma, denoised: torch.Tensor) -> torch.Tensor:
        """The network output that would give ``denoised`` at x_σ (exact inverse of :meth:`denoised`)."""
        raise NotImplementedError


class DiscreteModelSampling(ModelSampling):
    """A DDPM/LDM model trained on discrete timesteps 0..T−1, seen as VP-as-VE in σ-space."""

    def __init__(self, sigmas: torch.Tensor, *, timestep_spacing: str = "leading", steps_offset: int = 1):
        super().__init__(sigmas)
        self.timestep_spacing = timestep_spacing
        self.steps_offset = steps_offset

    @classmethod
    def from_betas(cls, betas: torch.Tensor, **kwargs) -> DiscreteModelSampling:
        """Training σ's from a β schedule, computed in float32 as diffusers does so timesteps match exactly."""
        betas = torch.as_tensor(betas, dtype=torch.float32)
        alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
        if float(betas[-1]) >= 1.0:  # zero terminal SNR (rescale_zero_terminal_snr): see ZERO_SNR_ALPHA_BAR
            alphas_cumprod[-1] = ZERO_SNR_ALPHA_BAR
        return cls(((1 - alphas_cumprod) / alphas_cumprod) ** 0.5, **kwargs)

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        """ᾱ_t = 1/(σ_t²+1) at each training timestep."""
        return 1 / (self._sigmas.double() ** 2 + 1)


class EpsDiscrete(DiscreteModelSampling):
    """ε-prediction (DDPM, SD1.x/2-base): ``x̂0 = x − σ·ε``."""

    def denoised(self, x, sigma, model_output):
        return x - _column(sigma, x) * model_output

    def prediction(self, x, sigma, denoised):
        return (x - denoised) / _column(sigma, x)


class VDiscrete(DiscreteModelSampling):
    """v-prediction (Salimans & Ho 2022), σ_data=1: ``x̂0 = c_skip·x + c_out·v``, c_skip=1/(σ²+1), c_out=−σ/√(σ²+1)."""

    @staticmethod
    def _scalings(x, sigma):
        sigma = _column(sigma, x)
        return 1 / (sigma**2 + 1), -sigma / (sigma**2 + 1).sqrt()

    def denoised(self, x, sigma, model_output):
        c_skip, c_out = self._scalings(x, sigma)
        return c_skip * x + c_out * model_output

    def prediction(self, x, sigma, denoised):
        c_skip, c_out = self._scalings(x, sigma)
        return (denoised - c_skip * x) / c_out


class X0Discrete(DiscreteModelSampling):
    """x0-prediction ("sample"): the network output is x̂0."""

    def denoised(self, x, sigma, model_output):
        return model_output

    def prediction(self, x, sigma, denoised):
        return denoised


class FlowMatch(ModelSampling):
    """Rectified flow, SD3 convention: ``x_σ = (1−σ)·x0 + σ·ε``, v = ε − x0, ``x̂0 = x − σ·v``, timestep σ·T.

    ``shift`` is the static SD3 shift of the training σ's; with ``use_dynamic_shifting`` (Flux) the shift depends
    on the image size and is applied by the schedule (``mu``), so the training σ's stay unshifted.
    """

    def __init__(
        self,
        shift: float = 1.0,
        num_train_timesteps: int = 1000,
        *,
        use_dynamic_shifting: bool = False,
        base_shift: float = 0.5,          # μ at base_image_seq_len tokens (Flux)
        max_shift: float = 1.15,          # μ at max_image_seq_len tokens
        base_image_seq_len: int = 256,
        max_image_seq_len: int = 4096,
    ):
        if shift <= 0:
            raise InvalidArgumentError(f"flow shift must be > 0, got {shift}; SD3 uses 3.0, 1.0 means no shift")
        self.shift, self.num_train_timesteps = float(shift), int(num_train_timesteps)
        self.use_dynamic_shifting = use_dynamic_shifting
        self.base_shift, self.max_shift = base_shift, max_shift
        self.base_image_seq_len, self.max_image_seq_len = base_image_seq_len, max_image_seq_len
        sigmas = torch.arange(1, num_train_timesteps + 1, dtype=torch.float32) / num_train_timesteps
        if not use_dynamic_shifting:
            sigmas = self.shift * sigmas / (1 + (self.shift - 1) * sigmas)
        super().__init__(sigmas)

    def sigma_to_t(self, sigma) -> torch.Tensor:
        sigma = torch.as_tensor(sigma)
        return sigma * self.num_train_timesteps

    def t_to_sigma(self, t) -> torch.Tensor:
        t = torch.as_tensor(t)
        return t / self.num_train_timesteps

    def scale_input(self, x, sigma):
        return x

    def noise_scaling(self, sigma, noise, latent):
        sigma = _column(sigma, noise)
        return sigma * noise + (1 - sigma) * latent

    def denoised(self, x, sigma, model_output):
        return x - _column(sigma, x) * model_output

    def prediction(self, x, sigma, denoised):
        return (x - denoised) / _column(sigma, x)


def betas_for(beta_schedule: str, beta_start: float, beta_end: float, num_train_timesteps: int) -> torch.Tensor:
    """β_t for the diffusers schedule names (float32, as diffusers builds them)."""
    if beta_schedule == "linear":
        return torch.linspace(beta_start, beta_end, num_train_timesteps, dtype=torch.float32)
    if beta_schedule == "scaled_linear":  # LDM: linear in √β
        return torch.linspace(beta_start**0.5, beta_end**0.5, num_train_timesteps, dtype=torch.float32) ** 2
    if beta_schedule == "squaredcos_cap_v2":  # Nichol & Dhariwal 2021 cosine ᾱ, β capped at 0.999
        def alpha_bar(t):
            return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

        T = num_train_timesteps
        betas = [min(1 - alpha_bar((i + 1) / T) / alpha_bar(i / T), 0.999) for i in range(T)]
        return torch.tensor(betas, dtype=torch.float32)
    raise UnknownNameError("beta_schedule", beta_schedule, BETA_SCHEDULES)


def rescale_zero_terminal_snr(betas: torch.Tensor) -> torch.Tensor:
    """Lin et al. 2023 (arXiv 2305.08891) Algorithm 1: shift and scale √ᾱ so ᾱ_T = 0 and ᾱ_0 is unchanged."""
    alphas_bar_sqrt = torch.cumprod(1 - betas, dim=0).sqrt()
    sqrt_0, sqrt_T = alphas_bar_sqrt[0].clone(), alphas_bar_sqrt[-1].clone()
    alphas_bar_sqrt = (alphas_bar_sqrt - sqrt_T) * (sqrt_0 / (sqrt_0 - sqrt_T))
    alphas_bar = alphas_bar_sqrt**2
    alphas = torch.cat([alphas_bar[:1], alphas_bar[1:] / alphas_bar[:-1]])
    return 1 - alphas


def lcm_boundary_scalings(timestep, timestep_scaling: float = 10.0, sigma_data: float = 0.5):
    """LCM (Luo et al. 2023) boundary condition: ``f = c_skip·x_t + c_out·x̂0``, c_skip(0)=1, c_out(0)=0."""
    scaled = torch.as_tensor(timestep, dtype=torch.float32) * timestep_scaling
    c_skip = sigma_data**2 / (scaled**2 + sigma_data**2)
    c_out = scaled / (scaled**2 + sigma_data**2) ** 0.5
    return c_skip, c_out


_DISCRETE = {"epsilon": EpsDiscrete, "v_prediction": VDiscrete, "sample": X0Discrete}
PREDICTION_TYPES = (*_DISCRETE, "flow")


def model_sampling_from_config(scheduler_config: dict) -> ModelSampling:
    """The :class:`ModelSampling` for a diffusers scheduler config (``scheduler/scheduler_config.json``)."""
    config = dict(scheduler_config)
    prediction_type = config.get("prediction_type", "epsilon")
    if "FlowMatch" in config.get("_class_name", "") or prediction_type == "flow" or "shift" in config:
        return FlowMatch(
            shift=config.get("shift", 1.0),
            num_train_timesteps=config.get("num_train_timesteps", 1000),
            use_dynamic_shifting=config.get("use_dynamic_shifting", False),
            base_shift=config.get("base_shift", 0.5),
            max_shift=config.get("max_shift", 1.15),
            base_image_seq_len=config.get("base_image_seq_len", 256),
            max_image_seq_len=config.get("max_image_seq_len", 4096),
        )
    if prediction_type not in _DISCRETE:
        raise UnknownNameError("prediction_type", prediction_type, PREDICTION_TYPES)
    if config.get("trained_betas") is not None:
        betas = torch.tensor(config["trained_betas"], dtype=torch.float32)
    else:
        betas = betas_for(
            config.get("beta_schedule", "linear"),
            config.get("beta_start", 0.0001),
            config.get("beta_end", 0.02),
            config.get("num_train_timesteps", 1000),
        )
    if config.get("rescale_betas_zero_snr", False):
        betas = rescale_zero_terminal_snr(betas)
    return _DISCRETE[prediction_type].from_betas(
        betas,
        timestep_spacing=config.get("timestep_spacing", "leading"),
        steps_offset=config.get("steps_offset", 1),
    )
