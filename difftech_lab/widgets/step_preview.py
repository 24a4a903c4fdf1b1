"""StepPreview: watch x̂0 and x_t form while a generation runs, scrub the finished trajectory, and branch
from any step with changed settings.
"""

from __future__ import annotations

import math
import threading

import torch
import traitlets

from ..errors import InvalidArgumentError
from ..images import png_bytes
from ._base import LatestRunner, Superseded, Widget, binary_trait, load_esm
from ._frames import latent_png, png_list_trait


class StepPreview(Widget):
    """Live x̂0 / x_t thumbnails from step events, a scrubber over the trajectory, and "branch from step k".

    Use it as ``callback=`` to ``session.generate`` (it then shows that run live), or let it run the
    generation in the background with :meth:`run` (which keeps the trajectory, so the run can be branched).
    Without a session, thumbnails show the latent's first three channels instead of a decoded preview.
    """

    _esm = load_esm("step_preview.js")

    x0_frames = png_list_trait(help="x̂0 preview of each finished step")
    xt_frames = png_list_trait(help="x_t preview of each finished step")
    sigmas = traitlets.List(traitlets.Float()).tag(sync=True)
    live_x0 = binary_trait()
    live_xt = binary_trait()
    live_step = traitlets.Int(-1).tag(sync=True)
    steps = traitlets.Int(0).tag(sync=True)
    step = traitlets.Int(0, help="the step the scrubber shows").tag(sync=True)
    running = traitlets.Bool(False).tag(sync=True)
    show_xt = traitlets.Bool(True).tag(sync=True)
    branch_cfg = traitlets.Float(7.0).tag(sync=True)
    branch_prompt = traitlets.Unicode("", help="empty keeps the run's prompt").tag(sync=True)
    branch_request = traitlets.Int(0, help="incremented by the Branch button").tag(sync=True)
    stop_request = traitlets.Int(0, help="incremented by the Stop button").tag(sync=True)
    branched_from = traitlets.Int(-1).tag(sync=True)
    display_size = traitlets.Int(192, help="side of each thumbnail on screen, in CSS pixels").tag(sync=True)

    def __init__(self, session=None, **kwargs):
        super().__init__(**kwargs)
        self.session = session
        self.result = None
        self._frames: dict[int, tuple[bytes, bytes, float]] = {}
        self._base: dict[int, tuple[bytes, bytes, float]] | None = None  # kept frames of a branch's parent
        self._lock = threading.Lock()
        self._runner = LatestRunner(self)
        self.observe(lambda change: self._on_button(self.branch), names="branch_request")
        self.observe(lambda change: self._on_button(self.stop), names="stop_request")

    # ------------------------------------------------------------------------------------ the step events
    def __call__(self, event) -> None:
        """The step-event callback: ``session.generate(..., callback=preview)``."""
        try:
            x0, xt = self._thumbnails(event)
        except Exception as exc:  # raised into the generation too, but the widget must say why it stopped
            self.report(exc)
            raise
        with self._lock:
            if event.i == 0 or (self._frames and event.i <= max(self._frames)):
                self._frames = dict(self._base or {})
                self._base = None
            self._frames[event.i] = (x0, xt, float(event.sigma))
        with self.hold_sync():
            self.running = event.i < event.steps - 1
            self.steps, self.live_step = event.steps, event.i
            self.live_x0, self.live_xt = x0, xt
            if not self.running:
                self._publish()

    def _thumbnails(self, event) -> tuple[bytes, bytes]:
        if self.session is None:
            # x_t in σ-space is x0 + σ·ε: dividing by √(σ²+1) gives the unit-variance latent
            return latent_png(event.denoised[:1]), latent_png(event.x[:1] / math.sqrt(float(event.sigma) ** 2 + 1))
        # the network's own input scaling makes x_t a latent the VAE can show (VP for ε/v models, as-is for flow)
        xt = self.session.model_sampling.scale_input(event.x[:1], float(event.sigma))
        images = self.session.preview(torch.cat([event.denoised[:1].to(xt), xt]))
        return png_bytes(images[0]), png_bytes(images[1])

    def _publish(self) -> None:
        with self._lock:
            frames = [self._frames[i] for i in sorted(self._frames)]
        self.x0_frames = [f[0] for f in frames]
        self.xt_frames = [f[1] for f in frames]
        self.sigmas = [f[2] for f in frames]
        self.step = len(frames) - 1

    # -------------------------------------------------------------------------------- runs and branches
    def run(self, prompt="", **generate_options) -> None:
        """Generate in the background (``session.generate`` with this widget as the callback)."""
        session = self._need_session("run")
        options = dict(generate_options, keep_trajectory=True, progress=False)
        with self._lock:
            self._base = None
        self.branched_from = -1
        self._submit(lambda callback: session.generate(prompt, callback=callback, **options))

    def show(self, result) -> None:
        """Load a finished Result's trajectory (generated with ``keep_trajectory=True``) into the scrubber."""
        if not result.trajectory:
            raise InvalidArgumentError("this result has no trajectory; generate it with keep_trajectory=True")
        with self._lock:
            self._frames, self._base = {}, None
        for event in result.trajectory:
            self(event)
        self.result = result

    def branch(self, step: int | None = None, **overrides) -> None:
        """Re-run the steps from ``step`` (default: the scrubber's) with changed settings, in the background.

        Without overrides, the Branch button's settings apply: ``branch_cfg`` and, if set, ``branch_prompt``.
        """
        session = self._need_session("branch")
        parent = self.result
        if parent is None or not parent.trajectory:
            raise InvalidArgumentError("nothing to branch from yet; run a generation with preview.run(...) or "
                                       "load one with preview.show(result)")
        k = self.step if step is None else int(step)
        if not overrides:
            overrides = {"cfg": self.branch_cfg, **({"prompt": self.branch_prompt} if self.branch_prompt else {})}
        with self._lock:
            self._base = {i: f for i, f in self._frames.items() if i < k}
        self.branched_from = k

        def generate(callback):
            return session.branch(parent, k, callback=callback, keep_trajectory=True, progress=False, **overrides)

        self._submit(generate)

    def stop(self) -> None:
        """Cancel the running generation at its next step."""
        if self.session is not None:
            self.session.cancel()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the background run is done (for scripts and tests)."""
        return self._runner.wait(timeout)

    def _submit(self, generate) -> None:
        def compute(is_stale):
            def callback(event):
                if is_stale():
                    raise Superseded
                self(event)

            self.running = True
            try:
                return generate(callback)
            finally:
                self.running = False

        self._runner.submit(compute, self._finish)

    def _finish(self, result) -> None:
        self.result = result

    def _on_button(self, action) -> None:
        try:
            action()
        except Exception as exc:  # a button has no cell to raise into: show it in the widget
            self.report(exc)

    def _need_session(self, what: str):
        if self.session is None:
            raise InvalidArgumentError(f"StepPreview needs a session to {what}; create it as StepPreview(session)")
        return self.session

    def __repr__(self) -> str:
        return f"StepPreview(steps={self.steps})"
