"""Recipe: the JSON description that reproduces a Result exactly (``session.run(recipe)``).

A recipe is version + technique + model + the shared Settings + the technique's own parameters. Values JSON
cannot hold (images, arrays, prompt embeddings) are stored losslessly as tagged objects (``{"$image": ...}``),
so a recipe that embeds an init image, a mask or given noise still reproduces bit for bit. Recipes written
by earlier versions are upgraded when read.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field

import numpy as np
import torch

from .conditioning.types import Embedding
from .errors import InvalidArgumentError
from .images import from_png_text, png_text
from .sampling.samplers import normalize_sampler_options
from .sampling.settings import Settings

RECIPE_VERSION = 2


@dataclass
class Recipe:
    """Everything a run depends on. ``params`` holds the technique's parameters, encoded (see ``encode_value``);
    ``patches`` the network patches that were active around the call (``session.patched``); ``model_hash`` the
    content hash of the model's weights ("" when unknown, as in version-1 recipes)."""

    technique: str = "txt2img"
    settings: Settings = field(default_factory=Settings)
    params: dict = field(default_factory=dict)
    model: str = ""
    model_hash: str = ""
    patches: list = field(default_factory=list)
    version: int = RECIPE_VERSION

    def to_dict(self) -> dict:
        return {"version": self.version, "technique": self.technique, "model": self.model,
                "model_hash": self.model_hash, "settings": self.settings.to_dict(), "params": self.params,
                "patches": self.patches}

    def to_json(self, **dumps_options) -> str:
        return json.dumps(self.to_dict(), **dumps_options)

    @classmethod
    def from_dict(cls, data: dict) -> "Recipe":
        if not isinstance(data, dict):
            raise InvalidArgumentError(f"a recipe is a JSON object, got {type(data).__name__}")
        version = data.get("version", 1)
        if version == 1:
            data = upgrade_v1(data)
        elif version != RECIPE_VERSION:
            raise InvalidArgumentError(f"recipe version {version!r} is not one this difftech_lab reads (1, "
                                       f"{RECIPE_VERSION}); it was written by a newer version")
        unknown = sorted(set(data) - {*FIELDS, "version"})
        if unknown:
            raise InvalidArgumentError(f"recipe has unknown fields {unknown}; it was written by a newer "
                                       "difftech_lab or edited by hand")
        settings = Settings.from_dict(data["settings"])
        # JSON turns restart_list's int keys into strings, and older recipes spell options S_churn …
        settings.sampler_options = normalize_sampler_options(settings.sampler, settings.sampler_options or {})
        return cls(technique=data["technique"], settings=settings,
                   params=dict(data.get("params", {})), model=data.get("model", ""),
                   model_hash=data.get("model_hash", ""),
                   patches=list(data.get("patches", [])))

    @classmethod
    def from_json(cls, text: str) -> "Recipe":
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as err:
            raise InvalidArgumentError(f"recipe is not valid JSON: {err}") from err

    def parameters_text(self) -> str:
        """A1111's ``parameters`` PNG text: prompt, negative prompt, then ``Key: value`` pairs."""
        s, p = self.settings, self.params
        cfg = s.cfg if isinstance(s.cfg, (int, float, type(None))) else f"{s.cfg[0]}..{s.cfg[-1]}"
        pairs = [("Steps", s.steps), ("Sampler", s.sampler), ("Schedule type", s.schedule), ("CFG scale", cfg),
                 ("Seed", s.seed), ("Size", f"{s.width}x{s.height}"), ("Model", self.model)]
        if self.model_hash:
            pairs.append(("Model hash", self.model_hash))
        if "strength" in p:
            pairs.append(("Denoising strength", p["strength"]))
        if s.cfg_rescale:
            pairs.append(("CFG rescale", s.cfg_rescale if isinstance(s.cfg_rescale, (int, float)) else "curve"))
        if self.technique not in ("txt2img", "img2img"):
            pairs.append(("Technique", self.technique))
        if "parent" in p:  # a branch shows its parent's prompts unless it changed them
            p = {**p["parent"]["params"], **p.get("overrides", {})}
        prompt = p.get("prompt", "")
        lines = [prompt if isinstance(prompt, str) else "<embedding>"]
        if p.get("negative_prompt"):
            lines.append(f"Negative prompt: {p['negative_prompt']}")
        lines.append(", ".join(f"{k}: {v}" for k, v in pairs))
        return "\n".join(lines)


FIELDS = ("technique", "model", "model_hash", "settings", "params", "patches")


