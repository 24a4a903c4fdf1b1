"""StepPreview: watch x̂0 and x_t form while a generation runs, scrub the finished (or stopped) trajectory, and
branch from any step with changed settings, comparing the branch with the run it came from.
"""

from __future__ import annotations

import math
import threading

import torch
import traitlets

from ..errors import CancelledError, InvalidArgumentError
from ..images import png_bytes
from ._base import LatestRunner, Superseded, Widget, binary_trait, load_esm
from ._frames import latent_png, png_list_trait


class StepPreview(Widget):
    """Live x̂0 / x_t thumbnails from step events, a scrubber over the trajectory, and "branch from step k".

    Use it as ``callback=`` to ``session.generate`` (it then shows that run live), or let it run the
    generation in the background with :meth:`run` (which keeps the trajectory, so the run can be branched).
    Without a session, thumbnails show the latent's first three channels instead of a decoded preview.

    A finished run shows its last step. Stop (button, Escape or :meth:`stop`) ends a background run at its next
    step and keeps the frames made so far, scrubbable, with "stopped at step k" in the status line; a stopped
    run has no Result, so it cannot be branched. A branch keeps the run it came from: :attr:`original` is that
    Result and the widget shows its final x̂0 (A) beside the branch's (B). The Branch field's cfg starts at the
    run's own (a curve's first value) and its prompt is cleared when a new run starts.

    Keyboard: with the scrubber focused, ←/→ step through the trajectory and Home/End jump to the first/last
    step; Escape anywhere in the widget stops a running generation. There is nothing to delete here.
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
    stopped_at = traitlets.Int(-1, help="the last step a stopped run made; -1 unless the frames are a stopped run").tag(
        sync=True)
    original_x0 = binary_trait(help="final x̂0 of the run a branch came from, shown beside the branch's")
    display_size = traitlets.Int(192, help="side of each thumbnail on screen, in CSS pixels").tag(sync=True)

    def __init__(self, session=None, **kwargs):
        super().__init__(**kwargs)
        self.session = session
        self.result = None
        self.original = None  # the Result a branch came from, kept for the A/B comparison
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
            restart = event.i == 0 or (self._frames and event.i <= max(self._frames))
            new_run = restart and self._base is None  # a branch restarts too, with its parent's frames as base
            if restart:
                self._frames = dict(self._base or {})
                self._base = None
            self._frames[event.i] = (x0, xt, float(event.sigma))
        with self.hold_sync():
            if new_run:
                self._forget_branch()
            self.stopped_at = -1
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
        self._forget_branch()
        self._submit(lambda callback: session.generate(prompt, callback=callback, **options))

    def show(self, result) -> None:
        """Load a finished Result's trajectory (generated with ``keep_trajectory=True``) into the scrubber."""
        if not result.trajectory:
            raise InvalidArgumentError("this result has no trajectory; generate it with keep_trajectory=True")
        with self._lock:
            self._frames, self._base = {}, None
        for event in result.trajectory:
            self(event)
        self._finish(result)

    def _forget_branch(self) -> None:
        """A new run: the last run's branch settings and comparison no longer apply to it."""
        self.original = None
        self.branched_from = -1
        self.original_x0 = b""
        self.branch_prompt = ""

    def branch(self, step: int | None = None, **overrides) -> None:
        """Re-run the steps from ``step`` (default: the scrubber's) with changed settings, in the background.

        Without overrides, the Branch button's settings apply: ``branch_cfg`` and, if set, ``branch_prompt``.
        """
        session = self._need_session("branch")
        parent = self.result
        if self.stopped_at >= 0:
            raise InvalidArgumentError(f"the run shown was stopped at step {self.stopped_at + 1}, so there is no "
                                       "Result to branch from; run it to the end, then branch")
        if parent is None or not parent.trajectory:
            raise InvalidArgumentError("nothing to branch from yet; run a generation with preview.run(...) or "
                                       "load one with preview.show(result)")
        k = self.step if step is None else int(step)
        if not overrides:
            overrides = {"cfg": self.branch_cfg, **({"prompt": self.branch_prompt} if self.branch_prompt else {})}
        with self._lock:
            self._base = {i: f for i, f in self._frames.items() if i < k}
            final_x0 = self._frames[max(self._frames)][0]
        self.original, self.original_x0, self.branched_from = parent, final_x0, k

        def generate(callback):
            return session.branch(parent, k, callback=callback, keep_trajectory=True, progress=False, **overrides)

        self._submit(generate)

    def stop(self) -> None:
        """End the running background generation at its next step, keeping the frames made so far.

        A run started with ``session.generate(callback=preview)`` holds the kernel, so it can only be stopped
        with ``session.cancel()`` from another thread.
        """
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
            except CancelledError:  # Stop is the user's choice, not a failure: no banner, and the frames stay
                return None
            finally:
                self.running = False

        self._runner.submit(compute, self._finish)

    def _finish(self, result) -> None:
        """Show a finished run, or (``None``) the frames a stopped one made."""
        if result is None:
            self._publish()
            with self._lock:
                self.stopped_at = max(self._frames, default=-1)
            self.result = None
            return
        self.result = result
        cfg = result.recipe.settings.cfg
        # a branch's cfg field is one number: start it at the run's own, a curve's first value
        self.branch_cfg = float(cfg[0] if isinstance(cfg, (list, tuple)) else cfg)

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
