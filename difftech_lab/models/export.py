"""Export a model as one single-file checkpoint in the original LDM layout (what A1111 and ComfyUI load)."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..errors import InvalidArgumentError
from .ldm_layout import ldm_state_dict
from .loading import ModelBundle, load_folder


def save_single_file(model, path: str | os.PathLike, *, dtype: torch.dtype | None = None) -> Path:
    """Write ``model`` (a ModelBundle or a diffusers folder) as one ``.safetensors`` checkpoint in the LDM layout.

    ``dtype``: cast the weights (``torch.float16`` halves the file, as A1111's "pruned fp16" files do);
    the default keeps the model's own dtype. Scheduler and tokenizers are not part of the format.
    """
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise InvalidArgumentError(f"single-file checkpoints are written as safetensors; name the file "
                                   f"{path.with_suffix('.safetensors').name!r} instead of {path.name!r}")
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise InvalidArgumentError(f"dtype {dtype!r} is not a floating torch dtype; use torch.float16, "
                                   "torch.bfloat16, torch.float32 or None to keep the model's")
    bundle = model if isinstance(model, ModelBundle) else load_folder(model, device="cpu", dtype=torch.float32)
    state = ldm_state_dict(bundle.unet, bundle.vae, bundle.text_encoders)
    tensors = {k: v.detach().to("cpu", dtype or v.dtype).contiguous() for k, v in state.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={"format": "pt"})
    return path
