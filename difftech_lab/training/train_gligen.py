"""Stage ``gligen``: GLIGEN grounding (Li et al. 2023) for a released model, trained on free layouts.

The released UNet is frozen; only the new weights learn: a gated self-attention layer in every transformer
block (whose gates start shut, so training starts from the base model exactly) and the position net, which
reads each object's phrase vector with the Fourier features of its box. The data are free layouts (one to four
objects of any size at any place, ``dataset.layout_sample``), none of them a scene of the layout evaluation
sets. Grounding and caption are dropped for classifier-free guidance: both together (the unconditional branch
at sampling time has neither), and each alone. The loss is the unweighted v-prediction MSE with half the batch
at the noisier timesteps, where layout is decided (``layout_timesteps``). Stage ``export-gligen`` writes the grounding folder that ships
beside the base model (the EMA of the new weights, in half precision).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTokenizer

from difftech_lab.models.grounding import (GROUNDING_FILE, WEIGHTS_FILE, gligen_inputs, grounded_unet,
                                           grounding_state, is_grounding_key, phrase_embeddings)
from difftech_lab.models.identity import weights_hash
from difftech_lab.training import dataset, train_text
from difftech_lab.training.checkpoints import RunDir, ema_update
from difftech_lab.training.train_unet import EMA_DECAY, noise_scheduler
from difftech_lab.training.train_vae import to_tensor

MAX_LAYOUT = max(dataset.LAYOUT_COUNTS)
# the caption alone is dropped often: a caption that already says what is drawn leaves the grounding tokens
# little to teach, and they are learned far more slowly than with the phrases as the only source of "what"
DROP_BOTH, DROP_CAPTION, DROP_GROUNDING = 0.1, 0.4, 0.05
GATE_LR_FACTOR = 20.0  # the gates are two scalars per block; at the base rate they would take most of a run to open
WARMUP_STEPS = 100


def evaluation_keys() -> set[str]:
    """The scenes of the layout evaluation sets (test and validation draws), sizes ignored: training skips them."""
    from difftech_lab import layouts

    keys = set()
    for make in layouts.SETS.values():
        for seed in (0, 1):
            for layout in make(200, seed=seed):
                keys.add(_key(layout.scene))
    return keys


def _key(scene) -> str:
    return " | ".join(sorted(f"{o.colour} {o.shape} {o.position}" for o in scene.objects)) + f" / {scene.background}"


@torch.no_grad()
def build_pool(vae, tokenizer, text_encoder, size: int, seed: int, chunk: int = 256) -> dict[str, torch.Tensor]:
    """``size`` free-layout scenes: unscaled VAE latents, caption states (fp16), phrase vectors, boxes, counts."""
    skip = evaluation_keys()
    latents, context, phrases, boxes, counts, captions = [], [], [], [], [], []
    index = seed * 1_000_003
    while len(captions) < size:
        samples = []
        while len(samples) < min(chunk, size - len(captions)):
            s = dataset.layout_sample(index)
            index += 1
            if _key(s.spec) not in skip:
                samples.append(s)
        images = to_tensor(np.stack([s.image for s in samples])).to(vae.device)
        latents.append(vae.encode(images).latent_dist.mean.cpu())
        caps = [s.caption for s in samples]
        context.append(text_encoder(train_text.encode(tokenizer, caps).to(vae.device)).last_hidden_state.half().cpu())
        vectors = phrase_embeddings(tokenizer, text_encoder, [p for s in samples for p in s.phrases])
        table = torch.zeros(len(samples), MAX_LAYOUT, vectors.shape[-1])
        box = torch.zeros(len(samples), MAX_LAYOUT, 4)
        k = 0
        for i, s in enumerate(samples):
            n = len(s.phrases)
            table[i, :n], box[i, :n] = vectors[k:k + n], torch.from_numpy(s.boxes)
            k += n
        phrases.append(table.half())
        boxes.append(box)
        counts.append(torch.tensor([len(s.phrases) for s in samples]))
        captions += caps
    return {"latents": torch.cat(latents), "context": torch.cat(context), "phrases": torch.cat(phrases),
            "boxes": torch.cat(boxes), "counts": torch.cat(counts)}, captions


def layout_timesteps(total: int, n: int, g: torch.Generator) -> torch.Tensor:
    """Training timesteps for grounding: half uniform, half from the noisier half of the process.

    Where objects go is decided at high noise, which min-SNR weighting (the base UNet's) all but ignores: its
    weight min(SNR, γ)/(SNR + 1) goes to 0 with the SNR. The grounding loss is the plain v-prediction MSE, where a
    noisy step weighs as much as any, and half the batch comes from those steps.
    """
    uniform = torch.randint(0, total, (n,), generator=g)
    noisy = torch.randint(total // 2, total, (n,), generator=g)
    return torch.where(torch.arange(n) < n // 2, noisy, uniform)


def train(args) -> None:
    """Train (or resume) the grounding for ``args.steps`` steps or ``args.minutes`` minutes."""
    torch.manual_seed(args.seed)
    run = RunDir(args.run_dir)
    device = torch.device(args.device)
    opts = dict(a.split("=", 1) for a in args.rest)  # base=… pool=16384 [init=<grounding folder to continue>]
    base = Path(opts.get("base", "difftech_lab/bundled/tiny-shapes"))
    vae = AutoencoderKL.from_pretrained(base / "vae").to(device).eval()
    tokenizer, text_encoder = CLIPTokenizer.from_pretrained(base / "tokenizer"), \
        CLIPTextModel.from_pretrained(base / "text_encoder")
    text_encoder.to(device).eval()
    pool_file = run.path / "pool.pt"
    if pool_file.exists():
        pool = torch.load(pool_file, weights_only=True)
    else:
        pool, captions = build_pool(vae, tokenizer, text_encoder, int(opts.get("pool", 16384)), args.seed)
        torch.save(pool, pool_file)
        (run.path / "pool.json").write_text(json.dumps(captions))
    scaling = float(vae.config.scaling_factor)
    unet = grounded_unet(UNet2DConditionModel.from_pretrained(base / "unet")).to(device)
    record = json.loads((run.path / "base.json").read_text()) if (run.path / "base.json").exists() else {}
    record.update(base=str(base), identity=weights_hash(base))
    init = None
    if "init" in opts and run.load() is None:  # a new run continuing a grounding folder's weights
        init = Path(opts["init"])
        meta = json.loads((init / GROUNDING_FILE).read_text())
        # its base may be an earlier release of this one (a fine-tuned UNet): training then adapts it
        record["init"] = {"folder": str(init), "run": meta["run"], "steps": int(meta["steps"]),
                          "base_identity": meta["base_identity"]}
    (run.path / "base.json").write_text(json.dumps(record))
    for name, p in unet.named_parameters():
        p.requires_grad_(is_grounding_key(name))
    trainable = {n: p for n, p in unet.named_parameters() if p.requires_grad}
    gates = [p for n, p in trainable.items() if n.endswith(("alpha_attn", "alpha_dense"))]
    rest = [p for n, p in trainable.items() if not n.endswith(("alpha_attn", "alpha_dense"))]
    opt = torch.optim.AdamW([{"params": rest, "scale": 1.0}, {"params": gates, "scale": GATE_LR_FACTOR,
                                                                "weight_decay": 0.0}], lr=args.lr, weight_decay=0.01)
    ema = {k: v.detach().clone() for k, v in grounding_state(unet).items()}
    step = 0
    if init is not None:
        from safetensors.torch import load_file

        weights = {k: v.float() for k, v in load_file(init / WEIGHTS_FILE).items()}
        unet.load_state_dict(weights, strict=False)
        ema = {k: v.clone() for k, v in weights.items()}
        step = record["init"]["steps"]
    if (state := run.load()) is not None:
        unet.load_state_dict(state["model"], strict=False)
        ema = state["ema"]
        opt.load_state_dict(state["optimizer"])
        step = int(state["step"])
    process = noise_scheduler()
    with torch.no_grad():
        empty = text_encoder(train_text.encode(tokenizer, [""]).to(device)).last_hidden_state
    g = torch.Generator().manual_seed(args.seed * 31 + step)
    size = len(pool["counts"])
    deadline, losses = time.time() + 60 * args.minutes, []
    while step < args.steps and time.time() < deadline:
        idx = torch.randint(size, (args.batch,), generator=g)
        r = torch.rand(args.batch, generator=g)
        drop_caption = (r < DROP_BOTH + DROP_CAPTION).to(device)
        keep = ~((r < DROP_BOTH) | ((r >= DROP_BOTH + DROP_CAPTION) & (r < DROP_BOTH + DROP_CAPTION + DROP_GROUNDING)))
        noise = torch.randn((args.batch, *pool["latents"].shape[1:]), generator=g).to(device)
        t = layout_timesteps(process.config.num_train_timesteps, args.batch, g).to(device)
        x0 = pool["latents"][idx].to(device) * scaling
        ctx = torch.where(drop_caption[:, None, None], empty, pool["context"][idx].to(device).float())
        grounding = gligen_inputs(pool["phrases"][idx].to(device).float(), pool["boxes"][idx].to(device),
                                  pool["counts"][idx].to(device), keep.to(device))
        xt = process.add_noise(x0, noise, t)
        pred = unet(xt, t, ctx, cross_attention_kwargs={"gligen": grounding}).sample
        loss = (pred - process.get_velocity(x0, noise, t)).pow(2).mean()  # unweighted: see layout_timesteps
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(trainable.values()), 1.0)
        for group in opt.param_groups:
            group["lr"] = args.lr * group["scale"] * min(1.0, (step + 1) / WARMUP_STEPS)
        opt.step()
        step += 1
        ema_update(ema, unet, min(EMA_DECAY, (1 + step) / (10 + step)))
        losses.append(loss.item())
        if step % args.log_every == 0:
            gate = float(torch.stack([p.detach().tanh().abs() for p in gates]).mean())
            run.log(step=step, loss=sum(losses) / len(losses), gate=gate, lr=args.lr * min(1.0, step / WARMUP_STEPS))
            losses = []
        if step % args.save_every == 0:
            _save(run, unet, ema, opt, step)
    _save(run, unet, ema, opt, step)
    run.log(step=step, event="saved")


def _save(run: RunDir, unet, ema, opt, step: int) -> None:
    run.save({"model": grounding_state(unet), "ema": ema, "optimizer": opt.state_dict(), "step": torch.tensor(step)})


def export(args) -> None:
    """Write the grounding folder: ``grounding.json`` (base, its identity, defaults) and the EMA weights in fp16."""
    from safetensors.torch import save_file

    run = Path(args.run_dir or f"{args.runs}/gligen")
    out = Path(args.out or "difftech_lab/bundled/tiny-shapes-gligen")
    opts = dict(a.split("=", 1) for a in args.rest)
    base = json.loads((run / "base.json").read_text())
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    save_file({k: v.half().contiguous() for k, v in state["ema"].items()}, out / WEIGHTS_FILE)
    rel = os.path.relpath(Path(base["base"]).resolve(), out.resolve())  # the package's copy: "../tiny-shapes"
    defaults = {"scheduled_sampling": float(opts.get("scheduled_sampling", 0.3))}
    (out / GROUNDING_FILE).write_text(json.dumps({"base": Path(rel).as_posix(), "base_identity": base["identity"],
                                                  "steps": int(state["step"]), "run": run.as_posix(),
                                                  "defaults": defaults}, indent=2) + "\n")
    write_card(out, Path(args.runs))
    print(f"wrote {out} ({sum(f.stat().st_size for f in out.rglob('*') if f.is_file()) / 1e6:.1f} MB)")


VALIDATION_TAUS = (0.3, 0.5, 0.7, 1.0)
# layout sets whose whole prompt is past the captions the bundled model was trained on: validated with the prompt
# in two parts, as notebook 02 writes it (whole, the background past the captions is lost at every τ)
IN_PARTS = ("four corners",)


def validate(args) -> None:
    """Stage ``eval-gligen``: strict adherence of a grounding folder on the validation draws of the layout sets
    (``seed=1``; the notebooks measure on ``seed=0``), per scheduled-sampling τ, with the plain prompt beside.

    The τ with the highest mean over the four sets, each prompt as notebook 02 writes it (``IN_PARTS`` in two
    parts), becomes the folder's default. Writes ``validation.json`` and the card.
    """
    from difftech_lab import Session, layouts
    from difftech_lab.metrics import score

    out = Path(args.out or "difftech_lab/bundled/tiny-shapes-gligen")
    opts = dict(a.split("=", 1) for a in args.rest)
    taus = [float(t) for t in opts.get("taus", ",".join(map(str, VALIDATION_TAUS))).split(",")]
    session = Session(out, progress=False)
    run = dict(steps=12, sampler="euler")
    table: dict[str, dict[str, float]] = {}
    t0 = time.time()
    for name, make in layouts.SETS.items():
        cases = make(args.images, seed=1)
        prompts = [c.prompt_in_parts() if name in IN_PARTS else c.prompt for c in cases]
        row = {"plain prompt": np.mean([score(session.generate(p, seed=i, **run).images[0], c.scene).correct
                                        for i, (c, p) in enumerate(zip(cases, prompts))])}
        for tau in taus:
            row[f"τ {tau:g}"] = np.mean([score(session.gligen(p, c.phrases(), seed=i, scheduled_sampling=tau,
                                                              **run).images[0], c.scene).correct
                                         for i, (c, p) in enumerate(zip(cases, prompts))])
        table[name] = {k: round(float(v), 4) for k, v in row.items()}
        print(name, table[name], flush=True)
    means = {f"τ {tau:g}": float(np.mean([table[s][f"τ {tau:g}"] for s in table])) for tau in taus}
    chosen = max(taus, key=lambda tau: (means[f"τ {tau:g}"], -tau))
    meta = json.loads((out / GROUNDING_FILE).read_text())
    meta["defaults"] = {**meta.get("defaults", {}), "scheduled_sampling": chosen}
    (out / GROUNDING_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    (out / "validation.json").write_text(json.dumps({"scenes_per_set": args.images, "seed": 1, "settings": run,
                                                     "in_parts": list(IN_PARTS), "strict": table, "mean": means,
                                                     "chosen_tau": chosen, "seconds": round(time.time() - t0)},
                                                    indent=2) + "\n")
    write_card(out, Path(args.runs))
    print(f"chosen τ {chosen:g}; wrote {out / 'validation.json'}")


def _run_chain(run: Path) -> list[Path]:
    """A run and the runs it continued (``init=`` a grounding folder exported from an earlier run), oldest last."""
    chain = [run.resolve()]
    while (record := chain[-1] / "base.json").exists() and "init" in (data := json.loads(record.read_text())):
        chain.append(Path(data["init"]["run"]).resolve())
    return chain


def write_card(out: Path, runs: Path) -> None:
    """``README.md`` of a grounding folder: what it is, how it was trained (commands, wall time), validation."""
    meta = json.loads((out / GROUNDING_FILE).read_text())
    commands = [json.loads(line) for line in (runs / "commands.jsonl").read_text().splitlines()] \
        if (runs / "commands.jsonl").exists() else []
    chain = _run_chain(Path(meta["run"]))

    def this_run(argv: list[str]) -> bool:  # a training sitting of this folder's runs, its export or evaluation
        if "gligen" not in argv:
            return "export-gligen" in argv or "eval-gligen" in argv
        given = argv[argv.index("--run-dir") + 1] if "--run-dir" in argv else f"{runs}/gligen"
        return Path(given).resolve() in chain

    mine = [" ".join(c["argv"]) for c in commands if this_run(c["argv"])]
    bases = []  # the base weights each run of the chain trained with, and those its initial weights had
    for run in chain:
        if (run / "base.json").exists():
            data = json.loads((run / "base.json").read_text())
            bases += [data.get("identity"), data.get("init", {}).get("base_identity")]
    earlier = list(dict.fromkeys(b for b in reversed(bases) if b and b != meta["base_identity"]))
    # each sitting ends in a save, which logs the sitting's wall time; sittings past the exported step made
    # weights this folder does not hold
    seconds = sum(r["time"] for run in chain for r in RunDir(run).records()
                  if r.get("event") == "saved" and (run != chain[0] or r["step"] <= meta["steps"]))
    validation = json.loads((out / "validation.json").read_text()) if (out / "validation.json").exists() else None
    lines = [
        "# tiny-shapes-gligen: GLIGEN grounding for the bundled model",
        "",
        "Gated self-attention layers in every transformer block and a position net (Li et al. 2023, diffusers'",
        "`attention_type=\"gated\"` layout), trained on free layouts with the bundled model's UNet, text tower and",
        "VAE frozen. This folder holds the new weights only (half precision); `Session(\"tiny-shapes-gligen\")`",
        f"loads them onto the base model at `{meta['base']}` (weights `{meta['base_identity']}`).",
        "",
        "- Data: one to four objects of any size at any place, apart from each other, on the three backgrounds;",
        "  the caption names the objects (size in half, the cell of each centre in half), each object's phrase",
        "  (\"a red circle\", sizes in half) goes with its tight box. Scenes of the layout evaluation sets",
        "  (`difftech_lab.layouts`, test and validation draws) are never trained on.",
        f"- Dropped for classifier-free guidance: caption and grounding together {DROP_BOTH:.0%}, the caption alone "
        f"{DROP_CAPTION:.0%}, the grounding alone {DROP_GROUNDING:.0%}.",
        f"- Optimiser steps: {meta['steps']} (batch 32); wall time {seconds / 60:.0f} min on 2 CPU cores "
        "(some sittings shared them with another training, so an upper bound).",
        *([f"- Trained first with earlier releases of the base (weights {', '.join(f'`{b}`' for b in earlier)}), "
           f"then continued on `{meta['base_identity']}`, the release it extends."] if earlier else []),
        f"- Scheduled sampling τ (the fraction of steps grounded) by default: "
        f"{meta.get('defaults', {}).get('scheduled_sampling', 0.3):g}, chosen on validation scenes (below).",
        "",
        "## Commands",
        "",
        "```",
        *mine,
        "```",
    ]
    if validation:
        taus = [k for k in next(iter(validation["strict"].values()))]
        lines += ["", f"## Validation (strict, {validation['scenes_per_set']} scenes per set, seed 1 draws, "
                      "12 Euler steps)", "", "| set | " + " | ".join(taus) + " |",
                  "|---|" + "---|" * len(taus)]
        in_parts = validation.get("in_parts", [])
        lines += [f"| {name}{', in two parts' if name in in_parts else ''} | "
                  + " | ".join(f"{row[t]:.2f}" for t in taus) + " |" for name, row in validation["strict"].items()]
        lines += ["", f"Rule: the τ with the highest mean over the four sets, each prompt as notebook 02 writes it "
                      f"(chosen: {validation['chosen_tau']:g}). Test numbers: `notebooks/02_regional_prompting`."]
        if in_parts:
            lines += ["", f"{', '.join(in_parts)}: the prompt in two parts, as notebook 02 writes a prompt past "
                          "the model's captions. The rule first took every prompt whole; it was "
                          "revised after the prompt in parts had been measured, so the choice is not blind to it."]
    (out / "README.md").write_text("\n".join(lines) + "\n")
