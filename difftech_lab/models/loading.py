"""Loading models: diffusers folders, hub ids, single-file checkpoints, the bundled model."""

from __future__ import annotations

import hashlib
import importlib
import json
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import torch

from ..errors import BundledModelMissingError, InvalidArgumentError, ModelLoadError, UnsafeCheckpointError
from .grounding import is_grounding_folder, load_grounding_folder
from .identity import weights_hash
from .parameterization import ModelSampling, model_sampling_from_config
from .single_file import convert_single_file

BUNDLED_MODEL = Path(__file__).resolve().parent.parent / "bundled" / "tiny-shapes"
# the bundled model with GLIGEN grounding trained on free layouts (its new weights only; the base beside it)
BUNDLED_GROUNDED = BUNDLED_MODEL.parent / "tiny-shapes-gligen"
BUNDLED_NAMES = {"tiny-shapes": BUNDLED_MODEL, "tiny-shapes-gligen": BUNDLED_GROUNDED}
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
SINGLE_FILE_SUFFIXES = (".safetensors", *PICKLE_SUFFIXES)
_MODEL_FORMS = ("None or 'tiny-shapes' (the bundled model), 'tiny-shapes-gligen' (it with grounding), a diffusers folder, a single-file checkpoint (.safetensors; "
                f"{'/'.join(PICKLE_SUFFIXES)} with allow_pickle=True) or a hub id ('owner/name')")
_OPTION_FORMS = {"config": "single-file checkpoints", "variant": "folders and hub ids"}  # any other: hub ids


@dataclass
class ModelBundle:
    """The components of one text-to-image model, on one device, plus what the spine needs to drive them."""

    name: str
    source: str
    unet: torch.nn.Module
    vae: torch.nn.Module
    tokenizers: list
    text_encoders: list
    scheduler_config: dict
    model_sampling: ModelSampling
    device: torch.device
    dtype: torch.dtype
    extras: dict = field(default_factory=dict)

    @cached_property
    def identity(self) -> str:
        """The content hash of the weights this model was loaded from ("" for a model built in memory); a
        grounding folder's identity covers its base model's weights too."""
        own = weights_hash(self.source)
        if "base_source" not in self.extras or not own:
            return own
        joined = f"{weights_hash(self.extras['base_source'])}+{own}".encode()
        return hashlib.sha256(joined).hexdigest()[:len(own)]

    @property
    def version(self) -> str:
        """The version its model folder names (``difftech.json``), or ""."""
        return str(self.extras.get("defaults", {}).get("version", ""))

    @property
    def is_sdxl(self) -> bool:
        return len(self.text_encoders) == 2

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def latent_channels(self) -> int:
        return int(self.vae.config.latent_channels)

    @property
    def size_multiple(self) -> int:
        """Pixel sizes must be multiples of this: the VAE factor times the UNet's total downsampling."""
        return self.vae_scale_factor * 2 ** (len(self.unet.config.block_out_channels) - 1)

    @property
    def default_cfg(self) -> float:
        """The guidance scale the model's folder recommends (``difftech.json``), else Stable Diffusion's 7.0."""
        return float(self.extras.get("defaults", {}).get("cfg", 7.0))

    @property
    def trained_tokens(self) -> int | None:
        """The longest caption its text encoder was trained on, in tokens (``difftech.json``), where the folder says."""
        value = self.extras.get("defaults", {}).get("caption_tokens")
        return None if value is None else int(value)

    @property
    def default_size(self) -> tuple[int, int]:
        side = int(self.unet.config.sample_size) * self.vae_scale_factor
        return side, side


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except RuntimeError as err:
        raise InvalidArgumentError(f"device {device!r} is not a torch device; use 'auto', 'cpu' or 'cuda'") from err


