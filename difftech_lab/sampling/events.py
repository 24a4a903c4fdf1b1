"""The step event every sampler run emits, and the subscribers' contract."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class StepEvent:
    """One sampler step: the state after the step, and the prediction that produced it.

    ``denoised`` is x̂0 (what previews show), ``x`` the latent after the step, ``sigma`` the step's noise level
    (``sigma_hat`` after churn), ``nfe`` the network evaluations so far, ``elapsed`` seconds since the start.
    """

    i: int
    steps: int
    sigma: float
    sigma_hat: float
    x: torch.Tensor
    denoised: torch.Tensor
    nfe: int
    elapsed: float
    guidance: dict = field(default_factory=dict)
