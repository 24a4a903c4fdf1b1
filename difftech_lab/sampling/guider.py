"""The guider: a k-diffusion denoiser ``D(x, σ) -> x̂0`` that runs the network once per step and combines the
conditional and unconditional predictions (CFG, composable AND, CFG rescale, thresholding)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.profiler import record_function

from ..conditioning.types import Conditioning, Embedding
from ..errors import InvalidArgumentError, ShapeError
from .curves import Curve, curve_value


def rescale_cfg(x_cfg: torch.Tensor, x_pos: torch.Tensor, phi: float) -> torch.Tensor:
    """CFG rescale (Lin et al. 2023, arXiv 2305.08891 §3.4), as diffusers' ``rescale_noise_cfg``."""
    dims = list(range(1, x_cfg.ndim))  # per sample, so each image keeps its own statistics
    sigma_pos = x_pos.std(dim=dims, keepdim=True)
    sigma_cfg = x_cfg.std(dim=dims, keepdim=True)
    x_res = x_cfg * (sigma_pos / sigma_cfg)
    return phi * x_res + (1 - phi) * x_cfg


@dataclass
class GuidanceContext:
    """What a threshold may need besides the guided x̂0: the raw predictions of this step's one forward.

    ``combine(cfg)`` gives the guided x̂0 this step would produce at another guidance scale (composable sum,
    then CFG rescale with the same φ) without running the network again. ``embeddings`` are the step's
    negative then positive embeddings; ``forward(x, sigma, embeddings)`` runs the network again (one x̂0 per
    embedding, counted in the guider's NFE) for guidance terms that need another prediction (SAG, PAG).
    """

    x: torch.Tensor
    sigma: torch.Tensor
    step: int
    steps: int
    uncond: torch.Tensor
    conds: list[torch.Tensor]
    weights: list[float]
    cfg: float
    combine: Callable[[float], torch.Tensor]
    embeddings: list[Embedding]
    forward: Callable[[torch.Tensor, torch.Tensor, list[Embedding]], list[torch.Tensor]]


