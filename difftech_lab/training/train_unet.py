"""Stage ``unet``: the denoiser, trained on frozen VAE latents and frozen pretrained text states.

v-prediction (Salimans & Ho 2022) with min-SNR-γ loss weighting (Hang et al. 2023), caption dropout for
classifier-free guidance (Ho & Salimans 2022), and an EMA of the weights, which is what gets exported.
"""

from __future__ import annotations

import json
import time

import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel

from difftech_lab.training import components, dataset, train_text
from difftech_lab.training.checkpoints import RunDir, ema_update
from difftech_lab.training.train_vae import to_tensor

MIN_SNR_GAMMA = 5.0
CAPTION_DROPOUT = 0.1
EMA_DECAY = 0.999
WARMUP_STEPS = 200


@torch.no_grad()
def encode_pool(vae: AutoencoderKL, seed: int, size: int, chunk: int = 256,
                drop: dict[str, float] | None = None) -> tuple[torch.Tensor, list[str]]:
    """Unscaled posterior-mean latents and captions of ``size`` training scenes (computed once, reused each epoch);
    ``drop``: how often free captions leave each attribute out (:func:`scenes.free_caption`'s rates otherwise)."""
    latents, captions = [], []
    for start in range(0, size, chunk):
        images, caps = dataset.batch(seed * 104_729 + start // chunk, min(chunk, size - start), drop=drop)
        latents.append(vae.encode(to_tensor(images).to(vae.device)).latent_dist.mean.cpu())
        captions += caps
    return torch.cat(latents), captions


def min_snr_v_weight(alphas_cumprod: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """min(SNR, γ) / (SNR + 1): the min-SNR-γ weight for a v-prediction loss."""
    snr = alphas_cumprod[t] / (1 - alphas_cumprod[t])
    return snr.clamp(max=MIN_SNR_GAMMA) / (snr + 1)


def noise_scheduler() -> DDPMScheduler:
    """The training-time forward process: the exported scheduler's betas, every one of its 1000 timesteps."""
    return DDPMScheduler(**{k: v for k, v in components.SCHEDULER_CONFIG.items() if k != "timestep_spacing"})


def v_loss(unet, scheduler: DDPMScheduler, x0, ctx, noise, t) -> torch.Tensor:
    """Min-SNR-weighted v-prediction loss at timesteps ``t``."""
    xt = scheduler.add_noise(x0, noise, t)
    target = scheduler.get_velocity(x0, noise, t)
    pred = unet(xt, t, ctx).sample
    weight = min_snr_v_weight(scheduler.alphas_cumprod.to(x0.device), t)
    return (weight * (pred - target).pow(2).mean((1, 2, 3))).mean()


def _pool(run: RunDir, vae: AutoencoderKL, tokenizer, text_encoder, args) -> tuple[torch.Tensor, torch.Tensor]:
    """The training pool, cached in the run: unscaled latents and the frozen text states (fp16) of each caption."""
    path = run.path / "pool.pt"
    if path.exists():
        state = torch.load(path, weights_only=True)
        return state["latents"], state["context"]
    latents, captions = encode_pool(vae, args.seed, args.pool, drop=args.drop)
    with torch.no_grad():
        context = torch.cat([text_encoder(train_text.encode(tokenizer, captions[i:i + 256]).to(vae.device))
                             .last_hidden_state.half().cpu() for i in range(0, len(captions), 256)])
    torch.save({"latents": latents, "context": context}, path)
    (run.path / "pool.json").write_text(json.dumps(captions))
    return latents, context


def train(args) -> None:
    """Train (or resume) the UNet for ``args.steps`` steps or ``args.minutes`` minutes."""
    torch.manual_seed(args.seed)
    run = RunDir(args.run_dir)
    device = torch.device(args.device)
    # e.g. vae=runs/vae text=runs/text pool=16384 init=difftech_lab/bundled/tiny-shapes (fine-tune a release)
    # drop=position:0.5,colour:0.2 (how often free captions leave an attribute out)
    opts = dict(a.split("=", 1) for a in args.rest)
    args.pool = int(opts.get("pool", 16384))
    args.drop = {k: float(v) for k, v in (item.split(":") for item in opts["drop"].split(","))} \
        if "drop" in opts else None
    vae = AutoencoderKL.from_pretrained(components.folder_of(opts.get("vae", args.runs + "/vae"))).to(device).eval()
    tokenizer, text_encoder = train_text.load(opts.get("text", f"{args.runs}/text"))
    text_encoder.to(device).eval()
    latents, context = _pool(run, vae, tokenizer, text_encoder, args)
    scaling = float(1 / latents.std())
    arch = run.path / "unet_config.json"
    if "init" in opts:  # a released UNet keeps the latent scaling it was trained with
        released = UNet2DConditionModel.from_pretrained(f"{opts['init']}/unet")
        scaling = float(AutoencoderKL.load_config(f"{opts['init']}/vae")["scaling_factor"])
        if not arch.exists():
            arch.write_text(json.dumps({k: v for k, v in released.config.items() if not k.startswith("_")}))
    elif not arch.exists():
        arch.write_text(json.dumps(components.UNET_ARCHITECTURES[opts.get("arch", "four-level")]))
    unet = UNet2DConditionModel(**json.loads(arch.read_text())).to(device)
    if "init" in opts:
        unet.load_state_dict(released.state_dict())
    ema = {k: v.detach().clone() for k, v in unet.state_dict().items()}
    opt = torch.optim.AdamW(unet.parameters(), lr=args.lr, weight_decay=0.01)
    step = 0
    if (state := run.load()) is not None:
        unet.load_state_dict(state["model"])
        ema = state["ema"]
        opt.load_state_dict(state["optimizer"])
        for group in opt.param_groups:  # a resumed run may change the learning rate
            group["lr"] = args.lr
        step = int(state["step"])
    process = noise_scheduler()
    with torch.no_grad():
        empty = text_encoder(train_text.encode(tokenizer, [""]).to(device)).last_hidden_state
    g = torch.Generator().manual_seed(args.seed * 31 + step)  # a resumed run draws fresh batches
    warmup = int(opts.get("warmup", WARMUP_STEPS))

    def draw():
        idx = torch.randint(len(latents), (args.batch,), generator=g)
        drop = torch.rand(args.batch, generator=g) < CAPTION_DROPOUT
        noise = torch.randn((args.batch, *latents.shape[1:]), generator=g)
        t = torch.randint(0, process.config.num_train_timesteps, (args.batch,), generator=g)
        return idx, drop.to(device), noise.to(device), t.to(device)

    fixed = draw() if opts.get("fixed-batch") else None  # overfit one batch: the smoke test's loss oracle
    deadline, losses = time.time() + 60 * args.minutes, []
    while step < args.steps and time.time() < deadline:
        idx, drop, noise, t = fixed or draw()
        x0 = latents[idx].to(device) * scaling
        ctx = torch.where(drop[:, None, None], empty, context[idx].to(device).float())
        loss = v_loss(unet, process, x0, ctx, noise, t)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        for group in opt.param_groups:
            group["lr"] = args.lr * min(1.0, (step + 1) / max(warmup, 1))
        opt.step()
        step += 1
        ema_update(ema, unet, min(EMA_DECAY, (1 + step) / (10 + step)))
        losses.append(loss.item())
        if step % args.log_every == 0:
            run.log(step=step, loss=sum(losses) / len(losses), lr=opt.param_groups[0]["lr"])
            losses = []
        if step % args.save_every == 0:
            _save(run, unet, ema, opt, step, scaling)
    _save(run, unet, ema, opt, step, scaling)
    run.log(step=step, event="saved")


def _save(run: RunDir, unet, ema, opt, step: int, scaling: float) -> None:
    run.save({"model": unet.state_dict(), "ema": ema, "optimizer": opt.state_dict(), "step": torch.tensor(step),
              "scaling_factor": torch.tensor(scaling)})
