"""``%load_ext difftech_lab``: rich display for Results, σ schedules and latents, and the ``%difftech`` magic.

A Result shows as its image grid with the recipe's A1111-style summary; a 1-D non-increasing, non-negative
tensor (a σ schedule) as a plot; a 4-D latent as its decoded preview, once a session is known — set with
``%difftech session NAME`` or found as the only Session in the notebook's namespace. Small pictures are
enlarged by a whole factor with nearest-neighbour sampling, so a 64 px image is legible and stays sharp.
"""

from __future__ import annotations

import html
import io
import math

import torch

from .errors import InvalidArgumentError
from .images import enlarge, grid, png_bytes, png_text

RESULT = ("difftech_lab.result", "Result")
SESSION = ("difftech_lab.session", "Session")
MAX_PREVIEW_ITEMS = 8  # a latent batch beyond this shows its first items only
MIN_DISPLAY_HEIGHT = 256  # small images are enlarged to at least this many pixels so their detail shows
MAX_DISPLAY_WIDTH = 1024  # ... unless the row would outgrow a notebook cell, which would shrink it unevenly


class _Display:
    """The formatters one shell has registered, and the session that latents are decoded with."""

    def __init__(self, shell):
        self.shell = shell
        self.session = None

    def register(self) -> None:
        formatters = self.shell.display_formatter.formatters
        formatters["text/html"].for_type_by_name(*RESULT, self.result_html)
        formatters["image/png"].for_type(torch.Tensor, self.tensor_png)

    def unregister(self) -> None:
        formatters = self.shell.display_formatter.formatters
        formatters["text/html"].pop(RESULT, None)
        formatters["image/png"].pop(torch.Tensor, None)

    def result_html(self, result) -> str:
        return result_html(result)

    def tensor_png(self, tensor: torch.Tensor) -> bytes | None:
        if is_sigma_schedule(tensor):
            return sigma_plot_png(tensor)
        session = self.current_session()
        if session is not None and is_latent(tensor, session):
            return png_bytes(for_display(grid(session.preview(tensor[:MAX_PREVIEW_ITEMS].detach()))))
        return None  # IPython then shows the plain text repr

    def current_session(self):
        if self.session is not None:
            return self.session
        import sys

        module = sys.modules.get(SESSION[0])
        if module is None:
            return None
        found = [v for k, v in self.shell.user_ns.items()
                 if not k.startswith("_") and isinstance(v, getattr(module, SESSION[1]))]
        return found[0] if len(found) == 1 else None


def is_sigma_schedule(tensor) -> bool:
    """A 1-D float tensor of 2+ finite, non-negative, non-increasing values: what schedules return."""
    if not isinstance(tensor, torch.Tensor) or tensor.ndim != 1 or tensor.numel() < 2:
        return False
    if not tensor.is_floating_point():
        return False
    s = tensor.detach().float().cpu()
    return bool(torch.isfinite(s).all() and (s >= 0).all() and (s[1:] <= s[:-1]).all())


def is_latent(tensor, session) -> bool:
    """A ``[B, C, h, w]`` float tensor with the session's latent channel count."""
    if not isinstance(tensor, torch.Tensor) or tensor.ndim != 4 or not tensor.is_floating_point():
        return False
    channels, _, _ = session.latent_shape(*session.default_size)
    return tensor.shape[1] == channels


def sigma_plot_png(sigmas: torch.Tensor) -> bytes:
    """σ against step on a log axis (σ = 0 at the end drawn at the axis floor), as PNG."""
    from matplotlib.figure import Figure

    s = sigmas.detach().float().cpu()
    fig = Figure(figsize=(4.5, 2.6), dpi=100)
    ax = fig.add_subplot()
    positive = s > 0
    steps = torch.arange(len(s))
    ax.plot(steps[positive].numpy(), s[positive].numpy(), "o-", ms=3)
    if bool((~positive).any()):
        floor = float(s[positive].min()) if bool(positive.any()) else 1.0
        ax.plot(steps[~positive].numpy(), [floor] * int((~positive).sum()), "v", color="C3", label="σ = 0")
        ax.legend(loc="upper right", fontsize=8)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("σ")
    ax.set_title(f"{len(s) - 1} steps, σ_max {float(s.max()):.3g}", fontsize=9)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def result_html(result) -> str:
    """The image grid, then the recipe summary and NFE (no timings: outputs must not change run to run)."""
    image = png_text(for_display(result.grid()))
    summary = html.escape(result.recipe.parameters_text())
    return (f'<div class="difftech-result"><img src="data:image/png;base64,{image}" '
            f'style="image-rendering:pixelated;max-width:100%"/>'
            f'<pre style="white-space:pre-wrap;font-size:11px">{summary}\nNFE: {result.nfe}</pre></div>')


def for_display(image):
    """``image`` enlarged a whole number of times without smoothing, so a 64 px picture shows its pixels as
    sharp squares rather than as a blurred thumbnail."""
    scale = min(math.ceil(MIN_DISPLAY_HEIGHT / image.height), MAX_DISPLAY_WIDTH // image.width)
    return enlarge(image, scale)


def _magic(display: _Display):
    def difftech(line: str):
        """%difftech [status | on | off | session NAME]: rich display of Results, σ tensors and latents."""
        words = line.split()
        command = words[0] if words else "status"
        if command == "session" and len(words) == 2:
            if words[1] not in display.shell.user_ns:
                raise InvalidArgumentError(f"no variable {words[1]!r} in the notebook; create the Session first")
            display.session = display.shell.user_ns[words[1]]
        elif command == "on":
            display.register()
        elif command == "off":
            display.unregister()
        elif command != "status":
            raise InvalidArgumentError(f"%difftech {line!r} is not a command; use status, on, off or session NAME")
        session = display.current_session()
        print(f"difftech display: latents decode with {session!r}" if session is not None else
              "difftech display: no session for latents (use %difftech session NAME)")

    return difftech


_displays: dict[int, _Display] = {}


def load_ipython_extension(ipython) -> None:
    """``%load_ext difftech_lab``: register the display formatters and the ``%difftech`` magic."""
    display = _displays.setdefault(id(ipython), _Display(ipython))
    display.register()
    ipython.register_magic_function(_magic(display), "line", "difftech")


def unload_ipython_extension(ipython) -> None:
    display = _displays.pop(id(ipython), None)
    if display is not None:
        display.unregister()


def use_session(session, ipython=None) -> None:
    """Decode displayed latents with ``session`` (the same as ``%difftech session NAME``)."""
    from IPython import get_ipython

    shell = ipython or get_ipython()
    if shell is None or id(shell) not in _displays:
        raise InvalidArgumentError("run %load_ext difftech_lab first")
    _displays[id(shell)].session = session
