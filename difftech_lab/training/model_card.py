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


STAGES = ("text", "vae", "vae-decoder", "unet", "unet-lowlr")


def write_model_card(folder: Path, runs: Path | None = None, previous: Path | None = None,
                     stages: tuple[str, ...] = STAGES) -> None:
    """README.md of the model folder: data, architecture, training, hardware, time and evaluation table.

    ``previous``: the release this one was fine-tuned from; its training record (with its own previous ones) is
    kept in this one's. ``stages``: the runs that trained this release (a continued release lists only its own).
    """
    folder = Path(folder)
    meta_path = folder / "training.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    if previous is not None:
        old = json.loads((Path(previous) / "training.json").read_text())
        meta["previous"] = {"version": _version(Path(previous)), "weights_hash": weights_hash(previous), **old}
    if runs is not None:
        meta["stages"] = {name: _log_summary(runs / name) for name in stages if (runs / name / "log.jsonl").exists()}
        commands = [json.loads(line) for line in (runs / "commands.jsonl").read_text().splitlines()] \
            if (runs / "commands.jsonl").exists() else []
        # the grounding stages have their own folder and card
        meta["commands"] = [c for c in commands if not {"gligen", "export-gligen", "eval-gligen"} & set(c["argv"])]
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
    columns = ("strict", "count", "size", "colour", "shape", "position", "background", "lenient")
    rows = ["| prompts | n | " + " | ".join(columns) + " |", "|---|---|" + "---|" * len(columns)]
    for name, r in evaluation["rows"].items():
        cells = ["–" if r.get(c) is None else f"{r[c]:.1%}" for c in columns]
        cells[0] += f" ± {r['strict_se']:.1%}"
        rows.append(f"| {name} | {r['n']} | " + " | ".join(cells) + " |")
    for name, groups in evaluation.get("open", {}).items():  # free phrasing, by what the prompt leaves open
        rows += ["", f"{name}, by what the prompt leaves open (a prompt counts under each):", "",
                 "| left open | n | strict | too many objects | too few |", "|---|---|---|---|---|"]
        rows += [f"| {key} | {g['n']} | {g['strict']:.1%} | {g['too_many']:.1%} | {g['too_few']:.1%} |"
                 for key, g in groups.items()]
    return "\n".join(rows)


def _ci_line(evaluation: dict) -> str:
    ci = evaluation.get("ci")
    if not ci:
        return ""
    parts = [f"{name}: {sum(v)}/{len(v)}" for name, v in ci.items()]
    return ("CI-sized evaluation (`tests/unit/test_bundled_model.py`, through `Session`, seeds 0…7, strict): "
            + "; ".join(parts) + ". The test regenerates these images and allows each row to differ by 2 images"
            " (float differences between CPUs), so a regression in sampling or loading shows up.")


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
    "- Training reads a cached pool of encoded training scenes with their frozen text states (one caption each,",
    "  canonical or free).",
    "- Version 2 fine-tunes version 1 instead of starting over: the tokenizer appends the free-phrasing words (the",
    "  grammar's token ids do not move; each new word starts as the word it spells), the text tower continues from",
    "  version 1 with a loss that keeps its states for canonical captions (mean squared distance to version 1's),",
    "  and the UNet continues from version 1's weights on captions of which half are free. The VAE is version 1's.",
    "- Version 3 continues version 2's UNet on a fresh pool of 16,384 training scenes (another seed, so other",
    "  scenes and other free phrasings of them) at half the learning rate; its text tower and VAE are version 2's.",
    "- Version 4 continues version 3's UNet on a fresh pool (seed 2) whose free captions leave the position out",
    "  half the time and the colour or the shape 15% each (the evaluation's free grammar: 25%, 8%, 8%; the other",
    "  rates as there). On validation prompts version 3 failed most where a free prompt left the position open (one",
    "  object 81% strict, two objects 57%, by the evaluation's breakdown below). Text tower and VAE are version 3's.",
    "",
]