class Guider:
    """Classifier-free guidance (Ho & Salimans 2022) over composable AND terms (Liu et al. 2022, A1111 form)
    as a k-diffusion denoiser ``guider(x, sigma) -> x̂0``.

    Args:
        model: ``model(x, sigma, hidden, pooled=None) -> x̂0`` over N rows (hidden ``[N,T,D]``, pooled ``[N,P]``).
        model_sampling: has ``denoised(x, sigma, output)`` and its inverse ``prediction(x, sigma, denoised)``
            for the network's own output space (ε or v); CFG rescale works in that space.
        conditioning: positive AND terms (weight < 0 is NOT) and the negative term. A term with a ``mask`` counts
            under its mask only (latent-mode regions: the per-region predictions blended by mask, as ComfyUI's
            area conditioning), with its own ``negative`` there if it has one.
        sigmas: the planned schedule, 1-D, non-increasing, ending in 0; maps σ to the step index.
        cfg: guidance scale curve (number, per-step list or ``f(step, steps)``).
        cfg_rescale: CFG rescale φ curve; 0 disables it.
        threshold: ``None`` or ``threshold(x0, context) -> x0`` (see ``thresholding``), applied last.
        terms: extra guidance terms beside CFG: each ``term(x0, context) -> x0`` refines the guided x̂0 in order
            (a term with a ``before_step()`` method has it called before each step's main forward),
            before the threshold (self-attention and perturbed-attention guidance plug in here).
        rtol: relative tolerance when matching σ against the planned schedule.

    ``nfe`` counts network evaluations in units of one batch of B images through the network, so a CFG step with
    one term costs 2 and an AND of two terms costs 3, whether the rows went in one forward or several.
    ``last`` holds the guidance terms of the latest call for step events.
    """

    def __init__(self, model, model_sampling, conditioning: Conditioning, sigmas: torch.Tensor, *,
                 cfg: Curve = 7.0, cfg_rescale: Curve = 0.0, threshold=None, terms=(), rtol: float = 1e-4):
        sigmas = torch.as_tensor(sigmas).detach().to("cpu", torch.float64)
        if sigmas.ndim != 1 or sigmas.numel() < 2:
            raise ShapeError(f"sigmas must be a 1-D schedule with at least 2 entries, got shape "
                             f"{tuple(sigmas.shape)}; pass the sampler's schedule ending in 0")
        if bool((sigmas[1:] > sigmas[:-1]).any()):
            raise InvalidArgumentError(f"sigmas must be non-increasing, got {sigmas.tolist()}; pass the planned "
                                       "schedule, not a restart-extended one")
        if not conditioning.terms:
            raise InvalidArgumentError("conditioning has no positive terms; give at least one prompt term")
        _check_masks(conditioning)
        if threshold is not None and not callable(threshold):
            raise InvalidArgumentError(f"threshold must be None or callable(x0, context), got {threshold!r}")
        if not all(callable(term) for term in terms):
            raise InvalidArgumentError(f"guidance terms must be callables term(x0, context), got {list(terms)!r}")
        self.terms = list(terms)
        self.model, self.model_sampling, self.conditioning = model, model_sampling, conditioning
        self.sigmas, self.steps = sigmas, sigmas.numel() - 1
        self.cfg, self.cfg_rescale, self.threshold, self.rtol = cfg, cfg_rescale, threshold, rtol
        self.nfe = 0
        self.last: dict = {}

    def step_of(self, sigma) -> int:
        """The 0-based step a σ belongs to: the largest k < N with sigmas[k] ≥ σ (within ``rtol``), clamped.

        So Heun's second evaluation at σ_{k+1} counts as step k+1, a churned σ̂ > σ_0 as step 0, and a restart
        segment's σ as the planned step whose interval holds it. A batch shares one step: the first row's σ.
        """
        s = float(torch.as_tensor(sigma).reshape(-1)[0])
        planned = self.sigmas[:-1]
        k = int((planned >= s * (1 - self.rtol)).sum()) - 1  # the schedule is non-increasing: a prefix matches
        return min(max(k, 0), self.steps - 1)

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        sigma = torch.as_tensor(sigma, device=x.device)
        if sigma.ndim == 0:
            sigma = sigma.expand(x.shape[0])
        step = self.step_of(sigma)
        for term in self.terms:  # terms that read this step's main forward (SAG's attention map) arm themselves
            if hasattr(term, "before_step"):
                term.before_step()
        cfg = curve_value(self.cfg, step, self.steps, "cfg")
        phi = curve_value(self.cfg_rescale, step, self.steps, "cfg_rescale")
        terms = self.conditioning.terms
        weights = [float(t.weight) for t in terms]
        masked = any(t.mask is not None for t in terms)
        # cfg=1 with a single unit-weight term is exactly the conditional prediction (and CFG rescale is then
        # the identity), so the unconditional half of the batch is skipped
        if cfg == 1 and weights == [1.0] and not masked and self.threshold is None and not self.terms:
            (cond,) = self._forward(x, sigma, [terms[0].at(step)])
            self._record(step, cfg, phi, [], 1)
            return cond
        embeddings = [self.conditioning.negative.at(step)] + [t.at(step) for t in terms]
        own = [k for k, t in enumerate(terms) if t.negative is not None]  # regions with their own negative
        uncond, *conds = self._forward(x, sigma, embeddings + [terms[k].negative.at(step) for k in own])
        conds, own_uncond = conds[:len(terms)], dict(zip(own, conds[len(terms):]))
        if masked:
            uncond, conds, weights = _masked(terms, weights, uncond, conds, own_uncond, x)
        with record_function("difftech/guidance"):
            return self._combine(x, sigma, step, cfg, phi, uncond, conds, weights, embeddings)

    def _combine(self, x, sigma, step, cfg, phi, uncond, conds, weights, embeddings) -> torch.Tensor:
        delta = sum(w * (c - uncond) for w, c in zip(weights, conds))

        def combine(scale: float) -> torch.Tensor:
            x_cfg = uncond + scale * delta  # = u + Σ_i w_i·scale·(c_i − u), A1111's combine_denoised
            if phi == 0:
                return x_cfg
            # σ_pos is the std of the prediction without guidance: the conditional one for a single term (as
            # diffusers), and for several terms the cfg=1 composition u + Σ w_i(c_i − u), since no single term
            # stands for the composed prompt
            x_pos = conds[0] if len(conds) == 1 and not torch.is_tensor(weights[0]) else uncond + delta
            ms = self.model_sampling
            rescaled = rescale_cfg(ms.prediction(x, sigma, x_cfg), ms.prediction(x, sigma, x_pos), phi)
            return ms.denoised(x, sigma, rescaled)

        x0 = combine(cfg)
        nfe = self.nfe
        if self.terms or self.threshold is not None:
            context = GuidanceContext(x, sigma, step, self.steps, uncond, conds, weights, cfg, combine, embeddings,
                                      self._forward)
            for term in self.terms:
                x0 = term(x0, context)
            if self.threshold is not None:
                x0 = self.threshold(x0, context)
        self._record(step, cfg, phi, [float(torch.linalg.vector_norm(c - uncond)) for c in conds],
                     1 + len(conds) + self.nfe - nfe)
        return x0

    def _forward(self, x: torch.Tensor, sigma: torch.Tensor, embeddings: list[Embedding]) -> list[torch.Tensor]:
        """One x̂0 ``[B,...]`` per embedding, from as few network calls as the token lengths allow.

        Rows can only share a forward when their hidden states have the same token length T (long prompts are
        77·k tokens) and all have or all lack a pooled vector, so embeddings are grouped by that and each group
        goes through the network in one call.
        """
        B = x.shape[0]
        groups: dict[tuple[int, bool], list[int]] = {}
        for j, emb in enumerate(embeddings):
            groups.setdefault((emb.hidden.shape[1], emb.pooled is None), []).append(j)
        outputs: list[torch.Tensor | None] = [None] * len(embeddings)
        for (_, no_pooled), idx in groups.items():
            hidden = torch.cat([_rows(embeddings[j].hidden, B, "hidden") for j in idx])
            pooled = None if no_pooled else torch.cat([_rows(embeddings[j].pooled, B, "pooled") for j in idx])
            out = self.model(x.repeat(len(idx), *[1] * (x.ndim - 1)), sigma.repeat(len(idx)), hidden, pooled=pooled)
            for j, chunk in zip(idx, out.split(B)):
                outputs[j] = chunk
        self.nfe += len(embeddings)
        return outputs

    def _record(self, step: int, cfg: float, phi: float, cond_norms: list[float], nfe: int) -> None:
        self.last = {"step": step, "cfg": cfg, "cfg_rescale": phi, "cond_norms": cond_norms, "nfe": nfe}


