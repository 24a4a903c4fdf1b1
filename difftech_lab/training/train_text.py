"""Stage ``text``: pretrain the CLIP text tower so its token states spell out the scene, then freeze it.

Stable Diffusion conditions on a frozen pretrained text encoder. Here the encoder is pretrained on the caption
grammar alone (no images, so it costs CPU-seconds): linear probes on the last hidden states must read each
object's colour, shape, size and position from the token that ends its phrase, and the whole scene from the
end-of-text token and the padding after it. A causal encoder trained this way binds each object's words into
one token, which the UNet's cross-attention can then copy into the right place from its first step.
"""

from __future__ import annotations

import time
from pathlib import Path

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
    """Linear read-outs: one per attribute for phrase-end tokens, and per slot plus background for the end token.

    Every head has a class for "left open" (a caption that does not name the attribute); slot heads one more for
    "no such object".
    """

    def __init__(self, width: int):
        super().__init__()
        self.object = torch.nn.ModuleDict({k: torch.nn.Linear(width, len(v) + 1) for k, v in ATTRIBUTES})
        self.slots = torch.nn.ModuleDict({f"{k}{s}": torch.nn.Linear(width, len(v) + 2)
                                          for k, v in ATTRIBUTES for s in range(MAX_OBJECTS)})
        self.background = torch.nn.Linear(width, len(scenes.BACKGROUNDS) + 1)


def _label(values: list[str], value: str | None) -> int:
    return len(values) if value is None else values.index(value)


def targets(named: list[scenes.SceneSpec], ends: list[list[int]]) -> tuple[list[tuple[int, int, dict]], dict[str, torch.Tensor]]:
    """Phrase-end token positions with their object's labels, and the end-token labels of every scene."""
    out, scene = [], {f"{k}{s}": [] for k, _ in ATTRIBUTES for s in range(MAX_OBJECTS)}
    scene["background"] = []
    for b, (spec, positions) in enumerate(zip(named, ends)):
        for obj, t in zip(spec.objects, positions):
            out.append((b, t, {k: _label(v, getattr(obj, k)) for k, v in ATTRIBUTES}))
        for k, values in ATTRIBUTES:
            for s in range(MAX_OBJECTS):
                scene[f"{k}{s}"].append(_label(values, getattr(spec.objects[s], k)) if s < len(spec.objects)
                                        else len(values) + 1)
        scene["background"].append(_label(list(scenes.BACKGROUNDS), spec.background))
    return out, {k: torch.tensor(v) for k, v in scene.items()}


def probe_loss(hidden: torch.Tensor, eos_mask: torch.Tensor, named, ends, probes: Probes) -> tuple[torch.Tensor, float]:
    """Cross-entropy of every probe, and the fraction of end-token slot attributes read correctly."""
    phrase_ends, scene = targets(named, ends)
    loss = 0.0
    for k, _ in ATTRIBUTES:
        h = torch.stack([hidden[b, t] for b, t, _ in phrase_ends])
        loss = loss + F.cross_entropy(probes.object[k](h), torch.tensor([lab[k] for _, _, lab in phrase_ends]))
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


def longest_caption(tokenizer: CLIPTokenizer, count: int = 40_000) -> int:
    """The longest of ``count`` training captions in tokens, BOS and EOS included: the text tower's position
    embeddings past it never learn, which ``difftech.json`` records as ``caption_tokens`` for the prompt encoder."""
    from difftech_lab.training import dataset

    return max(len(ids) for ids in tokenizer([dataset.sample(i).caption for i in range(count)]).input_ids)


