"""One prepared check for a CUDA machine: the Session in fp16 on full-size random-weight SD 1.5 and SDXL UNets.

For each architecture it reports: the fp16 result against fp32 on the same weights and noise (relative error of
the final latents), the attention backend PyTorch picks for the UNet's attention shapes, and the median time of
Session.generate against diffusers' pipeline on the same components, alternating runs, as a ratio.

    python benchmarks/gpu_check.py [--steps 20] [--rounds 5] [--kinds sd15 sdxl] [--device cuda]

With ``--device cpu --small`` it runs the same code path on reduced-width models (a smoke check without a GPU).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch


def full_size_components(kind: str, small: bool, folder: Path) -> dict:
    """Random-weight components with the published SD 1.5 / SDXL shapes (``small`` divides widths by 8)."""
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from difftech_lab.models.tiny import _tokenizer

    div = 8 if small else 1
    torch.manual_seed(0)
    if kind == "sd15":
        unet = UNet2DConditionModel(block_out_channels=tuple(c // div for c in (320, 640, 1280, 1280)),
                                    cross_attention_dim=768 // div, attention_head_dim=8, sample_size=64,
                                    norm_num_groups=32 // div if small else 32)
        encoders = [CLIPTextModel(CLIPTextConfig(hidden_size=768 // div, intermediate_size=3072 // div,
                                                 num_hidden_layers=12, num_attention_heads=12 // div or 1,
                                                 vocab_size=514, bos_token_id=512, eos_token_id=513,
                                                 pad_token_id=513))]
    else:
        unet = UNet2DConditionModel(
            block_out_channels=tuple(c // div for c in (320, 640, 1280)), sample_size=128,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            transformer_layers_per_block=(1, 2, 10), attention_head_dim=(5, 10, 20) if not small else (1, 2, 4),
            cross_attention_dim=2048 // div, use_linear_projection=True, addition_embed_type="text_time",
            addition_time_embed_dim=256, projection_class_embeddings_input_dim=256 * 6 + 1280 // div,
            norm_num_groups=32 // div if small else 32)
        encoders = [
            CLIPTextModel(CLIPTextConfig(hidden_size=768 // div, intermediate_size=3072 // div, num_hidden_layers=12,
                                         num_attention_heads=12 // div or 1, vocab_size=514, bos_token_id=512,
                                         eos_token_id=513, pad_token_id=513)),
            CLIPTextModelWithProjection(CLIPTextConfig(hidden_size=1280 // div, intermediate_size=5120 // div,
                                                       num_hidden_layers=32, num_attention_heads=20 // div or 1,
                                                       projection_dim=1280 // div, vocab_size=514, bos_token_id=512,
                                                       eos_token_id=513, pad_token_id=513)),
        ]
    vae = AutoencoderKL(block_out_channels=tuple(c // div for c in (128, 256, 512, 512)), latent_channels=4,
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                        norm_num_groups=32 // div if small else 32,
                        scaling_factor=0.18215 if kind == "sd15" else 0.13025)
    parts = {"unet": unet.eval(), "vae": vae.eval(), "text_encoder": encoders[0].eval(),
             "tokenizer": _tokenizer(folder / "tok"),
             "scheduler": EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                                 steps_offset=1, timestep_spacing="leading")}
    if kind == "sdxl":
        parts.update(text_encoder_2=encoders[1].eval(), tokenizer_2=_tokenizer(folder / "tok2"))
    return parts


def attention_backend(device: torch.device, dtype: torch.dtype, heads: int, seq: int, dim: int) -> str:
    """The SDPA backend PyTorch accepts for one UNet-like attention shape (first that runs, fastest first)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    q = torch.randn(2, heads, seq, dim, device=device, dtype=dtype)
    for backend in (SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION,
                    SDPBackend.MATH):
        try:
            with sdpa_kernel(backend):
                torch.nn.functional.scaled_dot_product_attention(q, q, q)
            return backend.name
        except RuntimeError:
            continue
    return "none"


def check(kind: str, args) -> dict:
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    from difftech_lab import Session

    device = torch.device(args.device)
    side = (512 if kind == "sd15" else 1024) // (4 if args.small else 1)
    with tempfile.TemporaryDirectory() as tmp:
        parts = full_size_components(kind, args.small, Path(tmp))
        cls = StableDiffusionXLPipeline if kind == "sdxl" else StableDiffusionPipeline
        extra = {} if kind == "sdxl" else {"safety_checker": None, "feature_extractor": None,
                                           "requires_safety_checker": False}
        cls(**parts, **extra).save_pretrained(Path(tmp) / "model")
        folder = Path(tmp) / "model"
        options = dict(steps=args.steps, width=side, height=side, seed=0, cfg=7.0, progress=False)
        reference = Session.from_pretrained(folder, device=device, dtype=torch.float32).generate("a photo", **options)
        session = Session.from_pretrained(folder, device=device, dtype=args.dtype)
        result = session.generate("a photo", **options)
        err = ((result.latents - reference.latents).norm() / reference.latents.norm()).item()
        pipe = cls.from_pretrained(folder, torch_dtype=session.dtype, **extra).to(device)
        pipe.set_progress_bar_config(disable=True)

        def sync():
            if device.type == "cuda":
                torch.cuda.synchronize()

        def timed(fn):
            sync()
            t = time.perf_counter()
            fn()
            sync()
            return time.perf_counter() - t

        run_session = lambda: session.generate("a photo", **options)  # noqa: E731
        run_pipe = lambda: pipe("a photo", num_inference_steps=args.steps, guidance_scale=7.0, width=side,  # noqa: E731
                                height=side, generator=torch.Generator("cpu").manual_seed(0))
        run_session(), run_pipe()
        rows = [(timed(run_pipe), timed(run_session)) for _ in range(args.rounds)]
    heads, dim = (8, 40) if kind == "sd15" else (10, 64)
    return {
        "kind": kind, "size": side, "dtype": str(session.dtype), "device": str(device),
        "gpu": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
        "fp16_vs_fp32_relative_error": round(err, 5), "finite": bool(torch.isfinite(result.latents).all()),
        "attention_backend": attention_backend(device, session.dtype, heads, (side // 8) ** 2, dim),
        "diffusers_median_s": round(statistics.median(r[0] for r in rows), 4),
        "session_median_s": round(statistics.median(r[1] for r in rows), 4),
        "ratio_session_over_diffusers": round(statistics.median(r[1] / r[0] for r in rows), 3),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="float16")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--kinds", nargs="+", default=["sd15", "sdxl"])
    parser.add_argument("--small", action="store_true", help="reduced widths, for a CPU smoke run")
    args = parser.parse_args(argv)
    args.dtype = getattr(torch, args.dtype)
    for kind in args.kinds:
        print(json.dumps(check(kind, args)), flush=True)


if __name__ == "__main__":
    main()