def _check_masks(conditioning: Conditioning) -> None:
    if conditioning.negative.mask is not None:
        raise InvalidArgumentError("the negative term cannot have a mask; give a region its own negative instead")
    for k, term in enumerate(conditioning.terms):
        if term.negative is not None and term.mask is None:
            raise InvalidArgumentError(f"term {k} has its own negative but no mask; only a region (a masked term) "
                                       "may replace the negative, under its mask")
        m = term.mask
        if m is None:
            continue
        if not torch.is_tensor(m) or m.ndim != 4 or m.shape[1] != 1:
            raise ShapeError(f"term {k}'s mask must be a [1, 1, h, w] tensor at latent size, got "
                             f"{tuple(getattr(m, 'shape', ()))}")
        if not torch.isfinite(m).all() or float(m.min()) < 0 or float(m.max()) > 1:
            raise InvalidArgumentError(f"term {k}'s mask values must lie in [0, 1]")


def _masked(terms, weights, uncond, conds, own_uncond, x):
    """Masked terms as per-pixel weights (a term without a mask covers the canvas) and the effective negative.

    With each masked term k's share m_k and its own negative u_k (else u): u' = u + Σ_k m_k·(u_k − u), and the
    weight of term k becomes w_k·m_k, each term guided against its own negative: Σ w_k·m_k·(c_k − u_k) =
    Σ w'_k·(c'_k − u') with c'_k = c_k − u_k + u' — what the Guider's sum then reads.
    """
    size = tuple(x.shape[-2:])
    for t in terms:
        if t.mask is not None and tuple(t.mask.shape[-2:]) != size:
            raise ShapeError(f"a term's mask is {tuple(t.mask.shape[-2:])} but the latent is {size}; give masks "
                             "at latent size")
    masks = [None if t.mask is None else t.mask.to(x.device, x.dtype) for t in terms]
    u_eff, shifted = uncond, conds
    if own_uncond:  # (without own negatives the conditional predictions stand as they are, bit for bit)
        for k, u_k in own_uncond.items():
            u_eff = u_eff + masks[k] * (u_k - uncond)
        shifted = [c - own_uncond.get(k, uncond) + u_eff for k, c in enumerate(conds)]
    pixel_weights = [w if m is None else w * m for w, m in zip(weights, masks)]
    return u_eff, shifted, pixel_weights


def _rows(t: torch.Tensor, B: int, name: str) -> torch.Tensor:
    """An embedding tensor with one row per image: a single row is shared by the whole batch."""
    if t.shape[0] == 1:
        return t.expand(B, *t.shape[1:])
    if t.shape[0] != B:
        raise ShapeError(f"{name} has {t.shape[0]} rows for a batch of {B}; give 1 row (shared) or {B}")
    return t
