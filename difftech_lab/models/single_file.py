"""Single-file checkpoints (the A1111/Civitai layout) read through diffusers' converters."""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from ..errors import ModelLoadError


def _state_dict(path: Path, allow_pickle: bool) -> dict:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as err:
            raise ModelLoadError(f"{path} is not a readable safetensors file ({err}); re-download it") from err
    assert allow_pickle  # the caller refused pickles unless the user allowed them
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:
        raise ModelLoadError(f"{path} could not be read as a weights-only checkpoint ({err}); a checkpoint that "
                             "needs full unpickling is refused: convert it to .safetensors where you trust it") from err
    return state.get("state_dict", state)


def convert_single_file(path: Path, *, config=None, allow_pickle: bool = False) -> Path:
    """Convert ``path`` to a diffusers folder (in a temporary directory) and return the folder.

    Pickles are first re-read with ``weights_only=True`` and re-written as safetensors, so diffusers never
    unpickles anything itself.
    """
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    state = _state_dict(path, allow_pickle)
    scratch = Path(tempfile.mkdtemp(prefix="difftech-single-file-"))
    if path.suffix != ".safetensors":
        from safetensors.torch import save_file

        safe = scratch / (path.stem + ".safetensors")
        save_file({k: v.contiguous() for k, v in state.items() if isinstance(v, torch.Tensor)}, str(safe))
        path = safe
    is_sdxl = any(key.startswith("conditioner.embedders.1") for key in state)
    if not any(key.startswith("model.diffusion_model.") for key in state):
        raise ModelLoadError(f"{path.name} is not a Stable Diffusion checkpoint: it has no model.diffusion_model.* "
                             "weights; give a full SD 1.x/2.x/SDXL checkpoint, or a diffusers folder")
    pipeline_class = StableDiffusionXLPipeline if is_sdxl else StableDiffusionPipeline
    options = {"config": str(config)} if config is not None else {}
    if not is_sdxl:
        options.update(safety_checker=None, requires_safety_checker=False)
    try:
        pipe = pipeline_class.from_single_file(str(path), **options)
    except Exception as err:
        raise ModelLoadError(f"could not convert {path.name} ({type(err).__name__}: {err}). Offline, pass "
                             "config=<a local diffusers folder of the same architecture>") from err
    out = scratch / "diffusers"
    pipe.save_pretrained(out, safe_serialization=True)
    return out