def _card_text(folder: Path, meta: dict, evaluation: dict | None) -> str:
    cfg = {n: json.loads((folder / n / "config.json").read_text()) for n in ("unet", "vae", "text_encoder")}
    lines = [
        "# tiny-shapes: a toy-size Stable Diffusion for difftech_lab",
        "",
        "The Stable Diffusion architecture at toy size, trained from scratch on difftech_lab's procedural captioned",
        "shapes. It runs offline on the CPU and every output can be scored against its prompt",
        "(`difftech_lab.metrics`). It follows prompts written the grammar's way or freely (`red circle, left`,",
        "`A big Yellow Star at the Top`, `a blue square on a grey background`): an attribute a prompt leaves out",
        "means any, and a prompt that names one object gets one object.",
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
        "- Canonical captions: `a <size> <colour> <shape> on the <position> [and a … ] on a <background> background`.",
        f"- Free phrasing ({dataset.FREE_PHRASING:.0%} of training captions, `scenes.free_caption`; the rates here"
        " are the evaluation's free prompts' and versions 2–3's training, version 4's are below): size left out"
        f" {scenes._DROP['size']:.0%} of the time, position {scenes._DROP['position']:.0%}, background"
        f" {scenes._DROP['background']:.0%}, colour or shape {scenes._DROP['colour']:.0%} each (never both; a"
        f" left-out shape reads `shape`); spellings {', '.join('/'.join(v) for v in scenes.SPELLINGS.values())},"
        " a/an or no article, prepositions varied or a comma, objects joined by `and` or commas, case varied.",
        "  `scenes.parse_caption` reads both styles back into the attributes a prompt names.",
        f"- Held out: every scene (its objects as a set, and its background) whose MD5 is 0 modulo"
        f" {dataset.HELD_OUT_MODULUS} (`dataset.is_held_out`), in every phrasing and object order; no training stage"
        " (text, VAE, UNet) ever sees one. Evaluation uses only those scenes.",
        "",
        "## Architecture (diffusers / transformers classes)",
        "- `CLIPTokenizer`: byte-level BPE with byte fallbacks; every grammar word is one token; context 77.",
        f"- `CLIPTextModel`: {_params(folder, 'text_encoder')} parameters, hidden {cfg['text_encoder']['hidden_size']},"
        f" {cfg['text_encoder']['num_hidden_layers']} layers; pretrained on captions alone (probes read each object's"
        " attributes, or that the caption leaves them open, from its phrase-end token and the whole scene from the"
        " end token), then frozen.",
        f"- `AutoencoderKL`: {_params(folder, 'vae')} parameters, blocks {cfg['vae']['block_out_channels']},"
        f" 4 latent channels, factor 4 (64×64×3 → 16×16×4), scaling factor {cfg['vae']['scaling_factor']}"
        " (unit-std latents); trained with edge-weighted squared error (×5 next to edges) + image-gradient L1"
        " + 1e-6 KL, then decoder-only.",
        f"- `UNet2DConditionModel`: {_params(folder, 'unet')} parameters, blocks {cfg['unet']['block_out_channels']},"
        f" down {cfg['unet']['down_block_types']}, self- and cross-attention at 8×8, 4×4 and 2×2 (plus mid-block);"
        " v-prediction, min-SNR-5 weighting, 10% caption dropout, EMA 0.999 (exported).",
        "- Scheduler: `EulerDiscreteScheduler`, scaled-linear betas, trailing timestep spacing.",
        f"- `difftech.json`: the guidance scale the evaluation uses ({_meta(folder).get('cfg')}); `Session.generate`"
        " takes it when `cfg` is not given. The longest training caption in tokens"
        f" ({_meta(folder).get('caption_tokens')}, BOS and EOS included): a prompt part longer than that warns.",
        f"- Identity: version {_version(folder)}, weights hash `{weights_hash(folder)}` (recorded in every Recipe; "
        "`session.run` warns when a recipe was made with other weights).",
        "",
        "## Training",
    ]
    lines += _training_lines(meta)
    old = meta
    while "previous" in old:  # every earlier release this one continues, newest first
        old = old["previous"]
        lines += [f"### Version {old['version']} (weights `{old['weights_hash']}`), which this one continues", ""]
        lines += _training_lines(old)
    lines += _DESIGN_NOTES
    if evaluation:
        lines += ["## Evaluation", "",
                  f"Held-out prompts, seeds {evaluation['seeds']}, {evaluation['steps']} steps of"
                  f" `EulerDiscreteScheduler`, CFG {evaluation['guidance_scale']}, scored by"
                  " `difftech_lab.metrics` (`python -m difftech_lab.training eval`):", "",
                  _evaluation_table(evaluation), "",
                  "- **strict**: as many objects as the prompt names and no more, every attribute the prompt names"
                  " right for every object (size included), the background right when named; ± is the standard"
                  " error. **count**: the number of objects right. Attribute columns: the share of objects right"
                  " among those whose prompt names that attribute. **lenient**: each prompt object's colour, shape"
                  " and position right somewhere in the image (extras and size ignored; version 1's 'image"
                  " all-right').",
                  "- Free-phrasing rows are the same held-out scenes written by the free grammar from a fixed"
                  " stream; an attribute the prompt leaves out is not scored.", "",
                  _ci_line(evaluation), "",
                  f"Generation time (diffusers StableDiffusionPipeline on the CPU, one 64×64 image, 20 steps with CFG,"
                  f" median of the runs, torch threads as run): {evaluation.get('timing', {})}.", "",
                  *[f"- {line}" for line in evaluation.get("notes", [])], "",
                  "Reference generation (checked by the tests): " + json.dumps(evaluation["reference"]), "",
                  "![evaluation grid](evaluation_grid.png)", "",
                  "Grid: the first 16 prompts of each evaluation row (one object; one object, free; two objects; two"
                  " objects, free; three objects), each row of generated images above the scenes' true renderings.",
                  ""]
    return "\n".join(lines)


def _training_lines(meta: dict) -> list[str]:
    lines = []
    for name, st in meta.get("stages", {}).items():
        last = {k: round(v, 4) if isinstance(v, float) else v for k, v in st["last"].items() if k != "time"}
        lines.append(f"- `{name}`: {st['steps']} steps, {st['minutes']} min wall; last log {last}")
    lines += ["", "Commands, in order (`python -m difftech_lab.training …`):", "", "```"]
    lines += [" ".join(c["argv"]) + (f"  # {c['note']}" if c.get("note") else "") for c in meta.get("commands", [])]
    lines += ["```", "", f"Hardware: {meta.get('hardware', '?')}; the machine was shared with other jobs, so wall"
              " times are upper bounds.", ""]
    return lines


def _meta(folder: Path) -> dict:
    meta = Path(folder) / "difftech.json"
    return json.loads(meta.read_text()) if meta.is_file() else {}


def _version(folder: Path) -> str:
    return str(_meta(folder).get("version", ""))