def resolve_dtype(dtype, device: torch.device) -> torch.dtype:
    """fp16 on CUDA (bf16 where the GPU has it is the caller's choice), fp32 on the CPU."""
    if dtype in (None, "auto"):
        return torch.float16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype, None)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise InvalidArgumentError(f"dtype {dtype!r} is not a floating torch dtype; use 'auto', torch.float32, "
                                   "torch.float16 or torch.bfloat16")
    return dtype


def _component_class(library: str, class_name: str):
    try:
        return getattr(importlib.import_module(library), class_name)
    except (ImportError, AttributeError) as err:
        raise ModelLoadError(f"model_index.json names {library}.{class_name}, which this environment does not "
                             f"have; upgrade {library}") from err


@contextmanager
def _quiet_loading():
    """No per-file progress bars while loading: they would fill notebooks (and nbval) with stderr noise."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    states = [(m, m.is_progress_bar_enabled()) for m in (diffusers_logging, transformers_logging)]
    for module, _ in states:
        module.disable_progress_bar()
    try:
        yield
    finally:
        for module, enabled in states:
            if enabled:
                module.enable_progress_bar()


def _load_component(folder: Path, name: str, spec, dtype, variant=None):
    library, class_name = spec
    cls = _component_class(library, class_name)
    sub = folder / name
    try:
        if "Tokenizer" in class_name:
            return cls.from_pretrained(sub)
        kwargs = {"torch_dtype": dtype, **({"variant": variant} if variant else {})}
        module = cls.from_pretrained(sub, **kwargs)
    except Exception as err:  # every loader error becomes one typed error naming the component
        raise ModelLoadError(f"could not load {name!r} ({class_name}) from {sub}: {err}. The folder may be "
                             "corrupt or incomplete; re-download or re-save the model") from err
    return module


def load_folder(folder: str | os.PathLike, device="auto", dtype="auto", name: str | None = None,
                variant: str | None = None) -> ModelBundle:
    """Load a diffusers pipeline folder (``model_index.json`` with unet, vae, tokenizer(s), text encoder(s))."""
    folder = Path(folder)
    index_file = folder / "model_index.json"
    if not index_file.is_file():
        raise ModelLoadError(f"{folder} is not a diffusers model folder: model_index.json is missing; give the "
                             "folder that save_pretrained wrote, or a hub id")
    try:
        index = json.loads(index_file.read_text())
    except json.JSONDecodeError as err:
        raise ModelLoadError(f"{index_file} is not valid JSON ({err}); re-download or re-save the model") from err
    device = resolve_device(device)
    dtype = resolve_dtype(dtype, device)
    missing = [c for c in ("unet", "vae", "text_encoder", "tokenizer", "scheduler") if not index.get(c)]
    if missing:
        raise ModelLoadError(f"{index_file} lacks the components {missing}; difftech_lab needs a UNet text-to-image "
                             "pipeline (SD 1.x, SD 2.x, SDXL)")
    wanted = [p for p in ("unet", "vae", "text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2")
              if index.get(p) and index[p][0] is not None]
    absent = [p for p in wanted + ["scheduler"] if not (folder / p).is_dir()]
    if absent:  # say everything that is missing at once, before spending time loading the rest
        raise ModelLoadError(f"model folder {folder} is incomplete: component folder(s) {absent} are missing; "
                             "re-download or re-save the model")
    with _quiet_loading():
        parts = {part: _load_component(folder, part, index[part], dtype, variant) for part in wanted}
    scheduler_file = folder / "scheduler" / "scheduler_config.json"
    if not scheduler_file.is_file():
        raise ModelLoadError(f"model folder {folder} is incomplete: scheduler/scheduler_config.json is missing")
    defaults_file = folder / "difftech.json"  # optional: settings the model was evaluated with
    defaults = json.loads(defaults_file.read_text()) if defaults_file.is_file() else {}
    return bundle_from_parts(parts, json.loads(scheduler_file.read_text()), name=name or folder.name,
                             source=str(folder), device=device, dtype=dtype, defaults=defaults)


def bundle_from_parts(parts: dict, scheduler_config: dict, *, name: str, source: str, device: torch.device,
                      dtype: torch.dtype, defaults: dict | None = None) -> ModelBundle:
    """A ModelBundle from pipeline components (``unet``, ``vae``, ``text_encoder``, ``tokenizer`` [, ``_2``])."""
    for part, module in parts.items():
        if isinstance(module, torch.nn.Module):
            # a module loaded with torch_dtype only moves: diffusers warns on every .to(dtype), even a no-op one
            same = all(p.dtype == dtype for p in module.parameters())
            (module.to(device) if same else module.to(device, dtype)).eval()
    if dtype == torch.float16 and getattr(parts["vae"].config, "force_upcast", True):
        parts["vae"].to(torch.float32)  # the SD VAE overflows in fp16 (diffusers' force_upcast)
    encoders = [parts["text_encoder"]] + ([parts["text_encoder_2"]] if parts.get("text_encoder_2") else [])
    tokenizers = [parts["tokenizer"]] + ([parts["tokenizer_2"]] if parts.get("tokenizer_2") else [])
    return ModelBundle(
        extras={"defaults": defaults or {}},
        name=name, source=source, unet=parts["unet"], vae=parts["vae"], tokenizers=tokenizers,
        text_encoders=encoders, scheduler_config=dict(scheduler_config),
        model_sampling=model_sampling_from_config(dict(scheduler_config)), device=device, dtype=dtype,
    )


def load_pretrained(id_or_path: str | os.PathLike, device="auto", dtype="auto", *, variant: str | None = None,
                    **hub_options) -> ModelBundle:
    """A local diffusers folder, or a hub id fetched (or found in the cache) with huggingface_hub.

    ``variant="fp16"`` takes the repo's ``*.fp16.safetensors`` weights (half the download).
    """
    path = Path(id_or_path).expanduser()
    if path.exists():
        return load_folder(path, device, dtype, variant=variant)
    if os.sep in str(id_or_path) and str(id_or_path).count("/") > 1:
        raise ModelLoadError(f"model folder {id_or_path} does not exist")
    from huggingface_hub import snapshot_download

    # Only what a pipeline folder needs: repos also hold multi-GB single-file copies and pickles at the root.
    weights = ["diffusion_pytorch_model", "model"]
    suffix = f".{variant}.safetensors" if variant else ".safetensors"
    patterns = ["model_index.json", "*/*.json", "*/*.txt", "*/*.model",
                *[f"*/{w}{suffix}" for w in weights], *[f"*/{w}-*{suffix}" for w in weights]]
    try:
        local = snapshot_download(str(id_or_path), allow_patterns=patterns, **hub_options)
    except Exception as err:
        raise ModelLoadError(
            f"{id_or_path!r} is no local folder, and fetching it from the hub failed ({type(err).__name__}: {err}). "
            "Check the path or id; offline, download it first (huggingface-cli download ID)") from err
    return load_folder(local, device, dtype, name=str(id_or_path), variant=variant)


def load_single_file(path: str | os.PathLike, device="auto", dtype="auto", *, allow_pickle: bool = False,
                     config: str | os.PathLike | None = None) -> ModelBundle:
    """A single-file checkpoint (A1111/Civitai layout). ``config``: a diffusers folder or hub id for its configs."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ModelLoadError(f"checkpoint {path} does not exist")
    if path.suffix in PICKLE_SUFFIXES and not allow_pickle:
        raise UnsafeCheckpointError(
            f"{path.name} is a pickled checkpoint: loading a pickle can run arbitrary code. Convert it to "
            ".safetensors, or pass allow_pickle=True if you trust its source (it then loads with weights_only=True)")
    device = resolve_device(device)
    dtype = resolve_dtype(dtype, device)
    with _quiet_loading():
        pipe = convert_single_file(path, config=config, allow_pickle=allow_pickle)
    parts = {part: getattr(pipe, part, None) for part in
             ("unet", "vae", "text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2")}
    return bundle_from_parts(parts, pipe.scheduler.config, name=path.stem, source=str(path), device=device,
                             dtype=dtype)


