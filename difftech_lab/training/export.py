"""Stage ``export``: assemble the trained components into a standard diffusers Stable Diffusion folder + model card."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel

from difftech_lab.models.loading import BUNDLED_MODEL
from difftech_lab.training import components, train_text
from difftech_lab.training.evaluate import DEFAULT_GUIDANCE
from difftech_lab.training.model_card import STAGES, write_model_card

# bumped with every retrained release: recipes record the weights' hash, the card and difftech.json this number
MODEL_VERSION = 4


def _component(runs: Path, name: str) -> Path:
    """A run under ``runs`` by name (``vae-decoder``, ``v1/vae``), or a folder by its path (a release's frozen
    text tower or VAE, e.g. ``difftech_lab/bundled/tiny-shapes/vae``)."""
    return Path(name) if Path(name).is_dir() else runs / name


def assemble(runs: Path, vae_run: str = "vae-decoder", unet_run: str = "unet",
             text_run: str = "text") -> StableDiffusionPipeline:
    """The pipeline from the runs: frozen text tower, VAE with its measured scaling factor, the UNet's EMA weights."""
    tokenizer, text_encoder = train_text.load(_component(runs, text_run))
    vae = AutoencoderKL.from_pretrained(components.folder_of(_component(runs, vae_run)))
    state = torch.load(runs / unet_run / "checkpoint.pt", weights_only=True)
    unet = UNet2DConditionModel(**json.loads((runs / unet_run / "unet_config.json").read_text()))
    unet.load_state_dict(state["ema"])
    vae.register_to_config(scaling_factor=round(float(state["scaling_factor"]), 5))
    return StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=components.build_scheduler(), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)


def main(args) -> None:
    runs = Path(args.runs)
    out = Path(args.out) if args.out else BUNDLED_MODEL
    opts = dict(a.split("=", 1) for a in args.rest)
    pipe = assemble(runs, opts.get("vae", "vae-decoder"), opts.get("unet", "unet"), opts.get("text", "text"))
    keep = {n: (out / n).read_bytes() for n in ("evaluation.json", "evaluation_grid.png") if (out / n).exists()} \
        if opts.get("keep-eval") else {}
    if out.exists():
        shutil.rmtree(out)
    pipe.save_pretrained(out, safe_serialization=True)
    cfg = float(opts.get("cfg", DEFAULT_GUIDANCE))
    (out / "difftech.json").write_text(json.dumps({"cfg": cfg, "version": MODEL_VERSION, "caption_tokens":
                                                   train_text.longest_caption(pipe.tokenizer)}, indent=2) + "\n")
    for name, data in keep.items():
        (out / name).write_bytes(data)
    stages = tuple(opts["stages"].split(",")) if "stages" in opts else STAGES  # e.g. stages=unet2: a continuation's own
    write_model_card(out, runs, previous=opts.get("previous"), stages=stages)
    print(f"wrote {out} ({sum(f.stat().st_size for f in out.rglob('*') if f.is_file()) / 1e6:.1f} MB)")
