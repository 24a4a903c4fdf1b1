"""Single-file checkpoints (the A1111/Civitai layout) read through diffusers' converters."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import torch

from ..errors import ModelLoadError, UnsafeCheckpointError
from .ldm_layout import SDXL_OPEN_CLIP_PREFIX, UNET_PREFIX, VAE_PREFIX, ldm_state_dict


def _is_safetensors(path: Path) -> bool:
    """By name, or by content: safetensors open with an 8-byte header length and a JSON header, pickles do not."""
    with open(path, "rb") as handle:
        return path.suffix == ".safetensors" or handle.read(9)[8:] == b"{"


def _shapes(path: Path) -> dict:
    """Every tensor name and shape of a safetensors file, read from its header (which also proves the file whole)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as handle:
            return {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
    except Exception as err:
        raise ModelLoadError(f"{path} is not a readable safetensors file ({err}); it may be truncated or corrupt: "
                             "re-download it") from err


def _tensors(path: Path, keys) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as handle:
        return {key: handle.get_tensor(key) for key in keys}


def _pickle_to_safetensors(path: Path, scratch: Path) -> Path:
    """Read a pickle with ``weights_only=True`` and re-write its tensors as safetensors, so nothing else unpickles."""
    from safetensors.torch import save_file

    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:
        raise ModelLoadError(f"{path} could not be read as a weights-only checkpoint ({err}); it may be truncated, "
                             "or need full unpickling, which is refused: convert it to .safetensors where you "
                             "trust it") from err
    while isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ModelLoadError(f"{path} holds a {type(state).__name__}, not a state dict; give a Stable Diffusion "
                             "checkpoint")
    tensors, storages = {}, set()
    for key, value in state.items():
        if isinstance(value, torch.Tensor):
            storage = value.untyped_storage().data_ptr()  # safetensors refuses tensors that share storage
            tensors[key] = value.contiguous() if storage not in storages else value.clone()
            storages.add(storage)
    safe = scratch / (path.stem + ".safetensors")
    save_file(tensors, str(safe))
    return safe


def _sdxl_open_clip(path: Path, config: str, shapes: dict, local: bool):
    """SDXL's OpenCLIP encoder, converted with diffusers' OpenCLIP converter.

    diffusers picks the converter for each encoder by its width, so when both encoders are equally wide (never in
    the released SDXL, but in small test models) it would give both the CLIP-L weights; naming it avoids that.
    """
    from diffusers.loaders.single_file_utils import convert_open_clip_checkpoint
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    encoder_config = CLIPTextConfig.from_pretrained(config, subfolder="text_encoder_2", local_files_only=local)
    model = CLIPTextModelWithProjection(encoder_config)
    checkpoint = _tensors(path, [k for k in shapes if k.startswith(SDXL_OPEN_CLIP_PREFIX)])
    state = convert_open_clip_checkpoint(model, checkpoint, prefix=SDXL_OPEN_CLIP_PREFIX)
    if not hasattr(model, "text_model"):  # transformers >= 5.6 flattened some CLIP text models
        state = {k.removeprefix("text_model."): v for k, v in state.items()}
    model.load_state_dict(state, strict=True)
    return model.eval()


def _vae_tolerant(key: str, shape) -> tuple:
    """VAE shapes without trailing 1s: diffusers reads its attention as 1×1 convolutions or as linear layers."""
    shape = tuple(shape)
    while key.startswith(VAE_PREFIX) and shape and shape[-1] == 1:
        shape = shape[:-1]
    return shape


def _check_architecture(name: str, shapes: dict, config: str, local: bool, is_sdxl: bool) -> None:
    """Every weight the config's architecture needs must be in the file with its shape.

    diffusers would leave a weight it finds no key for uninitialised, and fail later with an obscure error (or run
    on noise); the config's models are built on the meta device, so this costs no memory.
    """
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    def encoder(cls, subfolder):
        return cls(CLIPTextConfig.from_pretrained(config, subfolder=subfolder, local_files_only=local))

    try:
        with torch.device("meta"):
            unet = UNet2DConditionModel.from_config(
                UNet2DConditionModel.load_config(config, subfolder="unet", local_files_only=local))
            vae = AutoencoderKL.from_config(AutoencoderKL.load_config(config, subfolder="vae", local_files_only=local))
            encoders = [encoder(CLIPTextModel, "text_encoder")]
            if is_sdxl:
                encoders.append(encoder(CLIPTextModelWithProjection, "text_encoder_2"))
        expected = ldm_state_dict(unet, vae, encoders)
    except (OSError, ValueError) as err:  # InvalidArgumentError is a ValueError
        raise ModelLoadError(f"config={config} is not a usable SD 1.x/2.x/SDXL diffusers folder ({err}); pass the "
                             "folder that save_pretrained wrote for a model of this checkpoint's architecture") from err
    missing = [key for key in expected if key not in shapes]
    if missing:
        raise ModelLoadError(
            f"{name} lacks {len(missing)} weight(s) that the architecture of config={config} needs, e.g. "
            f"{missing[:3]}; pass a diffusers folder of the same architecture (SD 1.x / 2.x / SDXL, same variant), "
            "or a full checkpoint (UNet, VAE and text encoders)")
    wrong = [k for k, v in expected.items() if _vae_tolerant(k, v.shape) != _vae_tolerant(k, shapes[k])]
    if wrong:
        raise ModelLoadError(
            f"{name} does not fit the architecture of config={config}: {wrong[0]} is {shapes[wrong[0]]} in the "
            f"file, {tuple(expected[wrong[0]].shape)} in the config ({len(wrong)} such); pass a diffusers folder "
            "of the same architecture")


def convert_single_file(path: Path, *, config=None, allow_pickle: bool = False):
    """Convert ``path`` to a diffusers pipeline in memory and return it.

    ``config``: a diffusers folder (or hub id) of the same architecture, from which the component configs,
    tokenizers and scheduler are taken; a local folder makes the conversion fully offline. Pickles are first
    re-read with ``weights_only=True`` and re-written as safetensors, so diffusers never unpickles anything itself.
    """
    scratch = Path(tempfile.mkdtemp(prefix="difftech-single-file-"))  # only a re-written pickle goes here
    try:
        return _convert(Path(path), scratch, config, allow_pickle)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _convert(source: Path, scratch: Path, config, allow_pickle: bool):
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    path = source
    if not _is_safetensors(source):
        if not allow_pickle:
            raise UnsafeCheckpointError(
                f"{source.name} is not a safetensors file, so it is a pickle, and loading a pickle can run arbitrary "
                "code. Convert it to .safetensors, or pass allow_pickle=True if you trust its source")
        path = _pickle_to_safetensors(source, scratch)
    shapes = _shapes(path)
    if not any(key.startswith(UNET_PREFIX) for key in shapes):
        raise ModelLoadError(f"{source.name} is not a Stable Diffusion checkpoint: it has no {UNET_PREFIX}* "
                             "weights; give a full SD 1.x/2.x/SDXL checkpoint, or a diffusers folder")
    is_sdxl = any(key.startswith(SDXL_OPEN_CLIP_PREFIX) for key in shapes)
    options = {}
    if config is not None:
        local = Path(config).expanduser().is_dir()
        looks_local = Path(config).is_absolute() or str(config).startswith((".", "~")) or str(config).count("/") > 1
        if not local and looks_local:
            raise ModelLoadError(f"config folder {config} does not exist; pass a local diffusers folder (or a hub id)")
        config = str(Path(config).expanduser()) if local else str(config)
        options.update(config=config, local_files_only=local)  # a local folder never needs the network
        _check_architecture(source.name, shapes, config, local, is_sdxl)
    try:
        if is_sdxl and config is not None:
            options["text_encoder_2"] = _sdxl_open_clip(path, config, shapes, local)
        if not is_sdxl:
            options.update(safety_checker=None, requires_safety_checker=False)
        pipeline_class = StableDiffusionXLPipeline if is_sdxl else StableDiffusionPipeline
        pipe = pipeline_class.from_single_file(str(path), **options)
    except Exception as err:
        hint = ("check that it is the same architecture as this checkpoint" if config is not None else
                "offline, pass config=<a local diffusers folder of the same architecture>")
        raise ModelLoadError(f"could not convert {source.name} ({type(err).__name__}: {err}); {hint}") from err
    return pipe
