"""The model card (README.md) of a model folder: data, architecture, training, hardware, time and evaluation."""

from __future__ import annotations

import json
import math
import os
import platform
from pathlib import Path

import torch

from difftech_lab import scenes
from difftech_lab.models.identity import weights_hash
from difftech_lab.training import dataset


def _log_summary(run: Path) -> dict:
    """Steps, wall minutes summed over every sitting (each restarts its clock), and the last logged values."""
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()] if (run / "log.jsonl").exists() else []
    steps = [r for r in records if "loss" in r]
    seconds, previous = 0.0, 0.0
    for r in records:
        if r["time"] < previous:  # a new sitting began
            seconds += previous
        previous = r["time"]
    return {"steps": steps[-1]["step"] if steps else 0, "last": steps[-1] if steps else {},
            "minutes": round((seconds + previous) / 60, 1)}


def write_model_card(folder: Path, runs: Path | None = None) -> None:
    """README.md of the model folder: data, architecture, training, hardware, time and evaluation table."""
    folder = Path(folder)
    meta_path = folder / "training.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    if runs is not None:
        meta["stages"] = {name: _log_summary(runs / name) for name in ("text", "vae", "vae-decoder", "unet", "unet-lowlr")
                          if (runs / name).exists()}
        meta["commands"] = [json.loads(line) for line in (runs / "commands.jsonl").read_text().splitlines()] \
            if (runs / "commands.jsonl").exists() else []
        meta["hardware"] = (f"{os.cpu_count()} {platform.machine()} CPU cores, no GPU, torch {torch.__version__},"
                            " one torch thread per training process (two processes at a time)")
        meta_path.write_text(json.dumps(meta, indent=1))
    evaluation = json.loads((folder / "evaluation.json").read_text()) if (folder / "evaluation.json").exists() else None
    (folder / "README.md").write_text(_card_text(folder, meta, evaluation))


def _params(folder: Path, name: str) -> str:
    files = list((folder / name).glob("*.safetensors"))
    if not files:
        return "?"
    from safetensors import safe_open
    with safe_open(files[0], "pt") as f:
        n = sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())
    return f"{n / 1e6:.2f}M"


def _evaluation_table(evaluation: dict) -> str:
    rows = ["| prompts | n | colour | shape | position | background | object all-right | image all-right |",
            "|---|---|---|---|---|---|---|---|"]
    for name, r in evaluation["rows"].items():
        rows.append(f"| {name} | {r['n']} | {r['colour']:.1%} | {r['shape']:.1%} | {r['position']:.1%} | "
                    f"{r['background']:.1%} | {r['object']:.1%} | {r['all']:.1%} |")
    return "\n".join(rows)


_DESIGN_NOTES = [
    "## Why it learns in CPU-minutes",
    "- Text: instead of training the text encoder jointly with the UNet (which, in a trial here, left adherence near",
    "  chance after 38 CPU-minutes), the CLIP text tower is pretrained alone on the grammar — linear probes must read",
    "  each object's colour, size, shape and position from the token that ends its phrase and the whole scene from",
    "  the end-of-text token and the padding after it — and is then frozen, as Stable Diffusion freezes CLIP. Text-only",
    "  pretraining costs seconds per hundred steps (no image tower), and binds each object's words into one token",
    "  that cross-attention can copy. The image tower of a contrastive CLIP was not needed: the scorer reads pixels.",
    "- Position: the UNet's 2×2 bottleneck (four levels, 16→8→4→2) puts every cell against two borders, so zero",
    "  padding tells the convolutions where they are; no extra input channels, the standard UNet2DConditionModel.",
    "- VAE: squared error weighted ×5 next to edges plus an L1 loss on image gradients, a near-deterministic",
    "  posterior at initialisation (quant_conv log-variance bias −8), then a decoder-only fine-tune on the frozen",
    "  encoder (the latent space the UNet was trained on is kept). A first attempt with an L1 pixel loss erased the",
    "  objects (L1's optimum for an uncertain small object is the background) and was discarded.",
    "- Data: objects of one scene sit two grid cells apart and have distinct colours; positions are 9 grid anchors",
    "  with ±2 px jitter, sizes two, shapes upright: a small, exactly scorable world.",
    "- Training reads a cached pool of 10,240 encoded training scenes with their frozen text states.",
    "",
]


