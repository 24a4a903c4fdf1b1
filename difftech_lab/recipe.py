"""Recipe: the JSON description that reproduces a Result exactly (``session.run(recipe)``)."""

from __future__ import annotations

import base64
import io
import json
from dataclasses import asdict, dataclass, field, fields

import numpy as np

from .errors import InvalidArgumentError

RECIPE_VERSION = 1


@dataclass
class Recipe:
    """Everything a generation depends on. Curves are stored as one value per step, images as PNG."""

    mode: str = "txt2img"
    prompt: str = ""
    negative_prompt: str = ""
    width: int = 64
    height: int = 64
    steps: int = 20
    sampler: str = "euler"
    sampler_options: dict = field(default_factory=dict)
    schedule: str = "default"
    schedule_options: dict = field(default_factory=dict)
    cfg: float | list = 7.0
    cfg_rescale: float | list = 0.0
    threshold: dict | None = None
    seed: int = 0
    batch_size: int = 1
    clip_skip: int = 1
    strength: float | None = None
    init_image: str | None = None
    mask: dict | None = None
    noise: dict | None = None
    prompt_embedding: dict | None = None
    branch: dict | None = None
    model: str = ""
    version: int = RECIPE_VERSION

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self, **dumps_options) -> str:
        return json.dumps(self.to_dict(), **dumps_options)

    @classmethod
    def from_dict(cls, data: dict) -> "Recipe":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidArgumentError(f"recipe has unknown fields {unknown}; it was written by a newer "
                                       "difftech_lab or edited by hand")
        data = dict(data)
        if data.get("branch"):
            data["branch"] = dict(data["branch"], parent=cls.from_dict(data["branch"]["parent"]).to_dict())
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> "Recipe":
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as err:
            raise InvalidArgumentError(f"recipe is not valid JSON: {err}") from err

    def parameters_text(self) -> str:
        """A1111's ``parameters`` PNG text: prompt, negative prompt, then ``Key: value`` pairs."""
        cfg = self.cfg if isinstance(self.cfg, (int, float)) else f"{self.cfg[0]}..{self.cfg[-1]}"
        pairs = [("Steps", self.steps), ("Sampler", self.sampler), ("Schedule type", self.schedule),
                 ("CFG scale", cfg), ("Seed", self.seed), ("Size", f"{self.width}x{self.height}"),
                 ("Model", self.model)]
        if self.strength is not None:
            pairs.append(("Denoising strength", self.strength))
        if self.cfg_rescale:
            pairs.append(("CFG rescale", self.cfg_rescale if isinstance(self.cfg_rescale, (int, float)) else "curve"))
        lines = [self.prompt]
        if self.negative_prompt:
            lines.append(f"Negative prompt: {self.negative_prompt}")
        lines.append(", ".join(f"{k}: {v}" for k, v in pairs))
        return "\n".join(lines)


def image_to_text(image) -> str:
    """A PIL image as base64 PNG (lossless, so a recipe reproduces img2img bit for bit)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def image_from_text(text: str):
    from PIL import Image

    return Image.open(io.BytesIO(base64.b64decode(text))).convert("RGB")


def array_to_dict(array: np.ndarray) -> dict:
    array = np.ascontiguousarray(array, dtype=np.float32)
    return {"shape": list(array.shape), "float32": base64.b64encode(array.tobytes()).decode("ascii")}


def array_from_dict(data: dict) -> np.ndarray:
    return np.frombuffer(base64.b64decode(data["float32"]), dtype=np.float32).reshape(data["shape"]).copy()
