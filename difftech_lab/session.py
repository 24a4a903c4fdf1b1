"""The Session: the one stateful object. It owns the models and caches, offers the primitives every technique
uses, and delegates each technique to its module under ``techniques/`` (one line each)."""

from __future__ import annotations

import threading
from pathlib import Path

import torch
from torch.profiler import record_function

from .conditioning.encoder import PromptEncoder
from .conditioning.expansion import expand, model_family, styles
from .conditioning.types import Embedding
from .errors import InvalidArgumentError
from .images import from_pixels, to_pixels
from .models.loading import ModelBundle, load_model
from .patches import patched
from .recipe import Recipe
from .result import Result, read_recipe
from .sampling.settings import RUN_OPTIONS, RunOptions, check_seed, check_size, documents_settings
from .techniques import branch as _branch
from .techniques import best_of as _best_of
from .techniques import compose as _compose
from .techniques import differential as _differential
from .techniques import gligen as _gligen
from .techniques import img2img as _img2img
from .techniques import prompt_search as _prompt_search
from .techniques import regional as _regional
from .techniques import txt2img as _txt2img
from .techniques.base import replay

__all__ = ["Session", "Result", "read_recipe"]


class Session:
    """Loads a model once and runs every technique on it.

    ``Session()`` loads the bundled tiny-shapes model; ``Session.load(spec)`` a hub id, a diffusers folder or a
    single-file checkpoint (SD 1.x/2.x ε and v, SDXL). On a CUDA GPU when there is one, else on the CPU.

    Besides the base model (``session.model``) a session can hold the extra networks a technique needs, under
    a name: ``session.attach("style", Session.load(...).model)``; techniques find them in ``session.models``.
    """

    def __init__(self, model: ModelBundle | str | Path | None = None, *, device="auto", dtype="auto",
                 progress: bool = True, cache_size: int = 64):
        if not isinstance(model, ModelBundle):
            model = load_model(model, device=device, dtype=dtype)
        self.model = model
        self.models: dict[str, object] = {"base": model}
        self.progress = progress
        tokenizer_2, encoder_2 = (model.tokenizers[1], model.text_encoders[1]) if model.is_sdxl else (None, None)
        self.encoder = PromptEncoder(model.tokenizers[0], model.text_encoders[0], tokenizer_2, encoder_2,
                                     cache_size=cache_size, trained_tokens=model.trained_tokens)
        self.cancel_event = threading.Event()
        self.lock = threading.RLock()  # one run at a time: widgets run in background threads
        self.active_patches: list = []

    # ----------------------------------------------------------------------------------------------- loading
    @classmethod
    def load(cls, spec=None, *, device="auto", dtype="auto", progress: bool = True, cache_size: int = 64,
             **options) -> "Session":
        """Any model spec: None (the bundled model), a hub id, a diffusers folder, or a single-file checkpoint
        (``.safetensors``; pickles only with ``allow_pickle=True``). This is what ``DIFFTECH_MODEL`` names."""
        return cls(load_model(spec, device=device, dtype=dtype, **options), progress=progress, cache_size=cache_size)

    @classmethod
    def from_pretrained(cls, id_or_path, **options) -> "Session":
        """A diffusers folder or hub id (``HF_HUB_OFFLINE=1`` is honoured); see :meth:`load`."""
        return cls.load(id_or_path, **options)

    @classmethod
    def from_single_file(cls, path, **options) -> "Session":
        """A single-file checkpoint; pickles (.ckpt/.pt) only with ``allow_pickle=True``; see :meth:`load`."""
        return cls.load(Path(path), **options)

    def attach(self, name: str, model) -> None:
        """Hold another network under ``name`` (a ControlNet, a second model, a distilled student)."""
        if not isinstance(name, str) or not name or name == "base":
            raise InvalidArgumentError(f"name {name!r} must be a non-empty string other than 'base'")
        self.models[name] = model

    # ------------------------------------------------------------------------------------------- properties
    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.dtype

    @property
    def model_sampling(self):
        return self.model.model_sampling

    @property
    def default_size(self) -> tuple[int, int]:
        return self.model.default_size

    def latent_shape(self, width: int, height: int) -> tuple[int, int, int]:
        width, height = check_size(self.model, width, height)
        f = self.model.vae_scale_factor
        return self.model.latent_channels, height // f, width // f

    def __repr__(self) -> str:
        return f"Session(model={self.model.name!r}, device={self.device.type}, dtype={str(self.dtype)[6:]})"

    # ----------------------------------------------------------------------------------------- primitives
    def cancel(self) -> None:
        """Stop the run in progress (from another thread or a widget) at its next step."""
        self.cancel_event.set()

    def patched(self, *patches, **named):
        """Patch the networks for a ``with`` block, e.g. ``with session.patched(attention="classic"):``; runs
        inside record the patches in their Recipe, and every patch is undone on exit, error or not."""
        return patched(self, *patches, **named)

    def encode_prompt(self, text: str) -> Embedding:
        """The weighted, chunked encoding of ``text`` (cached, bounded LRU)."""
        with record_function("difftech/encode_prompt"):
            return self.encoder.encode(text)

    def noise(self, seed: int, width: int | None = None, height: int | None = None, batch_size: int = 1):
        """Unit Gaussian latent noise; image ``i`` of a batch uses seed ``seed + i`` (so batches are stable)."""
        dw, dh = self.default_size
        shape = self.latent_shape(dw if width is None else width, dh if height is None else height)
        seed = check_seed(seed)
        return torch.stack([torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed + i))
                            for i in range(batch_size)])

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> list:
        """Latents (scaled, as the spine holds them) to PIL images."""
        vae = self.model.vae
        config = vae.config
        with record_function("difftech/decode"):
            z = latents.to(self.device, vae.dtype) / config.scaling_factor + (getattr(config, "shift_factor", None) or 0)
            pixels = vae.decode(z, return_dict=False)[0]
        return from_pixels(pixels)

    preview = decode

    @torch.no_grad()
    def encode(self, images) -> torch.Tensor:
        """PIL images (or one) to scaled latents, using the posterior mean so the result is deterministic."""
        pixels = to_pixels(images)
        check_size(self.model, pixels.shape[3], pixels.shape[2])
        vae = self.model.vae
        config = vae.config
        with record_function("difftech/encode_image"):
            mean = vae.encode(pixels.to(self.device, vae.dtype)).latent_dist.mean.float()
        return (mean - (getattr(config, "shift_factor", None) or 0)) * config.scaling_factor

    # ---------------------------------------------------------------------------------------- techniques
    @documents_settings
    def generate(self, prompt: str | Embedding = "", negative_prompt: str = "", *, noise: torch.Tensor | None = None,
                 style: str | None = None, **options) -> Result:
        """Text to image. ``noise`` (``[B, C, h, w]``, unit variance) replaces the seed's initial noise; ``style``
        expands the prompt (``expand_prompt``), recorded in the Recipe."""
        return _txt2img.generate(self, prompt, negative_prompt, noise=noise, style=style, **options)

    def expand_prompt(self, prompt: str, style: str, negative_prompt: str = "") -> tuple[str, str]:
        """``(prompt, negative_prompt)`` as ``style`` of this model family's vocabulary writes them (``expansion``)."""
        return expand(prompt, style, model_family(self.model), negative_prompt)

    def prompt_styles(self) -> list[str]:
        """The expansion styles of this model's family."""
        return styles(model_family(self.model))

    @documents_settings
    def img2img(self, image, prompt: str | Embedding = "", negative_prompt: str = "", *, strength: float = 0.6,
                **options) -> Result:
        """Image to image: noise the encoded image to the strength's σ and run the last ``steps·strength`` steps
        (0.3–0.5 keeps the composition, 1.0 ignores the image). The size is the image's."""
        return _img2img.img2img(self, image, prompt, negative_prompt, strength=strength, **options)

    @documents_settings
    def inpaint(self, image, mask, prompt: str | Embedding = "", negative_prompt: str = "", *, strength: float = 1.0,
                mask_blur: float | None = None, composite: bool = True, **options) -> Result:
        """Regenerate where ``mask`` (H×W in [0, 1]) is 1 and keep the image where it is 0
        (``techniques.img2img.inpaint``)."""
        return _img2img.inpaint(self, image, mask, prompt, negative_prompt, strength=strength, mask_blur=mask_blur,
                                composite=composite, **options)

    @documents_settings
    def best_of(self, prompt: str, negative_prompt: str = "", *, n: int = 4, scorer="adherence", resample_at=None,
                **options) -> Result:
        """Best-of-N: ``n`` candidates scored, the best returned; the Recipe replays without the scorer
        (``techniques.best_of.best_of``)."""
        return _best_of.best_of(self, prompt, negative_prompt, n=n, scorer=scorer, resample_at=resample_at,
                                **options)

    @documents_settings
    def prompt_search(self, prompt: str, target: str | None = None, negative_prompt: str = "", **options) -> Result:
        """Change the prompt's words until ``target`` (or ``scorer=``) is met; the Recipe records every accepted
        change and replays the final prompt (``techniques.prompt_search.prompt_search``)."""
        return _prompt_search.prompt_search(self, prompt, target, negative_prompt, **options)

    @documents_settings
    def differential(self, image, strength_map=None, prompt: str | Embedding = "", negative_prompt: str = "", *,
                     keep_map=None, mask_blur: float | None = None, composite: bool = True, **options) -> Result:
        """Differential diffusion: img2img with a per-pixel strength map
        (``techniques.differential.differential``)."""
        return _differential.differential(self, image, strength_map, prompt, negative_prompt, keep_map=keep_map,
                                          mask_blur=mask_blur, composite=composite, **options)

    @documents_settings
    def compose(self, parts, background: str | Embedding, negative_prompt: str = "", *, at_step: int | None = None,
                finish_prompt: str | Embedding | None = None, **options) -> Result:
        """Masked latent composition: each ``(prompt, mask)`` part and the background denoised from one noise,
        joined by the masks at ``at_step`` and finished together (``techniques.compose.compose``)."""
        return _compose.compose(self, parts, background, negative_prompt, at_step=at_step,
                                finish_prompt=finish_prompt, **options)

    @documents_settings
    def regional(self, regions, base_prompt: str = "", mode: str = "attention", *, negative_prompt: str = "",
                 base_ratio: float = 0.2, **options) -> Result:
        """Regional prompting: a prompt per mask or box, ``mode`` "attention" or "latent", with a base prompt
        (``techniques.regional.regional``)."""
        return _regional.regional(self, regions, base_prompt, mode, negative_prompt=negative_prompt,
                                  base_ratio=base_ratio, **options)

    @documents_settings
    def gligen(self, prompt: str, boxes, negative_prompt: str = "", *, method: str = "auto",
               scheduled_sampling: float | None = None, boost: float = 4.0, **options) -> Result:
        """Box grounding: ``boxes`` is a list of ``(phrase, (x0, y0, x1, y1))``; GLIGEN where the UNet has its
        weights, training-free boxes otherwise (``techniques.gligen.gligen``)."""
        return _gligen.gligen(self, prompt, boxes, negative_prompt, method=method,
                              scheduled_sampling=scheduled_sampling, boost=boost, **options)

    def branch(self, result: Result, step: int, **overrides) -> Result:
        """Re-run the steps from ``step`` on, from the state stored in ``result``'s trajectory (generate it with
        ``keep_trajectory=True``), changing any of: prompt, negative_prompt, sampler, sampler_options, cfg,
        cfg_rescale, threshold, seed, clip_skip (plus run options)."""
        return _branch.branch(self, result, step, **overrides)

    def run(self, recipe: Recipe | dict | str, **run_options) -> Result:
        """Reproduce a Result from its Recipe (bit for bit on the same machine), patches included."""
        if isinstance(recipe, str):
            recipe = Recipe.from_json(recipe)
        elif isinstance(recipe, dict):
            recipe = Recipe.from_dict(recipe)
        unknown = sorted(set(run_options) - set(RUN_OPTIONS))
        if unknown:  # settings come from the recipe; change them with a new call or a branch
            raise InvalidArgumentError(f"run() takes only run options ({', '.join(RUN_OPTIONS)}), not {unknown}")
        return replay(self, recipe, RunOptions(**run_options))
