"""A diffusers UNet as a conditioned denoiser ``D(x, σ, hidden, pooled) -> x̂0`` (Karras et al. 2022 view)."""

from __future__ import annotations

import torch
from torch.profiler import record_function

from .loading import ModelBundle


class UNetDenoiser:
    """Scales the input for σ, feeds the UNet its timestep, and turns its output (ε, v, …) into x̂0.

    For SDXL it adds the pooled text embedding and the size/crop time ids (original size = target size =
    the generation size, crop (0, 0): what diffusers' SDXL pipeline passes by default).
    """

    def __init__(self, model: ModelBundle, *, width: int, height: int):
        self.model = model
        self.unet = model.unet
        self.model_sampling = model.model_sampling
        self.time_ids = torch.tensor([[height, width, 0, 0, height, width]], dtype=torch.float32)

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, hidden: torch.Tensor, pooled=None) -> torch.Tensor:
        ms, dtype, device = self.model_sampling, self.model.dtype, self.model.device
        with record_function("difftech/model"):
            x_in = ms.scale_input(x, sigma.view(-1, 1, 1, 1)).to(device, dtype)
            t = ms.timestep(sigma).to(device)
            added = None
            if self.model.is_sdxl:
                added = {"text_embeds": pooled.to(device, dtype),
                         "time_ids": self.time_ids.to(device, dtype).expand(x.shape[0], -1)}
            out = self.unet(x_in, t, encoder_hidden_states=hidden.to(device, dtype), added_cond_kwargs=added,
                            return_dict=False)[0]
            return ms.denoised(x, sigma.view(-1, 1, 1, 1), out.float())