def _from_previous(model: CLIPTextModel, tokenizer: CLIPTokenizer, folder: str) -> CLIPTextModel:
    """A previous release's text tower with its embedding table grown to this tokenizer; each new word starts as
    the word it spells (grey as gray, large as big, an as a; "shape" as the mean of the shapes)."""
    old = CLIPTextModel.from_pretrained(f"{folder}/text_encoder")
    old_vocab = CLIPTokenizer.from_pretrained(f"{folder}/tokenizer").get_vocab()
    vocab = tokenizer.get_vocab()
    if any(vocab.get(t) != i for t, i in old_vocab.items()):
        raise ValueError(f"the tokenizer moved token ids of {folder}; new words must be appended")
    old.resize_token_embeddings(len(tokenizer))
    table = old.get_input_embeddings().weight.data
    canonical = {w: c for c, spellings in scenes.SPELLINGS.items() for w in spellings} | {"an": "a"}
    for word in components.free_phrasing_words():
        if word + "</w>" in old_vocab:  # the release already knows it
            continue
        if word == scenes.GENERIC_NOUN:
            table[vocab[word + "</w>"]] = table[[old_vocab[s + "</w>"] for s in scenes.SHAPES]].mean(0)
        else:
            table[vocab[word + "</w>"]] = table[old_vocab[canonical[word] + "</w>"]]
    model.load_state_dict(old.state_dict())
    return model


def train(args) -> None:
    """Pretrain (or resume) the text tower with the probes for ``args.steps`` steps.

    Options: ``init=FOLDER`` starts from a released model's text tower and keeps its states for canonical captions
    (mean squared distance to the frozen original, weighted ``keep=``), so a UNet trained on them still reads them;
    for the first ``probe-warmup=`` steps only the new probes learn, so their first large gradients do not reach
    the tower.
    """
    torch.manual_seed(args.seed)
    opts = dict(a.split("=", 1) for a in args.rest)
    run = RunDir(args.run_dir)
    tokenizer = components.write_tokenizer(run.path / "tokenizer")
    model = components.build_text_encoder(tokenizer).to(args.device)
    teacher, keep = None, float(opts.get("keep", 10.0))
    if "init" in opts:
        model = _from_previous(model, tokenizer, opts["init"]).to(args.device)
        teacher = CLIPTextModel.from_pretrained(f"{opts['init']}/text_encoder").to(args.device).eval().requires_grad_(False)
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
    warmup = int(opts.get("probe-warmup", 0))
    rng = np.random.default_rng(args.seed + step)  # a resumed run draws fresh captions
    deadline = time.time() + 60 * args.minutes
    while step < args.steps and time.time() < deadline:
        samples = [dataset.sample(int(rng.integers(1 << 62))) for _ in range(args.batch)]
        ids = encode(tokenizer, [s.caption for s in samples]).to(args.device)
        first_eos = (ids == tokenizer.eos_token_id).int().argmax(1, keepdim=True)
        eos_mask = torch.arange(ids.shape[1], device=ids.device)[None] >= first_eos
        hidden = model(ids).last_hidden_state
        loss, accuracy = probe_loss(hidden, eos_mask, [s.named for s in samples], [s.ends for s in samples], probes)
        drift = torch.zeros(())
        if teacher is not None:
            canonical = encode(tokenizer, [scenes.caption(s.spec) for s in samples]).to(args.device)
            with torch.no_grad():
                target = teacher(canonical).last_hidden_state
            drift = F.mse_loss(model(canonical).last_hidden_state, target)
            loss = loss + keep * drift
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if step < warmup:
            model.zero_grad(set_to_none=True)
        opt.step()
        step += 1
        if step % args.log_every == 0:
            run.log(step=step, loss=loss.item(), scene_accuracy=accuracy, drift=drift.item())
    run.save({"model": model.state_dict(), "probes": probes.state_dict(), "optimizer": opt.state_dict(),
              "step": torch.tensor(step)})
    model.save_pretrained(run.path / "model")
    run.log(step=step, event="saved")


def load(run_dir) -> tuple[CLIPTokenizer, CLIPTextModel]:
    """The tokenizer and text tower of a text run, or of a released model folder (its frozen ones)."""
    model = Path(run_dir) / ("text_encoder" if (Path(run_dir) / "text_encoder").is_dir() else "model")
    return CLIPTokenizer.from_pretrained(f"{run_dir}/tokenizer"), CLIPTextModel.from_pretrained(model)
