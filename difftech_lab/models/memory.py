"""Memory a run needs, estimated before anything is allocated, so an impossible size is refused with a clear
error instead of the kernel's out-of-memory killer ending the Python process (and the notebook's kernel).

The estimate counts what grows with the image: the latents and the sampler's copies, the UNet's activations
and skip connections at every level, and the VAE decoder's full-resolution activations. Attention is counted
as torch's fused kernels need it (linear in the token count); the quadratic attention matrix of the
``classic`` backend is not, so the estimate is a floor, meant to catch sizes that cannot work at all.
"""

from __future__ import annotations

import os

import torch

from ..errors import ResourceError

FLOAT = 4  # bytes: the spine samples in float32
SAMPLER_COPIES = 8  # x, x̂0, derivatives, the trajectory's last state … a handful of latent-sized tensors
LIVE_ACTIVATIONS = 6  # a ResNet block holds its input, a normalised copy, two convolutions' outputs …
DECODER_BUFFERS = 3  # the decoder's widest up block keeps its input, a normalised copy and a convolution output


def estimate_bytes(model, width: int, height: int, rows: int) -> int:
    """Bytes a run of ``rows`` network rows (batch × prompt terms, uncond included) at width×height needs."""
    f = model.vae_scale_factor
    h, w = height // f, width // f
    latent = model.latent_channels * h * w * FLOAT
    unet = model.unet.config
    levels = list(unet.block_out_channels)
    skips = sum(c * (h >> k) * (w >> k) for k, c in enumerate(levels)) * (unet.layers_per_block + 1)
    widest = max(c * (h >> k) * (w >> k) for k, c in enumerate(levels))
    unet_bytes = rows * (skips + LIVE_ACTIVATIONS * widest) * _itemsize(model)
    batch = max(1, rows // 2)
    decoder = batch * DECODER_BUFFERS * min(model.vae.config.block_out_channels) * height * width * _itemsize(model)
    images = batch * 3 * height * width * (FLOAT + 1)
    return int(rows * latent * SAMPLER_COPIES + unet_bytes + decoder + images)


def available_bytes(device: torch.device) -> int | None:
    """Free memory on ``device`` (None when it cannot be read)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type == "cpu":
        try:
            with open("/proc/meminfo") as meminfo:
                fields = dict(line.split(":", 1) for line in meminfo)
            return int(fields["MemAvailable"].split()[0]) * 1024
        except (OSError, KeyError, ValueError):
            pages = os.sysconf("SC_AVPHYS_PAGES") if hasattr(os, "sysconf") else None
            return None if pages is None else pages * os.sysconf("SC_PAGE_SIZE")
    return None


def check_memory(model, width: int, height: int, rows: int) -> None:
    """Raise ResourceError when a run cannot fit in the free memory of the model's device."""
    need = estimate_bytes(model, width, height, rows)
    free = available_bytes(model.device)
    if free is None or need <= free:
        return
    side = _largest_square(model, rows, free)
    raise ResourceError(
        f"a {width}×{height} run with {rows} network rows (batch × prompt terms) needs about {_gb(need)} on "
        f"{model.device.type}, but {_gb(free)} is free; generate at most about {side}×{side} at this batch size, "
        "or lower batch_size")


def _largest_square(model, rows: int, free: int) -> int:
    m = model.size_multiple
    side = m
    while estimate_bytes(model, side * 2, side * 2, rows) <= free:
        side *= 2
    step = side // 2
    while step >= m:
        if estimate_bytes(model, side + step, side + step, rows) <= free:
            side += step
        step //= 2
    return side // m * m


def _itemsize(model) -> int:
    return torch.finfo(model.dtype).bits // 8


def _gb(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"
