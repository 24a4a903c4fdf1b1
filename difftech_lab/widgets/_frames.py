"""Image lists for widgets that show several pictures (anchor thumbnails, a trajectory's frames)."""

from __future__ import annotations

import torch
import traitlets

from ..images import png_bytes


def png_list_trait(**kwargs) -> traitlets.List:
    """A synced list of PNG byte strings; bytes coming back from the browser arrive as ``memoryview``."""
    return traitlets.List(traitlets.Bytes(), **kwargs).tag(
        sync=True, from_json=lambda value, widget: [bytes(v) for v in value or []])


def latent_png(latent: torch.Tensor, session=None) -> bytes:
    """PNG of the first item of ``latent`` ``[B, C, h, w]``: the session's fast preview when there is one,
    else its first three channels stretched to [0, 1] (enough to watch structure form, at latent size)."""
    if session is not None:
        return png_bytes(session.preview(latent[:1])[0])
    x = latent[0].detach().float().cpu()
    x = x[:3] if x.shape[0] >= 3 else x[:1].expand(3, -1, -1)
    lo, hi = x.amin(dim=(1, 2), keepdim=True), x.amax(dim=(1, 2), keepdim=True)
    x = (x - lo) / (hi - lo).clamp_min(1e-8)
    return png_bytes(x.permute(1, 2, 0))