# --------------------------------------------------------------------------------------------- values
def encode_value(value):
    """A parameter value as JSON: images as PNG, arrays and tensors as float32 bytes, embeddings as both parts."""
    from PIL import Image

    if isinstance(value, Image.Image):
        return {"$image": png_text(value)}
    if isinstance(value, Embedding):
        return {"$embedding": {"hidden": array_to_dict(value.hidden.float().cpu().numpy()),
                               "pooled": None if value.pooled is None else
                               array_to_dict(value.pooled.float().cpu().numpy())}}
    if isinstance(value, torch.Tensor):
        return {"$tensor": array_to_dict(value.detach().float().cpu().numpy())}
    if isinstance(value, np.ndarray):
        return {"$array": array_to_dict(value)}
    if isinstance(value, (list, tuple)):
        return [encode_value(v) for v in value]
    if isinstance(value, dict):
        return {k: encode_value(v) for k, v in value.items()}
    return value


def decode_value(value):
    """Inverse of :func:`encode_value`."""
    if isinstance(value, list):
        return [decode_value(v) for v in value]
    if not isinstance(value, dict):
        return value
    if "$image" in value:
        return from_png_text(value["$image"])
    if "$embedding" in value:
        parts = value["$embedding"]
        pooled = parts["pooled"]
        return Embedding(hidden=torch.from_numpy(array_from_dict(parts["hidden"])),
                         pooled=None if pooled is None else torch.from_numpy(array_from_dict(pooled)))
    if "$tensor" in value:
        return torch.from_numpy(array_from_dict(value["$tensor"]))
    if "$array" in value:
        return array_from_dict(value["$array"])
    return {k: decode_value(v) for k, v in value.items()}


def array_to_dict(array: np.ndarray) -> dict:
    array = np.ascontiguousarray(array, dtype=np.float32)
    return {"shape": list(array.shape), "float32": base64.b64encode(array.tobytes()).decode("ascii")}


def array_from_dict(data: dict) -> np.ndarray:
    return np.frombuffer(base64.b64decode(data["float32"]), dtype=np.float32).reshape(data["shape"]).copy()


# -------------------------------------------------------------------------------------- earlier versions
_V1_SETTINGS = ("width", "height", "steps", "sampler", "sampler_options", "schedule", "schedule_options", "cfg",
                "cfg_rescale", "threshold", "seed", "batch_size", "clip_skip")
_V1_DEFAULTS = {"width": 64, "height": 64, "cfg": 7.0}  # where version 1's defaults differ from Settings'
# Version-1 recipes carry no weights hash; the only bundled weights that release shipped were these.
_V1_BUNDLED = ("tiny-shapes", "9c98aa7f3943")
_V1_FIELDS = {*_V1_SETTINGS, "mode", "prompt", "negative_prompt", "strength", "init_image", "mask", "noise",
              "prompt_embedding", "branch", "model", "version"}


def upgrade_v1(data: dict) -> dict:
    """A version-1 recipe (one flat record with per-mode fields) as a version-2 dict.

    Version 1 inpainting kept the decoded pixels as the decoder gave them, so its recipes run with
    ``composite=False`` and reproduce bit for bit. A recipe naming the bundled model gets the weights hash of the
    bundled model of that release, so running it on a later bundled model warns.
    """
    unknown = sorted(set(data) - _V1_FIELDS)
    if unknown:
        raise InvalidArgumentError(f"version-1 recipe has unknown fields {unknown}; it was edited by hand")
    settings = {**_V1_DEFAULTS, **{k: data[k] for k in _V1_SETTINGS if k in data}}
    prompt = data.get("prompt", "")
    if data.get("prompt_embedding"):
        prompt = {"$embedding": data["prompt_embedding"]}
    params = {"prompt": prompt, "negative_prompt": data.get("negative_prompt", "")}
    mode = data.get("mode", "txt2img")
    if data.get("branch"):
        parent = upgrade_v1(data["branch"]["parent"])
        changed = {k: params[k] for k in ("prompt", "negative_prompt") if params[k] != parent["params"].get(k)}
        return {"version": RECIPE_VERSION, "technique": "branch", "model": data.get("model", ""),
                "model_hash": _v1_hash(data), "settings": settings,
                "params": {"parent": parent, "step": data["branch"]["step"], "overrides": changed}}
    if mode == "txt2img":
        params["noise"] = {"$tensor": data["noise"]} if data.get("noise") else None
    elif mode in ("img2img", "inpaint"):
        params.update(image={"$image": data["init_image"]}, strength=data["strength"])
        if mode == "inpaint":
            params.update(mask={"$array": data["mask"]}, mask_blur=0.0, composite=False)
    else:
        raise InvalidArgumentError(f"recipe mode {mode!r} is not one version 1 wrote")
    return {"version": RECIPE_VERSION, "technique": mode, "model": data.get("model", ""), "model_hash": _v1_hash(data),
            "settings": settings, "params": params}


def _v1_hash(data: dict) -> str:
    return _V1_BUNDLED[1] if data.get("model") == _V1_BUNDLED[0] else ""
