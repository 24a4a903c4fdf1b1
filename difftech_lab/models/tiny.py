"""Tiny random-weight Stable Diffusion components built in code (the diffusers test-suite pattern).

They exercise the real SD 1.x (ε), SD 2 (v-prediction) and SDXL (two text encoders, added time ids) code
paths offline and in milliseconds; their images are noise, their shapes and numerics are real.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch

from .loading import ModelBundle, load_folder

KINDS = ("sd15", "sd2", "sdxl")


def _byte_symbols() -> list[str]:
    """The printable stand-in for each byte that byte-level BPE vocabularies (GPT-2, CLIP) use."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    shifted = iter(range(256, 512))
    return [chr(b) if b in printable else chr(next(shifted)) for b in range(256)]


def _write_byte_tokenizer(folder: Path, max_length: int = 77) -> None:
    """A CLIP tokenizer whose vocabulary is the 256 byte symbols: any text tokenizes, one token per byte."""
    symbols = _byte_symbols()
    vocab = {s: i for i, s in enumerate(symbols)}
    vocab.update({s + "</w>": len(symbols) + i for i, s in enumerate(symbols)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "model_max_length": max_length, "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "tokenizer_class": "CLIPTokenizer",
    }))


def _tokenizer(folder: Path):
    from transformers import CLIPTokenizer

    _write_byte_tokenizer(folder)
    return CLIPTokenizer.from_pretrained(folder)


def _text_encoder(hidden: int, projection: int | None, seed: int):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    config = CLIPTextConfig(
        vocab_size=514, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
        num_attention_heads=2, max_position_embeddings=77, bos_token_id=512, eos_token_id=513,
        pad_token_id=513, projection_dim=projection or hidden, hidden_act="gelu",
    )
    model = CLIPTextModelWithProjection(config) if projection else CLIPTextModel(config)
    return model.eval()


def tiny_components(kind: str = "sd15", seed: int = 0, folder: str | os.PathLike | None = None) -> dict:
    """Random tiny components of ``kind`` ("sd15", "sd2" v-prediction, "sdxl"), as a diffusers pipeline dict."""
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, UNet2DConditionModel

    if kind not in KINDS:
        from ..errors import UnknownNameError

        raise UnknownNameError("tiny model kind", kind, KINDS)
    folder = Path(folder or tempfile.mkdtemp(prefix="difftech-tiny-"))
    sdxl = kind == "sdxl"
    torch.manual_seed(seed)
    unet_extra = dict(
        addition_embed_type="text_time", addition_time_embed_dim=8, projection_class_embeddings_input_dim=8 * 6 + 32,
        transformer_layers_per_block=(1, 1),
    ) if sdxl else {}
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=8, in_channels=4, out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D") if not sdxl else ("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D") if not sdxl else ("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=64 if sdxl else 32, attention_head_dim=(2, 4) if sdxl else 8, norm_num_groups=8,
        use_linear_projection=kind != "sd15", **unet_extra,
    ).eval()
    torch.manual_seed(seed + 1)
    vae = AutoencoderKL(
        block_out_channels=(16, 32), in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=8,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2, sample_size=32,
    ).eval()
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1,
        prediction_type="v_prediction" if kind == "sd2" else "epsilon", timestep_spacing="leading",
    )
    components = {
        "unet": unet, "vae": vae, "scheduler": scheduler,
        "tokenizer": _tokenizer(folder / "_tokenizer"),
        "text_encoder": _text_encoder(32, None, seed + 2),
    }
    if sdxl:
        components["tokenizer_2"] = _tokenizer(folder / "_tokenizer_2")
        components["text_encoder_2"] = _text_encoder(32, 32, seed + 3)
    return components


def save_tiny_pipeline(folder: str | os.PathLike, kind: str = "sd15", seed: int = 0) -> Path:
    """Write a tiny random pipeline of ``kind`` as a standard diffusers folder (safetensors) and return it."""
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    folder = Path(folder)
    with tempfile.TemporaryDirectory() as scratch:
        parts = tiny_components(kind, seed, scratch)
        if kind == "sdxl":
            pipe = StableDiffusionXLPipeline(**parts)
        else:
            pipe = StableDiffusionPipeline(**parts, safety_checker=None, feature_extractor=None,
                                           requires_safety_checker=False)
        pipe.save_pretrained(folder, safe_serialization=True)
    return folder


def tiny_model(kind: str = "sd15", seed: int = 0, *, device="auto", dtype="auto") -> ModelBundle:
    """A tiny random model of ``kind``, loaded (for tests and widget development: ``Session(tiny_model())``).

    It is saved first and loaded back, so it goes through the same loader as a real folder; the folder is kept,
    so ``bundle.source`` stays loadable from another process.
    """
    folder = save_tiny_pipeline(tempfile.mkdtemp(prefix=f"difftech-tiny-{kind}-"), kind, seed)
    return load_folder(folder, device, dtype, name=f"tiny-{kind}")
