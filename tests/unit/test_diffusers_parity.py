"""Our σ-space samplers on a tiny random UNet against diffusers' schedulers stepping the same UNet."""

import pytest
import torch
from diffusers import (
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    HeunDiscreteScheduler,
    LCMScheduler,
    UNet2DConditionModel,
)

from difftech_lab.models.parameterization import lcm_boundary_scalings, model_sampling_from_config
from difftech_lab.sampling.samplers import (
    sample_dpmpp_2m,
    sample_euler,
    sample_euler_ancestral,
    sample_heun,
    sample_lcm,
)
from difftech_lab.sampling.schedules import discrete_sigmas

SD = dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, num_train_timesteps=1000,
          steps_offset=1, timestep_spacing="leading")
ZSNR_V = dict(SD, prediction_type="v_prediction", rescale_betas_zero_snr=True, timestep_spacing="trailing")
STEPS = 8
TOL = dict(rtol=1e-4, atol=1e-4)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def unet():
    torch.manual_seed(0)
    return UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, attention_head_dim=8, norm_num_groups=8,
    ).eval()


@pytest.fixture(scope="module")
def ehs():
    return torch.randn(2, 4, 32, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def noise():
    return torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(2))


def denoiser_for(unet, ehs, config):
    """D(x; σ) = parameterisation(x, σ, unet(x/√(σ²+1), t(σ))), the k-diffusion wrapper around a diffusers UNet."""
    ms = model_sampling_from_config(config)

    @torch.no_grad()
    def denoiser(x, sigma):
        return ms.denoised(x, sigma, unet(ms.scale_input(x, sigma), ms.timestep(sigma), ehs).sample)

    return ms, denoiser


@torch.no_grad()
def run_diffusers(scheduler, unet, ehs, x, generator=None):
    for t in scheduler.timesteps:
        output = unet(scheduler.scale_model_input(x, t), t, ehs).sample
        options = {} if generator is None else {"generator": generator}
        x = scheduler.step(output, t, x, **options).prev_sample
    return x


@pytest.mark.parametrize("config", [SD, ZSNR_V], ids=["eps", "v_zero_snr_trailing"])
def test_euler_matches_diffusers(unet, ehs, noise, config):
    scheduler = EulerDiscreteScheduler(**config)
    scheduler.set_timesteps(STEPS)
    ms, denoiser = denoiser_for(unet, ehs, config)
    assert torch.equal(scheduler.sigmas, discrete_sigmas(ms, STEPS, config["timestep_spacing"]))
    x = noise * scheduler.init_noise_sigma
    ours = sample_euler(denoiser, x, scheduler.sigmas)
    assert torch.allclose(ours, run_diffusers(scheduler, unet, ehs, x), **TOL)


def test_heun_matches_diffusers(unet, ehs, noise):
    scheduler = HeunDiscreteScheduler(**SD)
    scheduler.set_timesteps(STEPS)
    ms, denoiser = denoiser_for(unet, ehs, SD)
    x = noise * scheduler.init_noise_sigma
    ours = sample_heun(denoiser, x, discrete_sigmas(ms, STEPS, "leading"))
    assert len(scheduler.timesteps) == 2 * STEPS - 1
    assert torch.allclose(ours, run_diffusers(scheduler, unet, ehs, x), **TOL)


def test_dpmpp_2m_matches_diffusers(unet, ehs, noise):
    """diffusers steps the VP sample x_t = x_σ/√(σ²+1), so we start from noise·√(σ_0²+1); at σ=0 both agree."""
    scheduler = DPMSolverMultistepScheduler(**SD, algorithm_type="dpmsolver++", solver_order=2,
                                            final_sigmas_type="zero", lower_order_final=True)
    scheduler.set_timesteps(STEPS)
    _, denoiser = denoiser_for(unet, ehs, SD)
    sigma_0 = float(scheduler.sigmas[0])
    ours = sample_dpmpp_2m(denoiser, noise * (sigma_0**2 + 1) ** 0.5, scheduler.sigmas)
    assert torch.allclose(ours, run_diffusers(scheduler, unet, ehs, noise), **TOL)


def test_lcm_matches_diffusers(unet, ehs, noise):
    """LCMScheduler's output is the consistency function c_skip·x_t + c_out·x̂0, then re-noised with fresh noise."""
    scheduler = LCMScheduler(**SD)
    scheduler.set_timesteps(4)
    ms, denoiser = denoiser_for(unet, ehs, SD)

    def consistency(x, sigma):
        c_skip, c_out = lcm_boundary_scalings(ms.timestep(sigma).view(-1, 1, 1, 1))
        return c_skip * ms.scale_input(x, sigma) + c_out * denoiser(x, sigma)

    sigmas = torch.cat([ms.t_to_sigma(scheduler.timesteps.float()), torch.zeros(1)])
    ours = sample_lcm(consistency, noise * (float(sigmas[0]) ** 2 + 1) ** 0.5, sigmas,
                      generator=torch.Generator().manual_seed(3))
    theirs = run_diffusers(scheduler, unet, ehs, noise, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(ours, theirs, **TOL)


def test_euler_ancestral_matches_diffusers_with_same_noise(unet, ehs, noise):
    """Both draw one randn of x's shape per step from the same CPU generator, so paths agree sample by sample."""
    scheduler = EulerAncestralDiscreteScheduler(**SD)
    scheduler.set_timesteps(STEPS)
    _, denoiser = denoiser_for(unet, ehs, SD)
    x = noise * scheduler.init_noise_sigma
    ours = sample_euler_ancestral(denoiser, x, scheduler.sigmas, generator=torch.Generator().manual_seed(4))
    theirs = run_diffusers(scheduler, unet, ehs, x, generator=torch.Generator().manual_seed(4))
    assert torch.allclose(ours, theirs, **TOL)
    scheduler.set_timesteps(STEPS)
    other_seed = run_diffusers(scheduler, unet, ehs, x, generator=torch.Generator().manual_seed(5))
    assert not torch.allclose(ours, other_seed, **TOL)
