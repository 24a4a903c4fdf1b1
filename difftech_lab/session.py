"""The Session: the one stateful object. It owns the model, runs every technique, and returns Results."""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field, is_dataclass, asdict, replace
from pathlib import Path

import numpy as np
import torch
from torch.profiler import record_function

from .conditioning.encoder import PromptEncoder
from .conditioning.types import Conditioning, CondTerm, Embedding
from .errors import (CancelledError, InvalidArgumentError, NumericalError, ShapeError)
from .models.denoiser import UNetDenoiser
from .models.loading import ModelBundle, bundled_model_path, load_folder, load_pretrained, load_single_file
from .recipe import Recipe, array_from_dict, array_to_dict, image_from_text, image_to_text
from .sampling.curves import Curve, curve_values
from .sampling.events import StepEvent
from .sampling.guider import Guider
from .sampling.samplers import get_sampler
from .sampling.schedules import make_sigmas
from .sampling.thresholding import DynamicThreshold, MimicThreshold

THRESHOLDS = {"dynamic": DynamicThreshold, "mimic": MimicThreshold}


@dataclass
class Result:
    """What a run produced: images, latents, NFE, per-stage timings, and the Recipe that reproduces it."""

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
        from PIL import Image

        columns = columns or len(self.images)
        rows = math.ceil(len(self.images) / columns)
        w, h = self.images[0].size
        canvas = Image.new("RGB", (columns * w, rows * h), "white")
        for k, image in enumerate(self.images):
            canvas.paste(image, ((k % columns) * w, (k // columns) * h))
        return canvas.resize((canvas.width * scale, canvas.height * scale), Image.NEAREST) if scale > 1 else canvas

    def __repr__(self) -> str:
        r = self.recipe
        return (f"Result({len(self.images)} image(s) {r.width}x{r.height}, {r.mode}, sampler={r.sampler}, "
                f"steps={r.steps}, nfe={self.nfe}, seed={r.seed})")


def read_recipe(path) -> Recipe:
    """The Recipe embedded in a PNG written by ``Result.save``."""
    from PIL import Image

    text = Image.open(path).text.get("difftech_recipe")
    if text is None:
        raise InvalidArgumentError(f"{path} carries no difftech recipe; only PNGs written by Result.save do")
    return Recipe.from_json(text)


class Session:
    """Loads a model once and runs every technique on it.

    ``Session()`` loads the bundled tiny-shapes model on the CPU; ``Session.from_pretrained`` a diffusers
    folder or hub id (SD 1.x/2.x ε and v, SDXL); ``Session.from_single_file`` an A1111-style checkpoint.
    """

    def __init__(self, model: ModelBundle | str | Path | None = None, *, device="auto", dtype="auto",
                 progress: bool = True, cache_size: int = 64):
        if not isinstance(model, ModelBundle):
            model = load_folder(bundled_model_path() if model is None else model, device, dtype)
        self.model = model
        self.progress = progress
        tokenizer_2, encoder_2 = (model.tokenizers[1], model.text_encoders[1]) if model.is_sdxl else (None, None)
        self.encoder = PromptEncoder(model.tokenizers[0], model.text_encoders[0], tokenizer_2, encoder_2,
                                     cache_size=cache_size)
        self._cancel = threading.Event()
        self._lock = threading.RLock()

    # ----------------------------------------------------------------------------------------------- loading
    @classmethod
    def from_pretrained(cls, id_or_path, *, device="auto", dtype="auto", **options) -> "Session":
        """A diffusers folder or hub id (``HF_HUB_OFFLINE=1`` is honoured)."""
        session_opts = {k: options.pop(k) for k in ("progress", "cache_size") if k in options}
        return cls(load_pretrained(id_or_path, device, dtype, **options), **session_opts)

    @classmethod
    def from_single_file(cls, path, *, device="auto", dtype="auto", allow_pickle: bool = False, config=None,
                         **session_opts) -> "Session":
        """A single-file checkpoint; pickles (.ckpt/.pt) only with ``allow_pickle=True`` (weights_only)."""
        return cls(load_single_file(path, device, dtype, allow_pickle=allow_pickle, config=config), **session_opts)

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
        self._check_size(width, height)
        f = self.model.vae_scale_factor
        return self.model.latent_channels, height // f, width // f

    def __repr__(self) -> str:
        return f"Session(model={self.model.name!r}, device={self.device.type}, dtype={str(self.dtype)[6:]})"

    # ----------------------------------------------------------------------------------------- primitives
    def cancel(self) -> None:
        """Stop the run in progress (from another thread or a widget) at its next step."""
        self._cancel.set()

    def encode_prompt(self, text: str) -> Embedding:
        """The weighted, chunked encoding of ``text`` (cached, bounded LRU)."""
        with record_function("difftech/encode_prompt"):
            return self.encoder.encode(text)

    def noise(self, seed: int, width: int | None = None, height: int | None = None, batch_size: int = 1):
        """Unit Gaussian latent noise; image ``i`` of a batch uses seed ``seed + i`` (so batches are stable)."""
        width, height = self._size(width, height)
        shape = self.latent_shape(width, height)
        return torch.stack([torch.randn(shape, generator=torch.Generator("cpu").manual_seed(int(seed) + i))
                            for i in range(batch_size)])

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> list:
        """Latents (scaled, as the spine holds them) to PIL images."""
        from PIL import Image

        vae = self.model.vae
        config = vae.config
        with record_function("difftech/decode"):
            z = latents.to(self.device, vae.dtype) / config.scaling_factor + (getattr(config, "shift_factor", None) or 0)
            pixels = vae.decode(z, return_dict=False)[0].float().clamp(-1, 1)
        array = ((pixels + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        return [Image.fromarray(a) for a in array]

    preview = decode

    @torch.no_grad()
    def encode(self, images) -> torch.Tensor:
        """PIL images (or one) to scaled latents, using the posterior mean so the result is deterministic."""
        pixels = self._pixels(images)
        vae = self.model.vae
        config = vae.config
        with record_function("difftech/encode_image"):
            mean = vae.encode(pixels.to(self.device, vae.dtype)).latent_dist.mean.float()
        return (mean - (getattr(config, "shift_factor", None) or 0)) * config.scaling_factor

    # ---------------------------------------------------------------------------------------- techniques
    def generate(self, prompt: str | Embedding = "", negative_prompt: str = "", *, width: int | None = None,
                 height: int | None = None, steps: int = 20, sampler: str = "euler", schedule: str = "default",
                 cfg: Curve | None = None, cfg_rescale: Curve = 0.0, threshold=None, seed: int = 0, batch_size: int = 1,
                 callback=None, noise: torch.Tensor | None = None, keep_trajectory: bool = False,
                 progress: bool | None = None, clip_skip: int = 1, sampler_options: dict | None = None,
                 schedule_options: dict | None = None) -> Result:
        """Text to image. ``cfg=None`` takes the model's recommended guidance scale (7.0 when it names none)."""
        width, height = self._size(width, height)
        recipe = self._recipe("txt2img", prompt, negative_prompt, width, height, steps, sampler, schedule, cfg,
                              cfg_rescale, threshold, seed, batch_size, clip_skip, sampler_options, schedule_options)
        sigmas, _ = self._sigmas(recipe)
        if noise is not None:  # given noise is part of what the result depends on
            noise = self._noise_input(noise, recipe)
            recipe.noise = array_to_dict(noise.numpy())
        else:
            noise = self.noise(recipe.seed, width, height, batch_size)
        x = self.model_sampling.noise_scaling(sigmas[0], noise, torch.zeros_like(noise))
        return self._run(recipe, sigmas, x, prompt, callback, keep_trajectory, progress)

    def img2img(self, image, prompt: str | Embedding = "", negative_prompt: str = "", *, strength: float = 0.6,
                steps: int = 20, sampler: str = "euler", schedule: str = "default", cfg: Curve | None = None,
                cfg_rescale: Curve = 0.0, threshold=None, seed: int = 0, batch_size: int = 1, callback=None,
                keep_trajectory: bool = False, progress: bool | None = None, clip_skip: int = 1,
                sampler_options: dict | None = None, schedule_options: dict | None = None, mask=None) -> Result:
        """Image to image: noise the encoded image to the strength's σ and run the last ``steps·strength`` steps.

        With ``mask`` (1 = regenerate, 0 = keep), this is inpainting: see ``inpaint``.
        """
        image = self._image(image)
        width, height = image.size
        if not isinstance(strength, (int, float)) or not 0.0 < strength <= 1.0:
            raise InvalidArgumentError(f"strength {strength!r} is outside (0, 1]; 0.3–0.5 keeps the composition, "
                                       "1.0 ignores the image")
        recipe = self._recipe("inpaint" if mask is not None else "img2img", prompt, negative_prompt, width, height,
                              steps, sampler, schedule, cfg, cfg_rescale, threshold, seed, batch_size, clip_skip,
                              sampler_options, schedule_options)
        recipe.strength = float(strength)
        recipe.init_image = image_to_text(image)
        mask_latent = None
        if mask is not None:
            mask_array = self._mask(mask, width, height)
            recipe.mask = array_to_dict(mask_array)
            mask_latent = self._mask_latent(mask_array)
        sigmas, start = self._sigmas(recipe)
        init = self.encode(image).expand(batch_size, -1, -1, -1)
        noise = self.noise(seed, width, height, batch_size)
        x = self.model_sampling.noise_scaling(sigmas[start], noise, init)
        return self._run(recipe, sigmas, x, prompt, callback, keep_trajectory, progress, start_step=start,
                         inpaint=(mask_latent, init, noise) if mask is not None else None)

    def inpaint(self, image, mask, prompt: str | Embedding = "", negative_prompt: str = "", *, strength: float = 1.0,
                **options) -> Result:
        """Regenerate where ``mask`` is 1 and keep the image where it is 0 (soft values blend).

        Works with any model: at every evaluation the kept region of x is replaced by the original noised to
        the current σ, and of x̂0 by the original (the denoiser-level form of diffusers' latent blending).
        """
        return self.img2img(image, prompt, negative_prompt, strength=strength, mask=mask, **options)

    def branch(self, result: Result, step: int, **overrides) -> Result:
        """Re-run the steps from ``step`` on, starting from the state stored in ``result``'s trajectory."""
        if result.recipe.sampler == "restart":
            raise InvalidArgumentError("a restart run's steps include its restart segments, so 'step k' is "
                                       "ambiguous; branch from a run of another sampler")
        if result.trajectory is None:
            raise InvalidArgumentError("this result has no trajectory; generate it with keep_trajectory=True "
                                       "to branch from a step")
        made = [event.i for event in result.trajectory]
        if not isinstance(step, int) or step not in made:
            raise InvalidArgumentError(f"step {step!r} is not one this run made ({made[0]}..{made[-1]}); branch "
                                       "from one of those")
        allowed = {"prompt", "negative_prompt", "sampler", "cfg", "cfg_rescale", "threshold", "sampler_options",
                   "seed", "clip_skip"}
        unknown = sorted(set(overrides) - allowed - {"callback", "keep_trajectory", "progress"})
        if unknown:
            raise InvalidArgumentError(f"cannot change {unknown} when branching; change one of {sorted(allowed)}")
        callback = overrides.pop("callback", None)
        keep = overrides.pop("keep_trajectory", False)
        progress = overrides.pop("progress", None)
        parent = result.recipe
        recipe = replace(parent, **{k: self._recipe_value(k, v, parent.steps) for k, v in overrides.items()})
        recipe.branch = {"parent": parent.to_dict(), "step": step}
        x = result.x_init if step == made[0] else result.trajectory[made.index(step) - 1].x
        sigmas = result.sigmas
        prompt = overrides.get("prompt", parent.prompt)
        child = self._run(recipe, sigmas, x.clone(), prompt, callback, keep, progress, start_step=step)
        if keep:  # the parent's steps before the branch point, so the child can be scrubbed and branched again
            child.trajectory = [event for event in result.trajectory if event.i < step] + child.trajectory
            child.x_init = result.x_init
        return child

    def run(self, recipe: Recipe | dict | str, **options) -> Result:
        """Reproduce a Result from its Recipe (bit for bit on the CPU)."""
        if isinstance(recipe, str):
            recipe = Recipe.from_json(recipe)
        elif isinstance(recipe, dict):
            recipe = Recipe.from_dict(recipe)
        if recipe.branch:
            parent = self.run(Recipe.from_dict(recipe.branch["parent"]), keep_trajectory=True, progress=False)
            changed = {k: getattr(recipe, k) for k in ("prompt", "negative_prompt", "sampler", "cfg", "cfg_rescale",
                                                       "threshold", "sampler_options", "seed", "clip_skip")
                       if getattr(recipe, k) != getattr(parent.recipe, k)}
            return self.branch(parent, recipe.branch["step"], **changed, **options)
        common = dict(steps=recipe.steps, sampler=recipe.sampler, schedule=recipe.schedule, cfg=recipe.cfg,
                      cfg_rescale=recipe.cfg_rescale, threshold=recipe.threshold, seed=recipe.seed,
                      batch_size=recipe.batch_size, clip_skip=recipe.clip_skip,
                      sampler_options=recipe.sampler_options, schedule_options=recipe.schedule_options, **options)
        prompt = recipe.prompt
        if recipe.prompt_embedding:
            pooled = recipe.prompt_embedding["pooled"]
            prompt = Embedding(hidden=torch.from_numpy(array_from_dict(recipe.prompt_embedding["hidden"])),
                               pooled=None if pooled is None else torch.from_numpy(array_from_dict(pooled)))
        if recipe.mode == "txt2img":
            noise = torch.from_numpy(array_from_dict(recipe.noise)) if recipe.noise else None
            return self.generate(prompt, recipe.negative_prompt, width=recipe.width, height=recipe.height,
                                 noise=noise, **common)
        if recipe.mode in ("img2img", "inpaint"):
            mask = array_from_dict(recipe.mask) if recipe.mask else None
            return self.img2img(image_from_text(recipe.init_image), prompt, recipe.negative_prompt,
                                strength=recipe.strength, mask=mask, **common)
        raise InvalidArgumentError(f"recipe mode {recipe.mode!r} is not one this version runs")

    # ------------------------------------------------------------------------------------------ the loop
    def _run(self, recipe: Recipe, sigmas, x, prompt, callback, keep_trajectory, progress, *, inpaint=None,
             start_step: int = 0) -> Result:
        timings = {}
        t0 = time.perf_counter()
        with self._lock:
            self._cancel.clear()
            with record_function("difftech/encode_prompt"):
                conditioning = self._conditioning(prompt, recipe)
            timings["encode_prompt"] = time.perf_counter() - t0
            denoiser = UNetDenoiser(self.model, width=recipe.width, height=recipe.height)
            model = denoiser if inpaint is None else _InpaintDenoiser(denoiser, self.model_sampling, *inpaint)
            guider = Guider(model, model_sampling=self.model_sampling, conditioning=conditioning, sigmas=sigmas,
                            cfg=recipe.cfg, cfg_rescale=recipe.cfg_rescale,
                            threshold=self._threshold(recipe.threshold))
            sampler = get_sampler(recipe.sampler)
            steps_total = len(sigmas) - 1
            monitor = _RunMonitor(guider, self._cancel, steps=steps_total, start=start_step, callback=callback,
                                  keep_trajectory=keep_trajectory, t0=t0,
                                  bar=self._progress_bar(progress, steps_total - start_step))
            x_init = x.clone() if keep_trajectory else None
            generator = torch.Generator("cpu").manual_seed(int(recipe.seed) + 0x5EED + start_step)
            t_sample = time.perf_counter()
            try:
                with torch.inference_mode():  # a few % faster than no_grad: no version counters
                    latents = sampler(monitor.denoise, x.to(self.device, torch.float32),
                                      sigmas[start_step:].to(self.device), generator=generator,
                                      callback=monitor.on_step, **recipe.sampler_options)
            finally:
                monitor.close()
                self._cancel.clear()
            if not torch.isfinite(latents).all():
                raise NumericalError("the final latent is NaN/inf; in fp16 use dtype=torch.float32, or lower cfg")
            timings["sampling"] = time.perf_counter() - t_sample
            t_dec = time.perf_counter()
            with torch.inference_mode():
                images = self.decode(latents)
            timings["decode"] = time.perf_counter() - t_dec
            timings["total"] = time.perf_counter() - t0
            latents = latents.clone()  # outside inference mode: an ordinary tensor users may edit or differentiate
            trajectory = None if monitor.trajectory is None else [
                replace(e, x=e.x.clone(), denoised=e.denoised.clone()) for e in monitor.trajectory]
        return Result(images=images, latents=latents.cpu(), recipe=recipe, nfe=guider.nfe, timings=timings,
                      sigmas=sigmas.cpu(), sigmas_used=monitor.sigmas_used + [0.0], trajectory=trajectory,
                      x_init=x_init)

    # ------------------------------------------------------------------------------------------- helpers
    def _progress_bar(self, progress, total):
        show = self.progress if progress is None else progress
        if not show:
            return None
        from tqdm.auto import tqdm

        return tqdm(total=total, leave=False, desc="sampling")

    def _conditioning(self, prompt, recipe: Recipe) -> Conditioning:
        if isinstance(prompt, Embedding):
            negative = self.encoder.conditioning("", recipe.negative_prompt, recipe.steps, clip_skip=recipe.clip_skip)
            return Conditioning(terms=[CondTerm.constant(prompt)], negative=negative.negative)
        return self.encoder.conditioning(prompt, recipe.negative_prompt, recipe.steps, clip_skip=recipe.clip_skip)

    def _recipe(self, mode, prompt, negative_prompt, width, height, steps, sampler, schedule, cfg, cfg_rescale,
                threshold, seed, batch_size, clip_skip, sampler_options, schedule_options) -> Recipe:
        get_sampler(sampler)  # unknown names fail before any work
        if not isinstance(steps, int) or steps < 1:
            raise InvalidArgumentError(f"steps {steps!r} must be a positive integer")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidArgumentError(f"batch_size {batch_size!r} must be a positive integer")
        if not isinstance(seed, (int, np.integer)):
            raise InvalidArgumentError(f"seed {seed!r} must be an integer")
        embedding = None
        if isinstance(prompt, Embedding):
            embedding = {"hidden": array_to_dict(prompt.hidden.float().cpu().numpy()),
                         "pooled": None if prompt.pooled is None else array_to_dict(prompt.pooled.float().cpu().numpy())}
        elif not isinstance(prompt, str):
            raise InvalidArgumentError(f"prompt must be a str or an Embedding (session.encode_prompt), got "
                                       f"{type(prompt).__name__}")
        return Recipe(
            prompt_embedding=embedding,
            mode=mode, prompt=prompt if isinstance(prompt, str) else "<embedding>", negative_prompt=negative_prompt,
            width=width, height=height, steps=steps, sampler=sampler, sampler_options=dict(sampler_options or {}),
            schedule=schedule, schedule_options=dict(schedule_options or {}),
            cfg=self._recipe_value("cfg", self.model.default_cfg if cfg is None else cfg, steps), cfg_rescale=self._recipe_value("cfg_rescale", cfg_rescale, steps),
            threshold=self._recipe_value("threshold", threshold, steps), seed=int(seed), batch_size=batch_size,
            clip_skip=clip_skip, model=self.model.name)

    @staticmethod
    def _recipe_value(name, value, steps):
        """Curves become one value per step; thresholds become ``{"kind": ..., **parameters}``."""
        if name in ("cfg", "cfg_rescale"):
            if isinstance(value, (int, float)):
                return float(value)
            return curve_values(value, steps, name)
        if name == "threshold":
            if value is None or isinstance(value, dict):
                return value
            if isinstance(value, str):
                return {"kind": value}
            if is_dataclass(value):
                kind = next((k for k, cls in THRESHOLDS.items() if isinstance(value, cls)), None)
                if kind is not None:
                    return {"kind": kind, **asdict(value)}
            raise InvalidArgumentError(f"threshold {value!r} is not one of None, {sorted(THRESHOLDS)}, a dict "
                                       "{'kind': ..., ...} or a DynamicThreshold/MimicThreshold")
        return value

    @staticmethod
    def _threshold(spec):
        if spec is None:
            return None
        spec = dict(spec)
        kind = spec.pop("kind", None)
        if kind not in THRESHOLDS:
            from .errors import UnknownNameError

            raise UnknownNameError("threshold", str(kind), THRESHOLDS)
        return THRESHOLDS[kind](**spec)

    def _sigmas(self, recipe: Recipe) -> tuple[torch.Tensor, int]:
        """The full planned schedule and the step to start from (img2img starts part-way)."""
        sigmas = make_sigmas(recipe.schedule, self.model_sampling, recipe.steps, **recipe.schedule_options)
        if recipe.strength is not None:
            # diffusers' img2img rule: run the last int(steps·strength) steps of the full schedule
            run = min(int(recipe.steps * recipe.strength), recipe.steps)
            if run < 1:
                raise InvalidArgumentError(
                    f"strength {recipe.strength} with steps {recipe.steps} runs no step; raise steps or strength so "
                    "that steps·strength ≥ 1")
            return sigmas.float(), recipe.steps - run
        return sigmas.float(), 0

    def _size(self, width, height) -> tuple[int, int]:
        dw, dh = self.default_size
        width, height = width or dw, height or dh
        self._check_size(width, height)
        return int(width), int(height)

    def _check_size(self, width, height) -> None:
        m = self.model.size_multiple
        for name, value in (("width", width), ("height", height)):
            if not isinstance(value, (int, np.integer)) or value < m or value % m:
                near = max(m, int(round((value if isinstance(value, (int, float)) else m) / m)) * m)
                raise InvalidArgumentError(
                    f"{name} {value!r} is not a positive multiple of {m}, which this model's VAE and UNet need; "
                    f"use {near}")

    def _noise_input(self, noise, recipe: Recipe) -> torch.Tensor:
        expected = (recipe.batch_size, *self.latent_shape(recipe.width, recipe.height))
        if not isinstance(noise, torch.Tensor):
            raise InvalidArgumentError(f"noise must be a torch.Tensor of shape {expected}, got {type(noise).__name__}")
        if noise.dim() == 3:
            noise = noise.unsqueeze(0)
        if tuple(noise.shape) != expected:
            raise ShapeError(f"noise has shape {tuple(noise.shape)}, but {recipe.width}x{recipe.height} with "
                             f"batch_size {recipe.batch_size} needs {expected}")
        return noise.float().cpu()

    def _image(self, image):
        from PIL import Image

        if isinstance(image, (str, Path)):
            image = Image.open(image)
        if isinstance(image, np.ndarray):
            if image.ndim != 3 or image.shape[2] not in (3, 4):
                raise ShapeError(f"image array has shape {image.shape}; give H×W×3 uint8 (or a PIL image)")
            image = Image.fromarray(image.astype(np.uint8))
        if not isinstance(image, Image.Image):
            raise InvalidArgumentError(f"image must be a PIL image, an H×W×3 array or a path, got "
                                       f"{type(image).__name__}")
        image = image.convert("RGB")
        self._check_size(*image.size)
        return image

    def _pixels(self, images) -> torch.Tensor:
        images = [images] if not isinstance(images, (list, tuple)) else images
        arrays = [np.asarray(self._image(im), dtype=np.float32) for im in images]
        if len({a.shape for a in arrays}) != 1:
            raise ShapeError(f"images have different sizes {[a.shape[:2] for a in arrays]}; give one size")
        return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2) / 127.5 - 1

    @staticmethod
    def _mask(mask, width, height) -> np.ndarray:
        from PIL import Image

        if isinstance(mask, Image.Image):
            mask = np.asarray(mask.convert("L"), dtype=np.float32) / 255.0
        elif isinstance(mask, torch.Tensor):
            mask = mask.detach().float().cpu().numpy()
        mask = np.asarray(mask, dtype=np.float32).squeeze()
        if mask.shape != (height, width):
            raise ShapeError(f"mask has shape {mask.shape}, but the image is {height}×{width} (H×W); give a mask of "
                             "the image's size (MaskPainter(image).mask is)")
        if not np.isfinite(mask).all() or mask.min() < 0 or mask.max() > 1:
            raise InvalidArgumentError(f"mask values span [{mask.min():.3g}, {mask.max():.3g}]; they must lie in "
                                       "[0, 1] (1 = regenerate)")
        return mask

    def _mask_latent(self, mask: np.ndarray) -> torch.Tensor:
        f = self.model.vae_scale_factor
        m = torch.from_numpy(mask)[None, None]
        return torch.nn.functional.avg_pool2d(m, f).to(self.device)  # area resize keeps the mask's mean


class _RunMonitor:
    """Sits between a sampler and the guider for one run: profiler step ranges, the σ's visited, step events,
    the trajectory, the progress bar, NaN checks and cancellation."""

    def __init__(self, guider, cancel: threading.Event, *, steps, start, callback, keep_trajectory, t0, bar):
        self.guider, self.cancel, self.steps, self.start = guider, cancel, steps, start
        self.callback, self.t0, self.bar = callback, t0, bar
        self.trajectory = [] if keep_trajectory else None
        self.sigmas_used: list[float] = []
        self._range = None  # the open "difftech/step" range: opened by a step's first call, closed by its event

    def denoise(self, x, sigma):
        """The denoiser the sampler sees; records every σ the network saw (churn, Heun points, restart jumps)."""
        if self._range is None:
            self._range = record_function("difftech/step")
            self._range.__enter__()
        level = float(sigma.flatten()[0])
        if not self.sigmas_used or self.sigmas_used[-1] != level:
            self.sigmas_used.append(level)
        return self.guider(x, sigma)

    def on_step(self, info: dict) -> None:
        self._close_range()
        i = int(info["i"]) + self.start
        if not torch.isfinite(info["x"]).all():
            raise NumericalError(f"the latent became NaN/inf at step {i} (σ={float(info['sigma']):.4g}); in fp16 "
                                 "use dtype=torch.float32 or bfloat16, or lower cfg")
        event = StepEvent(i=i, steps=self.steps, sigma=float(info["sigma"]),
                          sigma_hat=float(info.get("sigma_hat", info["sigma"])), x=info["x"],
                          denoised=info["denoised"], nfe=self.guider.nfe, elapsed=time.perf_counter() - self.t0,
                          guidance=dict(self.guider.last or {}))
        if self.trajectory is not None:
            self.trajectory.append(replace(event, x=event.x.detach().clone(), denoised=event.denoised.detach().clone()))
        if self.bar is not None:
            self.bar.update(1)
        if self.callback is not None:
            self.callback(event)
        if self.cancel.is_set():
            raise CancelledError(f"run cancelled at step {i} of {self.steps}; the session is ready for the next call")

    def close(self) -> None:
        self._close_range()
        if self.bar is not None:
            self.bar.close()

    def _close_range(self) -> None:
        if self._range is not None:
            self._range.__exit__(None, None, None)
            self._range = None


class _InpaintDenoiser:
    """Keeps the unmasked region: x is reset there to the original noised to σ, and x̂0 to the original."""

    def __init__(self, inner, model_sampling, mask, init, noise):
        self.inner, self.model_sampling = inner, model_sampling
        self.mask, self.init, self.noise = mask, init.to(mask.device), noise.to(mask.device)

    def __call__(self, x, sigma, hidden, pooled=None):
        rows = x.shape[0] // self.init.shape[0]
        mask, init = self.mask, self.init.repeat(rows, 1, 1, 1)
        noise = self.noise.repeat(rows, 1, 1, 1)
        s = sigma.view(-1, 1, 1, 1)
        x = x * mask + self.model_sampling.noise_scaling(s, noise, init) * (1 - mask)
        denoised = self.inner(x, sigma, hidden, pooled)
        return denoised * mask + init * (1 - mask)
