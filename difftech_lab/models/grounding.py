"""GLIGEN grounding weights (Li et al. 2023) on a UNet: diffusers' ``attention_type="gated"`` layout.

A grounded UNet is its base UNet plus a gated self-attention layer (``fuser``) in every transformer block and a
position net that turns (phrase vector, box) pairs into grounding tokens. Every gate starts at 0, where the
grounded UNet computes exactly what its base does, so grounding can be trained with the base frozen and shipped
as the new weights alone: a *grounding folder* holds ``grounding.json`` (the base model it extends) and
``grounding.safetensors`` (the fusers and the position net). The bundled model's grounding ships that way
beside it; diffusers-format GLIGEN checkpoints of real models load as ordinary folders.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import torch

from ..errors import ModelLoadError

GROUNDING_FILE = "grounding.json"
WEIGHTS_FILE = "grounding.safetensors"
GATED = ("gated", "gated-text-image")
MAX_OBJECTS = 30  # grounding tokens per image: GLIGEN's position net is trained with 30, diffusers pads to it


def is_grounding_key(name: str) -> bool:
    """Whether a UNet state-dict entry belongs to the grounding weights rather than to the base UNet."""
    return ".fuser." in name or name.startswith("position_net.")


def has_grounding(unet) -> bool:
    """Whether the UNet carries GLIGEN weights (gated self-attention and a position net)."""
    return getattr(unet.config, "attention_type", "default") in GATED and hasattr(unet, "position_net")


def grounded_unet(base) -> torch.nn.Module:
    """A gated copy of ``base`` (same class, config with ``attention_type="gated"``) holding the base's weights,
    with fresh grounding weights whose gates are shut: until trained or loaded it computes what ``base`` does."""
    unet = type(base).from_config({**base.config, "attention_type": "gated"})
    missing, unexpected = unet.load_state_dict(base.state_dict(), strict=False)
    if unexpected or not all(is_grounding_key(k) for k in missing):
        raise ModelLoadError(f"the UNet does not take GLIGEN's gated layout (unexpected {unexpected[:3]}, missing "
                             f"{[k for k in missing if not is_grounding_key(k)][:3]})")
    reference = next(base.parameters())
    unet.to(reference.device)
    return unet if reference.dtype == torch.float32 else unet.to(reference.dtype)


def grounding_state(unet) -> dict[str, torch.Tensor]:
    """The grounding weights of a grounded UNet (what a grounding folder ships)."""
    return {k: v for k, v in unet.state_dict().items() if is_grounding_key(k)}


def phrase_embeddings(tokenizer, encoder, phrases: list[str]) -> torch.Tensor:
    """Each phrase's pooled text vector (the end-of-text state), as GLIGEN's text-only grounding takes it."""
    tokens = tokenizer(phrases, padding=True, truncation=True, return_tensors="pt").to(encoder.device)
    with torch.no_grad():
        return encoder(**tokens).pooler_output.float().cpu()


def gligen_inputs(vectors: torch.Tensor, boxes: torch.Tensor, counts: torch.Tensor, keep: torch.Tensor) -> dict:
    """The UNet's ``gligen`` cross-attention kwargs for a batch: ``vectors`` ``[B, n, D]`` and ``boxes`` ``[B, n, 4]``
    padded to ``MAX_OBJECTS`` slots; the first ``counts`` slots of a row are live unless ``keep`` is False for it
    (the unconditional rows, or grounding dropped in training), where the learned null tokens stand in."""
    slots = torch.arange(MAX_OBJECTS, device=vectors.device)
    masks = ((slots[None] < counts[:, None]) & keep[:, None]).to(vectors.dtype)
    pad = MAX_OBJECTS - vectors.shape[1]
    return {"boxes": torch.nn.functional.pad(boxes, (0, 0, 0, pad)),
            "positive_embeddings": torch.nn.functional.pad(vectors, (0, 0, 0, pad)), "masks": masks}


def is_grounding_folder(path: Path) -> bool:
    return (Path(path) / GROUNDING_FILE).is_file()


def load_grounding_folder(folder: Path, load_base, device="auto", dtype="auto"):
    """The base model of a grounding folder (loaded with ``load_base(path, device, dtype)``) with its grounding
    attached. The bundle's source is the grounding folder and its identity covers the base's weights too."""
    folder = Path(folder)
    try:
        meta = json.loads((folder / GROUNDING_FILE).read_text())
    except json.JSONDecodeError as err:
        raise ModelLoadError(f"{folder / GROUNDING_FILE} is not valid JSON ({err}); re-install or re-export it") from err
    base_path = (folder / meta.get("base", "")).resolve()
    if not base_path.is_dir():
        raise ModelLoadError(f"the grounding at {folder} extends the model at {base_path}, which is not there; "
                             "install that model beside it")
    if not (folder / WEIGHTS_FILE).is_file():
        raise ModelLoadError(f"the grounding folder {folder} lacks {WEIGHTS_FILE}; re-install or re-export it")
    from safetensors.torch import load_file

    base = load_base(base_path, device, dtype)
    unet = grounded_unet(base.unet)
    state = load_file(folder / WEIGHTS_FILE)
    expected = set(grounding_state(unet))
    if set(state) != expected:
        raise ModelLoadError(f"{folder / WEIGHTS_FILE} does not fit its base UNet ({len(set(state) - expected)} "
                             f"unknown, {len(expected - set(state))} missing tensors); re-export it against "
                             f"{base_path}")
    unet.load_state_dict(state, strict=False)
    unet.eval()
    defaults = {**base.extras.get("defaults", {}), **meta.get("defaults", {})}
    return replace(base, name=folder.name, source=str(folder), unet=unet,
                   extras={**base.extras, "defaults": defaults, "base_source": str(base_path)})
