"""The one loop that runs every technique's plan: denoiser chain, guider, patches, sampler, step events, decode.

A technique builds a :class:`Plan`; :func:`run_plan` runs it and returns the Result. Nothing here knows a
technique: inpainting, differential diffusion, ControlNet and regions arrive as denoiser wrappers, network
patches, guidance terms and subscribers on the plan.
"""

from __future__ import annotations

import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field, replace

import torch
from torch.profiler import record_function

from ..conditioning.types import Conditioning, CondTerm, Embedding
from ..errors import CancelledError, NumericalError
from ..models.denoiser import UNetDenoiser
from ..models.memory import check_memory
from ..patches import guidance_terms as patch_guidance_terms
from ..result import Result
from .events import StepEvent
from .guider import Guider
from .samplers import get_sampler
from .settings import RunOptions, Settings, make_threshold

# the sampler's own noise stream is seeded apart from the initial noise, and per start step so a branch from
# step k draws what a fresh run would not
SAMPLER_SEED_OFFSET = 0x5EED


@dataclass
class Plan:
    """One sampling run, fully described.

    Attributes:
        settings: the resolved Settings (what the Recipe records).
        sigmas: the full planned schedule (ending in 0); the run covers ``sigmas[start:stop + 1]``.
        x: the latent at ``sigmas[start]`` (txt2img: scaled noise; img2img: the noised encoding; branch: a
            stored state).
        conditioning: prompt terms and the negative term.
        start: the step to start from.
        stop: the step to stop at (None: the end); a run that stops early returns the latent at ``sigmas[stop]``
            (a segment, for techniques that act between segments, such as resampling candidates).
        model: the ModelBundle whose network runs (None: the session's base model).
        wrappers: ``f(denoiser) -> denoiser`` around ``D(x, σ, hidden, pooled) -> x̂0``, innermost first.
        patches: ``f(model) -> context manager`` entered on the network for the sampling, always restored.
        guidance: extra guidance terms beside CFG/AND (see ``Guider``).
        subscribers: step-event listeners the technique itself needs.
        after_decode: ``f(images) -> images`` applied to the decoded images, in order (e.g. compositing).
        decode: False for a segment whose latents the technique goes on with (its Result has no images).
        timings: seconds spent before the run (prompt encoding), reported in the Result.
    """

    settings: Settings
    sigmas: torch.Tensor
    x: torch.Tensor
    conditioning: Conditioning
    start: int = 0
    stop: int | None = None
    model: object = None
    wrappers: list = field(default_factory=list)
    patches: list = field(default_factory=list)
    guidance: list = field(default_factory=list)
    subscribers: list = field(default_factory=list)
    after_decode: list = field(default_factory=list)
    timings: dict = field(default_factory=dict)
    decode: bool = True


def encode_conditioning(session, prompt, negative_prompt: str, settings: Settings, timings: dict) -> Conditioning:
    """The Conditioning of a prompt (text or a given Embedding) and a negative prompt, timed into ``timings``."""
    t0 = time.perf_counter()
    with record_function("difftech/encode_prompt"):
        encoder = session.encoder
        if isinstance(prompt, Embedding):
            negative = encoder.conditioning("", negative_prompt, settings.steps, clip_skip=settings.clip_skip)
            conditioning = Conditioning(terms=[CondTerm.constant(prompt)], negative=negative.negative)
        else:
            conditioning = encoder.conditioning(prompt, negative_prompt, settings.steps, clip_skip=settings.clip_skip)
    timings["encode_prompt"] = timings.get("encode_prompt", 0.0) + time.perf_counter() - t0
    return conditioning


def run_plan(session, plan: Plan, recipe, run: RunOptions) -> Result:
    """Run ``plan`` on ``session`` and return its Result with ``recipe``."""
    model = plan.model or session.model
    settings = plan.settings
    timings = dict(plan.timings)
    t0 = time.perf_counter() - sum(timings.values())
    rows = settings.batch_size * (1 + len(plan.conditioning.terms))
    check_memory(model, settings.width, settings.height, rows)
    with session.lock:
        session.cancel_event.clear()
        denoiser = UNetDenoiser(model, width=settings.width, height=settings.height)
        for wrap in plan.wrappers:
            denoiser = wrap(denoiser)
        guider = Guider(denoiser, model_sampling=model.model_sampling, conditioning=plan.conditioning,
                        sigmas=plan.sigmas, cfg=settings.cfg, cfg_rescale=settings.cfg_rescale,
                        threshold=make_threshold(settings.threshold),
                        terms=[*plan.guidance, *patch_guidance_terms(session, model)])
        steps = len(plan.sigmas) - 1
        stop = steps if plan.stop is None else plan.stop
        bar = _progress_bar(session.progress if run.progress is None else run.progress, stop - plan.start)
        monitor = _RunMonitor(guider, session.cancel_event, steps=steps, start=plan.start, t0=t0, bar=bar,
                              keep_trajectory=run.keep_trajectory,
                              listeners=[*plan.subscribers, *run.listeners()])
        x_init = plan.x.clone() if run.keep_trajectory else None
        generator = torch.Generator("cpu").manual_seed(settings.seed + SAMPLER_SEED_OFFSET + plan.start)
        t_sample = time.perf_counter()
        try:
            with ExitStack() as patches, torch.inference_mode():  # inference mode: a few % faster than no_grad
                for patch in plan.patches:
                    patches.enter_context(patch(model))
                latents = get_sampler(settings.sampler)(
                    monitor.denoise, plan.x.to(model.device, torch.float32),
                    plan.sigmas[plan.start:stop + 1].to(model.device),
                    generator=generator, callback=monitor.on_step, **settings.sampler_options)
        finally:
            monitor.close()
            session.cancel_event.clear()
        if not torch.isfinite(latents).all():
            raise NumericalError("the final latent is NaN/inf; in fp16 use dtype=torch.float32, or lower cfg")
        timings["sampling"] = time.perf_counter() - t_sample
        t_decode = time.perf_counter()
        images = []
        if plan.decode:
            with torch.inference_mode():
                images = session.decode(latents)
            for finish in plan.after_decode:
                images = finish(images)
        timings["decode"] = time.perf_counter() - t_decode
        timings["total"] = time.perf_counter() - t0
        latents = latents.clone()  # outside inference mode: an ordinary tensor users may edit or differentiate
        trajectory = None if monitor.trajectory is None else [
            replace(e, x=e.x.clone(), denoised=e.denoised.clone()) for e in monitor.trajectory]
    return Result(images=images, latents=latents.cpu(), recipe=recipe, nfe=guider.nfe, timings=timings,
                  sigmas=plan.sigmas.cpu(), sigmas_used=monitor.sigmas_used + [float(plan.sigmas[stop])],
                  trajectory=trajectory, x_init=x_init)


def _progress_bar(show: bool, total: int):
    if not show:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, leave=False, desc="sampling")


class _RunMonitor:
    """Sits between a sampler and the guider for one run: profiler step ranges, the σ's visited, step events
    to every listener, the trajectory, the progress bar, NaN checks and cancellation."""

    def __init__(self, guider, cancel: threading.Event, *, steps, start, t0, bar, keep_trajectory, listeners):
        self.guider, self.cancel, self.steps, self.start = guider, cancel, steps, start
        self.t0, self.bar, self.listeners = t0, bar, listeners
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
        for listener in self.listeners:
            listener(event)
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
