"""LatentNavigator: a 2-D pad spanned by 2–4 anchors; the point's blend of their noises and prompts is
previewed live.

The pointer stays in the browser and syncs ``point`` at most once per animation frame; previews render on a
worker thread, latest request wins, and a render a newer point has made stale stops at its next step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import traitlets

from ..conditioning.types import Embedding
from ..errors import InvalidArgumentError, ShapeError
from ..images import png_bytes
from ..techniques.latents import (default_anchor_positions, linear_blend, navigator_weights, spherical_blend,
                                  typical_norm)
from ._base import LatestRunner, Superseded, Widget, binary_trait, load_esm
from ._frames import png_list_trait

BLENDS = ("slerp", "linear")


@dataclass
class Anchor:
    """One corner of the pad: the noise and the prompt it stands for."""

    label: str
    noise: torch.Tensor  # [1, C, h, w], unit Gaussian
    embedding: Embedding
    prompt: str | None  # the text, when the embedding came from one


class LatentNavigator(Widget):
    """Blend 2–4 anchors by dragging a point on a pad; ``.latent``, ``.embedding`` and ``.recipe`` hold the
    chosen point.

    Args:
        session: the Session that encodes prompts, makes noise and renders previews.
        anchors: 2–4 of: an int (a seed, with ``prompt``), a str (a prompt, with ``seed``), a latent tensor
            ``[1, C, h, w]`` or ``[C, h, w]`` (with ``prompt``), an Embedding, or a dict with any of
            ``seed``/``latent`` and ``prompt``/``embedding``.
        prompt, seed: what an anchor that names only one of noise and prompt uses for the other.
        positions: where the anchors sit on the unit pad (default: midline ends, a triangle, or the corners).
        noise_blend: "slerp" (spherical, keeps ‖z‖ ≈ √d) or "linear" (the weighted sum, for comparison).
        embedding_blend: "linear" (the usual choice for text embeddings) or "slerp" (per token).
        width, height, steps, cfg, sampler, negative_prompt and any other keyword: the preview's generate
            settings (few steps keep dragging responsive).
    """

    _esm = load_esm("latent_navigator.js")

    point = traitlets.List(traitlets.Float(), [0.5, 0.5], minlen=2, maxlen=2).tag(sync=True)
    anchor_positions = traitlets.List(traitlets.List(traitlets.Float())).tag(sync=True)
    anchor_labels = traitlets.List(traitlets.Unicode()).tag(sync=True)
    thumbnails = png_list_trait(help="PNG preview of each anchor")
    preview = binary_trait(help="PNG preview at the point")
    preview_point = traitlets.List(traitlets.Float(), help="the point the preview shows").tag(sync=True)
    weights = traitlets.List(traitlets.Float()).tag(sync=True)
    norm = traitlets.Float(0.0).tag(sync=True)
    typical_norm = traitlets.Float(0.0).tag(sync=True)
    noise_blend = traitlets.Enum(BLENDS, "slerp").tag(sync=True)
    embedding_blend = traitlets.Enum(BLENDS, "linear").tag(sync=True)
    display_size = traitlets.Int(256, help="pad and preview side on screen, in CSS pixels").tag(sync=True)

    def __init__(self, session, anchors, *, prompt: str = "", seed: int = 0, positions=None,
                 noise_blend: str = "slerp", embedding_blend: str = "linear", width: int | None = None,
                 height: int | None = None, steps: int = 8, cfg: float | None = None, sampler: str = "euler",
                 negative_prompt: str = "", **generate_options):
        anchors = list(anchors)
        if not 2 <= len(anchors) <= 4:
            raise InvalidArgumentError(f"LatentNavigator takes 2 to 4 anchors, got {len(anchors)}")
        self.session = session
        dw, dh = session.default_size
        self.width, self.height = width or dw, height or dh
        self.generate_options = dict(steps=steps, cfg=cfg, sampler=sampler, negative_prompt=negative_prompt,
                                     **generate_options)
        self.anchors = [self._anchor(a, k, prompt, seed) for k, a in enumerate(anchors)]
        positions = [list(map(float, p)) for p in (positions or default_anchor_positions(len(anchors)))]
        navigator_weights((0.5, 0.5), positions)  # refuses bad layouts now, not in the first render
        self.last_result = None
        self._runner = LatestRunner(self)
        self._thumb_runner = LatestRunner(self)
        d = self.anchors[0].noise[0].shape
        super().__init__(anchor_positions=positions, anchor_labels=[a.label for a in self.anchors],
                         noise_blend=noise_blend, embedding_blend=embedding_blend, typical_norm=typical_norm(d))
        self.observe(self._request_render, names=["point", "noise_blend", "embedding_blend"])
        self._thumb_runner.submit(self._render_thumbnails, self._apply_thumbnails)
        self._request_render()

    # ---------------------------------------------------------------------------------------------- the point
    def weights_at(self, point) -> torch.Tensor:
        """The anchors' blend weights at ``point`` (x, y) on the unit pad."""
        return navigator_weights(point, self.anchor_positions)

    def latent_at(self, point) -> torch.Tensor:
        """The blended unit-Gaussian noise ``[1, C, h, w]`` at ``point``."""
        w = self.weights_at(point)
        noises = [a.noise for a in self.anchors]
        return spherical_blend(noises, w) if self.noise_blend == "slerp" else linear_blend(noises, w)

    def embedding_at(self, point) -> Embedding:
        """The blended prompt embedding at ``point``."""
        w = self.weights_at(point)
        blend = _per_token_slerp if self.embedding_blend == "slerp" else linear_blend
        hidden = blend([a.embedding.hidden for a in self.anchors], w)
        pooled = [a.embedding.pooled for a in self.anchors]
        return Embedding(hidden=hidden, pooled=None if pooled[0] is None else blend(pooled, w))

    @property
    def latent(self) -> torch.Tensor:
        """The noise at the current point (pass it as ``noise=`` to ``session.generate``)."""
        return self.latent_at(self.point)

    @property
    def embedding(self) -> Embedding:
        return self.embedding_at(self.point)

    @property
    def recipe(self):
        """The Recipe of the latest preview (its noise and embedding are the blends, so it records
        ``prompt="<embedding>"``; :attr:`navigation` says how to rebuild them)."""
        return None if self.last_result is None else self.last_result.recipe

    @property
    def navigation(self) -> dict:
        """The point, its weights and the anchors, JSON-able."""
        return {"point": list(self.point), "weights": self.weights_at(self.point).tolist(),
                "anchors": [{"label": a.label, "prompt": a.prompt} for a in self.anchors],
                "positions": self.anchor_positions, "noise_blend": self.noise_blend,
                "embedding_blend": self.embedding_blend}

    def generate(self, **overrides):
        """A full generation at the current point (the preview's settings, changed by ``overrides``)."""
        options = dict(self.generate_options, width=self.width, height=self.height, **overrides)
        return self.session.generate(self.embedding, noise=self.latent, **options)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the thumbnails and the latest preview are done (for scripts and tests)."""
        return self._thumb_runner.wait(timeout) and self._runner.wait(timeout)

    # ------------------------------------------------------------------------------------------- rendering
    def _request_render(self, change=None) -> None:
        point = [min(max(float(v), 0.0), 1.0) for v in self.point]
        self._runner.submit(lambda is_stale: self._render(point, is_stale), self._apply_render)

    def _render(self, point, is_stale):
        latent, embedding = self.latent_at(point), self.embedding_at(point)
        result = self._preview(embedding, latent, is_stale)
        return point, self.weights_at(point), latent, result

    def _apply_render(self, rendered) -> None:
        point, weights, latent, result = rendered
        self.last_result = result
        self.preview = png_bytes(result.images[0])
        self.preview_point = point
        self.weights = weights.tolist()
        self.norm = float(latent[0].norm())

    def _render_thumbnails(self, is_stale):
        return [png_bytes(self._preview(a.embedding, a.noise, is_stale).images[0]) for a in self.anchors]

    def _apply_thumbnails(self, thumbnails) -> None:
        self.thumbnails = thumbnails

    def _preview(self, embedding, latent, is_stale):
        def stop_if_stale(event):
            if is_stale():
                raise Superseded

        return self.session.generate(embedding, width=self.width, height=self.height, noise=latent,
                                     callback=stop_if_stale, progress=False, **self.generate_options)

    # --------------------------------------------------------------------------------------------- anchors
    def _anchor(self, spec, k: int, prompt: str, seed: int) -> Anchor:
        if isinstance(spec, bool) or not isinstance(spec, (int, str, torch.Tensor, Embedding, dict)):
            raise InvalidArgumentError(
                f"anchor {k} is {type(spec).__name__}; give a seed (int), a prompt (str), a latent tensor, an "
                "Embedding, or a dict with seed/latent and prompt/embedding")
        if not isinstance(spec, dict):
            key = {int: "seed", str: "prompt", Embedding: "embedding"}.get(type(spec), "latent")
            spec = {key: spec}
        unknown = sorted(set(spec) - {"seed", "latent", "prompt", "embedding", "label"})
        if unknown:
            raise InvalidArgumentError(f"anchor {k} has unknown keys {unknown}; use seed/latent, prompt/embedding")
        noise = self._noise(spec, k, seed)
        text = spec.get("prompt", prompt if "embedding" not in spec else None)
        embedding = spec["embedding"] if "embedding" in spec else self.session.encode_prompt(text)
        noise_part = f"latent {k}" if "latent" in spec else f"seed {spec['seed']}" if "seed" in spec else None
        prompt_part = "embedding" if "embedding" in spec else _short(spec["prompt"]) if "prompt" in spec else None
        label = spec.get("label") or " · ".join(p for p in (noise_part, prompt_part) if p)
        return Anchor(label=label, noise=noise, embedding=embedding, prompt=text)

    def _noise(self, spec: dict, k: int, seed: int) -> torch.Tensor:
        if "latent" not in spec:
            return self.session.noise(int(spec.get("seed", seed)), self.width, self.height)
        latent = spec["latent"]
        latent = latent[None] if latent.ndim == 3 else latent
        expected = (1, *self.session.latent_shape(self.width, self.height))
        if tuple(latent.shape) != expected:
            raise ShapeError(f"anchor {k}'s latent has shape {tuple(latent.shape)}, but {self.width}x{self.height} "
                             f"needs {expected}; pass width=/height= to match it")
        return latent.detach().float().cpu()

    def __repr__(self) -> str:
        return f"LatentNavigator({len(self.anchors)} anchors)"


def _short(text: str, limit: int = 24) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _per_token_slerp(values, weights) -> torch.Tensor:
    """Spherical blend of ``[1, T, D]`` hidden states (or ``[1, P]`` pooled vectors) token by token."""
    shape = values[0].shape
    rows = [v.reshape(-1, shape[-1]) for v in values]
    return spherical_blend(rows, weights).reshape(shape)
