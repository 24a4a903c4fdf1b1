"""The sampling spine: σ schedules, samplers with one contract, the guider, thresholds, step events.

Every sampler is ``sample_NAME(denoiser, x, sigmas, *, generator=None, callback=None, **options) -> x`` with
``denoiser(x, sigma) -> x̂0`` (k-diffusion's contract, the denoiser view of Karras et al. 2022).
"""

from .curves import Curve, curve_value, curve_values
from .events import StepEvent
from .guider import Guider, rescale_cfg
from .samplers import (SAMPLERS, check_sampler_options, default_restart_list, get_ancestral_step, get_sampler,
                       normalize_sampler_options, sample_dpmpp_2m, sample_edm, sample_euler, sample_euler_ancestral,
                       sample_flow_euler, sample_heun, sample_lcm, sample_restart, sampler_nfe, sampler_options)
from .schedules import (RANGE_SCHEDULES, SCHEDULES, discrete_sigmas, dynamic_flow_shift, exponential_sigmas, flow_shift, flow_sigmas,
                        karras_sigmas, make_sigmas, polyexponential_sigmas, resolution_shift_mu, schedules_for,
                        sgm_uniform_sigmas)
from .thresholding import DynamicThreshold, MimicThreshold

__all__ = [
    "Curve", "curve_value", "curve_values", "StepEvent", "Guider", "rescale_cfg", "SAMPLERS", "get_sampler",
    "sampler_nfe", "sampler_options", "check_sampler_options", "normalize_sampler_options", "default_restart_list", "get_ancestral_step", "sample_euler", "sample_euler_ancestral",
    "sample_heun", "sample_dpmpp_2m", "sample_edm", "sample_restart", "sample_lcm", "sample_flow_euler",
    "SCHEDULES", "RANGE_SCHEDULES", "schedules_for", "make_sigmas", "karras_sigmas", "exponential_sigmas", "polyexponential_sigmas", "discrete_sigmas",
    "sgm_uniform_sigmas", "flow_sigmas", "flow_shift", "dynamic_flow_shift", "resolution_shift_mu",
    "DynamicThreshold", "MimicThreshold",
]
