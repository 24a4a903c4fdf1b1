"""Stage ``vae``: the AutoencoderKL (factor 4), trained with an edge-aware loss so star points survive."""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL

from difftech_lab.training import components, dataset
from difftech_lab.training.checkpoints import RunDir

KL_WEIGHT = 1e-6
EDGE_WEIGHT = 4.0  # extra squared-error weight on pixels next to an edge of the true image
GRADIENT_WEIGHT = 0.5  # L1 between finite-difference image gradients


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 ``[B, H, W, 3]`` to float ``[B, 3, H, W]`` in [-1, 1]."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1)


def _gradients(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return x[..., :, 1:] - x[..., :, :-1], x[..., 1:, :] - x[..., :-1, :]


def edge_weight(x: torch.Tensor) -> torch.Tensor:
    """1 on flat pixels, ``1 + EDGE_WEIGHT`` within one pixel of a colour edge."""
    gx, gy = _gradients(x)
    edge = F.pad(gx.abs().sum(1, keepdim=True), (0, 1)) + F.pad(gy.abs().sum(1, keepdim=True), (0, 0, 0, 1))
    edge = F.max_pool2d((edge > 1e-3).float(), 3, 1, 1)
    return 1 + EDGE_WEIGHT * edge


def reconstruction_loss(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Edge-weighted squared error plus L1 on image gradients: blurry corners and star points cost more.

    Squared error, not L1, on the pixels: L1's optimum is the median, which for a small uncertain object is the
    background, and an L1-trained autoencoder erases the objects before it learns them.
    """
    err = (edge_weight(x) * (y - x).pow(2)).mean()
    (yx, yy), (xx, xy) = _gradients(y), _gradients(x)
    return err + GRADIENT_WEIGHT * ((yx - xx).abs().mean() + (yy - xy).abs().mean())


def psnr(y: torch.Tensor, x: torch.Tensor) -> float:
    mse = ((y.clamp(-1, 1) - x) / 2).pow(2).mean().item()
    return 10 * np.log10(1 / max(mse, 1e-12))


def train(args) -> None:
    """Train (or resume) the VAE for ``args.steps`` steps or ``args.minutes`` minutes, whichever comes first."""
    torch.manual_seed(args.seed)
    run = RunDir(args.run_dir)
    device = torch.device(args.device)
    vae = components.build_vae().to(device)
    opts = dict(a.split("=", 1) for a in args.rest)  # init=runs/vae decoder-only=1: keep the latent space
    if "init" in opts:
        vae.load_state_dict(AutoencoderKL.from_pretrained(f"{opts['init']}/model").state_dict())
    if opts.get("decoder-only"):
        vae.encoder.requires_grad_(False)
        vae.quant_conv.requires_grad_(False)
    opt = torch.optim.AdamW([p for p in vae.parameters() if p.requires_grad], lr=args.lr, weight_decay=0.0)
    step = 0
    if (state := run.load()) is not None:
        vae.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        for group in opt.param_groups:  # a resumed run may change the learning rate
            group["lr"] = args.lr
        step = int(state["step"])
    val = to_tensor(dataset.batch(10_000_000 + args.seed, min(64, 4 * args.batch))[0]).to(device)
    deadline = time.time() + 60 * args.minutes
    while step < args.steps and time.time() < deadline:
        x = to_tensor(dataset.batch(args.seed * 7919 + step, args.batch)[0]).to(device)
        posterior = vae.encode(x).latent_dist
        y = vae.decode(posterior.sample()).sample
        kl = posterior.kl().sum() / x.shape[0]
        loss = reconstruction_loss(y, x) + KL_WEIGHT * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        if step % args.log_every == 0:
            with torch.no_grad():
                val_psnr = psnr(vae(val).sample, val)
            run.log(step=step, loss=loss.item(), kl=kl.item(), train_psnr=psnr(y.detach(), x), val_psnr=val_psnr)
        if step % args.save_every == 0:
            run.save({"model": vae.state_dict(), "optimizer": opt.state_dict(), "step": torch.tensor(step)})
    run.save({"model": vae.state_dict(), "optimizer": opt.state_dict(), "step": torch.tensor(step)})
    vae.save_pretrained(run.path / "model")
    run.log(step=step, event="saved")


def load(run_dir) -> AutoencoderKL:
    return AutoencoderKL.from_pretrained(f"{run_dir}/model")