def _card_text(folder: Path, meta: dict, evaluation: dict | None) -> str:
    cfg = {n: json.loads((folder / n / "config.json").read_text()) for n in ("unet", "vae", "text_encoder")}
    lines = [
        "# tiny-shapes: a toy-size Stable Diffusion for difftech_lab",
        "",
        "The Stable Diffusion architecture at toy size, trained from scratch on difftech_lab's procedural captioned",
        "shapes. It runs offline on the CPU and every output can be scored against its prompt",
        "(`difftech_lab.metrics`).",
        "",
        "```python",
        "from diffusers import StableDiffusionPipeline",
        "pipe = StableDiffusionPipeline.from_pretrained(path)  # HF_HUB_OFFLINE=1 is fine",
        'image = pipe("a big red circle on the left on a white background", height=64, width=64,',
        f"             num_inference_steps=20, guidance_scale={(evaluation or {}).get('guidance_scale', 'G')}).images[0]",
        "```",
        "",
        "## Data",
        f"- `difftech_lab.training.dataset`: {scenes.RESOLUTION}×{scenes.RESOLUTION} RGB scenes of 1–3 objects",
        f"  (40% / 40% / 20%), shapes {', '.join(scenes.SHAPES)}; colours {', '.join(scenes.COLOURS)};",
        f"  sizes {', '.join(scenes.SIZES)}; backgrounds {', '.join(scenes.BACKGROUNDS)}; positions on a 3×3 grid",
        f"  ({', '.join(scenes.POSITIONS)}), ±{dataset.JITTER:g} px jitter; objects of one scene have distinct",
        "  colours and sit two grid cells apart.",
        "- One grammar: `a <size> <colour> <shape> on the <position> [and a … ] on a <background> background`.",
        f"- Held out: every caption whose MD5 is 0 modulo {dataset.HELD_OUT_MODULUS} (`dataset.is_held_out`); no",
        "  training stage (text, VAE, UNet) ever sees one. Evaluation uses only those captions.",
        "",
        "## Architecture (diffusers / transformers classes)",
        "- `CLIPTokenizer`: byte-level BPE with byte fallbacks; every grammar word is one token; context 77.",
        f"- `CLIPTextModel`: {_params(folder, 'text_encoder')} parameters, hidden {cfg['text_encoder']['hidden_size']},"
        f" {cfg['text_encoder']['num_hidden_layers']} layers; pretrained on the grammar (probes read each object's"
        " attributes from its phrase-end token and the whole scene from the end token), then frozen.",
        f"- `AutoencoderKL`: {_params(folder, 'vae')} parameters, blocks {cfg['vae']['block_out_channels']},"
        f" 4 latent channels, factor 4 (64×64×3 → 16×16×4), scaling factor {cfg['vae']['scaling_factor']}"
        " (unit-std latents); trained with edge-weighted squared error (×5 next to edges) + image-gradient L1"
        " + 1e-6 KL, then decoder-only.",
        f"- `UNet2DConditionModel`: {_params(folder, 'unet')} parameters, blocks {cfg['unet']['block_out_channels']},"
        f" down {cfg['unet']['down_block_types']}, self- and cross-attention at 8×8, 4×4 and 2×2 (plus mid-block);"
        " v-prediction, min-SNR-5 weighting, 10% caption dropout, EMA 0.999 (exported).",
        "- Scheduler: `EulerDiscreteScheduler`, scaled-linear betas, trailing timestep spacing.",
        "- `difftech.json`: the guidance scale the evaluation uses (3.0); `Session.generate` takes it when `cfg` is "
        "not given.",
        f"- Identity: version {_version(folder)}, weights hash `{weights_hash(folder)}` (recorded in every Recipe; "
        "`session.run` warns when a recipe was made with other weights).",
        "",
        "## Training",
    ]
    for name, st in meta.get("stages", {}).items():
        last = {k: round(v, 4) if isinstance(v, float) else v for k, v in st["last"].items() if k != "time"}
        lines.append(f"- `{name}`: {st['steps']} steps, {st['minutes']} min wall; last log {last}")
    lines += ["", "Commands, in order (`python -m difftech_lab.training …`):", "", "```"]
    lines += [" ".join(c["argv"]) + (f"  # {c['note']}" if c.get("note") else "") for c in meta.get("commands", [])]
    lines += ["```", "", f"Hardware: {meta.get('hardware', '?')}; the machine was shared with other jobs, so wall"
              " times are upper bounds.", "", *_DESIGN_NOTES]
    if evaluation:
        lines += ["## Evaluation", "",
                  f"Held-out prompts, seeds {evaluation['seeds']}, {evaluation['steps']} steps of"
                  f" `EulerDiscreteScheduler`, CFG {evaluation['guidance_scale']}, scored by"
                  " `difftech_lab.metrics` (`python -m difftech_lab.training eval`):", "",
                  _evaluation_table(evaluation), "",
                  f"Generation time (diffusers StableDiffusionPipeline on the CPU, one 64×64 image, 20 steps with CFG,"
                  f" median of the runs, torch threads as run): {evaluation.get('timing', {})}.", "",
                  *[f"- {line}" for line in evaluation.get("notes", [])], "",
                  "Reference generation (checked by the tests): " + json.dumps(evaluation["reference"]), "",
                  "![evaluation grid](evaluation_grid.png)", "",
                  "Grid: held-out prompts, each row pairs generated images with the prompts' true renderings.", ""]
    return "\n".join(lines)


def _version(folder: Path) -> str:
    meta = folder / "difftech.json"
    return str(json.loads(meta.read_text()).get("version", "")) if meta.is_file() else ""
