"""Result: what a run produced, with the Recipe that reproduces it; and reading a recipe back from a PNG."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from .errors import InvalidArgumentError
from .images import grid
from .recipe import Recipe


@dataclass
class Result:
    """Images, latents, NFE, per-stage timings, the σ's the network saw, and the Recipe that reproduces them.

    ``trajectory`` (with ``keep_trajectory=True``) holds every step's StepEvent and ``x_init`` the start latent,
    so a run can be scrubbed and branched.
    """

    images: list
    latents: torch.Tensor
    recipe: Recipe
    nfe: int
    timings: dict
    sigmas: torch.Tensor
    sigmas_used: list = field(default_factory=list)
    trajectory: list | None = None
    x_init: torch.Tensor | None = None

    def save(self, path, index: int = 0) -> Path:
        """Write image ``index`` as PNG with A1111's ``parameters`` text and the recipe JSON embedded."""
        from PIL.PngImagePlugin import PngInfo

        info = PngInfo()
        info.add_text("parameters", self.recipe.parameters_text())
        info.add_text("difftech_recipe", self.recipe.to_json())
        path = Path(path)
        self.images[index].save(path, pnginfo=info)
        return path

    def grid(self, columns: int | None = None, scale: int = 1):
        """All images side by side (rows of ``columns``), enlarged ``scale`` times without smoothing."""
        return grid(self.images, columns, scale)

    def __repr__(self) -> str:
        r, s = self.recipe, self.recipe.settings
        return (f"Result({len(self.images)} image(s) {s.width}x{s.height}, {r.technique}, sampler={s.sampler}, "
                f"steps={s.steps}, nfe={self.nfe}, seed={s.seed})")


def read_recipe(path) -> Recipe:
    """The Recipe embedded in a PNG written by ``Result.save``."""
    from PIL import Image

    text = Image.open(path).text.get("difftech_recipe")
    if text is None:
        raise InvalidArgumentError(f"{path} carries no difftech recipe; only PNGs written by Result.save do")
    return Recipe.from_json(text)