def load_model(spec: str | os.PathLike | None = None, *, device="auto", dtype="auto", allow_pickle: bool = False,
               config: str | os.PathLike | None = None, variant: str | None = None, **hub_options) -> ModelBundle:
    """Any model spec: ``None`` (the bundled model), a diffusers folder, a single-file checkpoint or a hub id.

    What exists locally wins over a hub id of the same name. ``allow_pickle`` permits a pickled single file (read
    with ``weights_only=True``) and is moot for the other forms, so one call can serve whatever spec a user gives.
    ``config`` (a folder or hub id holding the configs) applies to single files only, ``variant`` (``"fp16"``) to
    folders and hub ids, ``hub_options`` (``revision``, ``cache_dir`` …) to hub ids.
    """
    if spec is None:
        spec = bundled_model_path()
    if not isinstance(spec, (str, os.PathLike)):
        raise InvalidArgumentError(f"model {spec!r} is a {type(spec).__name__}; pass {_MODEL_FORMS}")
    text = os.fspath(spec)
    if not text.strip():  # Path("") is the working directory, which is never what an empty setting means
        raise InvalidArgumentError(f"model {spec!r} is empty; pass {_MODEL_FORMS}")
    path = Path(text).expanduser()
    if path.is_file():
        if path.suffix not in SINGLE_FILE_SUFFIXES:
            raise ModelLoadError(f"{path} is not a checkpoint (its suffix is not one of {SINGLE_FILE_SUFFIXES}); "
                                 f"for a diffusers model give its folder. Pass {_MODEL_FORMS}")
        _refuse_options(f"the single file {path}", variant=variant, **hub_options)
        return load_single_file(path, device, dtype, allow_pickle=allow_pickle, config=config)
    if not path.exists() and text in BUNDLED_NAMES:
        path = BUNDLED_NAMES[text]
        if not path.is_dir():
            raise BundledModelMissingError(f"the bundled model {text!r} is not installed at {path}; reinstall "
                                           "difftech_lab")
    if path.is_dir():
        _refuse_options(f"the folder {path}", config=config, **hub_options)
        if is_grounding_folder(path):
            _refuse_options(f"the grounding folder {path}", variant=variant)
            return load_grounding_folder(path, load_folder, device, dtype)
        return load_folder(path, device, dtype, variant=variant)
    if isinstance(spec, os.PathLike) or path.suffix in SINGLE_FILE_SUFFIXES or not _is_hub_id(text):
        raise ModelLoadError(f"model {text!r} is no existing folder or file, nor a hub id; pass {_MODEL_FORMS}")
    _refuse_options(f"the hub id {text!r}", config=config)
    return load_pretrained(text, device, dtype, variant=variant, **hub_options)


def _is_hub_id(text: str) -> bool:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(text)
    except HFValidationError:
        return False
    return True


def _refuse_options(what: str, **options) -> None:
    """An option that means nothing for the spec given is a mistake to report, not to drop silently."""
    for name, value in options.items():
        if value is not None:
            raise InvalidArgumentError(f"{name}={value!r} applies to {_OPTION_FORMS.get(name, 'hub ids')} only, not "
                                       f"to {what}; drop it")


def bundled_model_path() -> Path:
    """The folder of the bundled tiny-shapes model, or a typed error saying it is not installed."""
    if not (BUNDLED_MODEL / "model_index.json").is_file():
        raise BundledModelMissingError(
            f"the bundled model is not installed at {BUNDLED_MODEL}. Reinstall difftech_lab, or train it with "
            "`python -m difftech_lab.training`, or pass a model: Session.from_pretrained(PATH_OR_ID)")
    return BUNDLED_MODEL
