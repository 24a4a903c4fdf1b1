"""Stage ``text``: pretrain the CLIP text tower so its token states spell out the scene, then freeze it.

Stable Diffusion conditions on a frozen pretrained text encoder. Here the encoder is pretrained on the caption
grammar alone (no images, so it costs CPU-seconds): linear probes on the last hidden states must read each
object's colour, shape, size and position from the token that ends its phrase, and the whole scene from the
end-of-text token and the padding after it. A causal encoder trained this way binds each object's words into
one token, which the UNet's cross-attention can then copy into the right place from its first step.
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F
from transformers import CLIPTextModel, CLIPTokenizer

from difftech_lab import scenes
from difftech_lab.training import components, dataset
from difftech_lab.training.checkpoints import RunDir

ATTRIBUTES = (("colour", list(scenes.COLOURS)), ("size", list(scenes.SIZES)), ("shape", list(scenes.SHAPES)),
              ("position", list(scenes.POSITIONS)))
MAX_OBJECTS = 3


class Probes(torch.nn.Module):
    """Linear read-outs: one per attribute for phrase-end tokens, and per slot plus background for the end token."""

    def __init__(self, width: int):
        super().__init__()
        self.object = torch.nn.ModuleDict({k: torch.nn.Linear(width, len(v)) for k, v in ATTRIBUTES})
        self.slots = torch.nn.ModuleDict({f"{k}{s}": torch.nn.Linear(width, len(v) + 1)
                                          for k, v in ATTRIBUTES for s in range(MAX_OBJECTS)})
        self.background = torch.nn.Linear(width, len(scenes.BACKGROUNDS))


def targets(specs: list[scenes.SceneSpec]) -> tuple[list[tuple[int, int, dict]], dict[str, torch.Tensor]]:
    """Phrase-end token positions with their object's labels, and the end-token labels of every scene."""
    ends, scene = [], {f"{k}{s}": [] for k, _ in ATTRIBUTES for s in range(MAX_OBJECTS)}
    scene["background"] = []
    for b, spec in enumerate(specs):
        n_words = 0
        for obj in spec.objects:
            n_words += len(scenes.object_phrase(obj).split())
            ends.append((b, n_words, {k: v.index(getattr(obj, k)) for k, v in ATTRIBUTES}))  # token = word + 1
            n_words += 1  # "and"
        for k, values in ATTRIBUTES:
            for s in range(MAX_OBJECTS):
                scene[f"{k}{s}"].append(values.index(getattr(spec.objects[s], k)) if s < len(spec.objects) else len(values))
        scene["background"].append(list(scenes.BACKGROUNDS).index(spec.background))
    return ends, {k: torch.tensor(v) for k, v in scene.items()}


def probe_loss(hidden: torch.Tensor, eos_mask: torch.Tensor, specs, probes: Probes) -> tuple[torch.Tensor, float]:
    """Cross-entropy of every probe, and the fraction of end-token slot attributes read correctly."""
    ends, scene = targets(specs)
    loss = 0.0
    for k, _ in ATTRIBUTES:
        h = torch.stack([hidden[b, t] for b, t, _ in ends])
        loss = loss + F.cross_entropy(probes.object[k](h), torch.tensor([lab[k] for _, _, lab in ends]))
    # End-of-text and every padding position after it carry the whole scene.
    rows = eos_mask.nonzero()[:, 0]
    h = hidden[eos_mask]
    correct = []
    for name, labels in scene.items():
        head = probes.background if name == "background" else probes.slots[name]
        logits = head(h)
        loss = loss + F.cross_entropy(logits, labels[rows])
        correct.append((logits.argmax(1) == labels[rows]).float().mean().item())
    return loss, float(np.mean(correct))


def encode(tokenizer: CLIPTokenizer, texts: list[str]) -> torch.Tensor:
    """Token ids padded to the full context, as the Stable Diffusion pipeline pads them."""
    return tokenizer(texts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                     return_tensors="pt").input_ids


def train(args) -> None:
    """Pretrain (or resume) the text tower with the probes for ``args.steps`` steps."""
    torch.manual_seed(args.seed)
    run = RunDir(args.run_dir)
    tokenizer = components.write_tokenizer(run.path / "tokenizer")
    model = components.build_text_encoder(tokenizer).to(args.device)
    probes = Probes(model.config.hidden_size).to(args.device)
    opt = torch.optim.AdamW([*model.parameters(), *probes.parameters()], lr=args.lr, weight_decay=0.01)
    step = 0
    if (state := run.load()) is not None:
        model.load_state_dict(state["model"])
        probes.load_state_dict(state["probes"])
        opt.load_state_dict(state["optimizer"])
        for group in opt.param_groups:  # a resumed run may change the learning rate
            group["lr"] = args.lr
        step = int(state["step"])
    rng = np.random.default_rng(args.seed)
    deadline = time.time() + 60 * args.minutes
    while step < args.steps and time.time() < deadline:
        specs = []
        while len(specs) < args.batch:
            spec = dataset.random_spec(rng)
            if not dataset.is_held_out(scenes.caption(spec)):
                specs.append(spec)
        ids = encode(tokenizer, [scenes.caption(s) for s in specs]).to(args.device)
        first_eos = (ids == tokenizer.eos_token_id).int().argmax(1, keepdim=True)
        eos_mask = torch.arange(ids.shape[1], device=ids.device)[None] >= first_eos
        hidden = model(ids).last_hidden_state
        loss, accuracy = probe_loss(hidden, eos_mask, specs, probes)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        if step % args.log_every == 0:
            run.log(step=step, loss=loss.item(), scene_accuracy=accuracy)
    run.save({"model": model.state_dict(), "probes": probes.state_dict(), "optimizer": opt.state_dict(),
              "step": torch.tensor(step)})
    model.save_pretrained(run.path / "model")
    run.log(step=step, event="saved")


def load(run_dir) -> tuple[CLIPTokenizer, CLIPTextModel]:
    return CLIPTokenizer.from_pretrained(f"{run_dir}/tokenizer"), CLIPTextModel.from_pretrained(f"{run_dir}/model")
