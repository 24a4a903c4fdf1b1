# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Advanced sampling, measured
#
# The knobs between the model and the image: how strongly to guide (CFG, CFG rescale, thresholding), where to
# place the steps (schedules), and how much noise to re-inject (EDM's churn, restart sampling). Every claim
# below is a number computed by these cells on the bundled model, with fixed prompts and seeds and a standard
# error. Set `DIFFTECH_MODEL` to run the same cells on a real checkpoint (on a GPU).

# %%
import os

import numpy as np
import torch

from difftech_lab import Session, metrics
from difftech_lab.automation import compare
from difftech_lab.automation.compare import adherence
from difftech_lab.images import grid
from difftech_lab.scenes import caption
from difftech_lab.training.dataset import held_out_specs

session = Session.load(os.environ.get("DIFFTECH_MODEL") or None, progress=False)
prompts = [caption(s) for s in held_out_specs(1, 4) + held_out_specs(2, 4)]  # scenes no training stage saw


def quality(images, prompts):
    scores = adherence(images, prompts)
    return {"strict": scores["strict"], "off-palette": metrics.palette_error(images),
            "saturation": metrics.saturation(images), "brightness": metrics.brightness(images)}


# %% [markdown]
# ## CFG and CFG rescale
#
# Classifier-free guidance extrapolates from the unconditional prediction towards the conditional one; at high
# scales the guided x̂0 overshoots the data's range and images saturate and burn. CFG rescale (Lin et al. 2024)
# rescales the guided prediction to the conditional one's standard deviation and blends by φ. The sweep: CFG
# 3 (the model card's), 7 and 12, each with φ = 0, 0.7 and 1; 8 prompts × 2 seeds per row.

# %%
variants = {f"cfg {cfg:g}, φ {phi:g}": {"cfg": cfg, "cfg_rescale": phi} for cfg in (3, 7, 12) for phi in (0, 0.7, 1)}
rescale = compare(session, prompts, variants, seeds=range(2), metric=quality, steps=20, sampler="euler",
                  progress=False)
print(rescale)

# %%
grid([[r.images[0] for r in rescale.results[name][:4]] for name in variants], scale=2)

# %% [markdown]
# ## Dynamic thresholding at high CFG
#
# Two thresholds on x̂0 at CFG 12, against plain CFG 12 and CFG rescale: Imagen's **dynamic** threshold (clip to
# the 99.5th percentile of |x̂0|, then divide by it; meant for pixel-space data in [−1, 1]) and the latent-space
# **mimic** threshold (guide at 12 but keep each channel's spread that CFG 3 would give).

# %%
threshold = compare(session, prompts, {
    "cfg 3": {"cfg": 3},
    "cfg 12": {"cfg": 12},
    "cfg 12, rescale 0.7": {"cfg": 12, "cfg_rescale": 0.7},
    "cfg 12, dynamic 99.5%": {"cfg": 12, "threshold": {"kind": "dynamic", "percentile": 0.995}},
    "cfg 12, mimic 3": {"cfg": 12, "threshold": {"kind": "mimic", "mimic_cfg": 3.0}},
}, seeds=range(2), metric=quality, steps=20, sampler="euler", progress=False)
print(threshold)

# %% [markdown]
# ## Schedules: error against the converged solution
#
# A deterministic sampler solves the probability-flow ODE; its error is the distance of its final latent from
# the ODE's solution for the same start. The reference here is Heun with 128 steps on the Karras schedule; each
# schedule × sampler is run at 4, 8, 16 and 32 steps from the same noise (2 prompts), and the error is the RMS
# latent difference.

# %%
import matplotlib.pyplot as plt

ref_prompts = [prompts[0], prompts[4]]  # one object, two objects


def final_latents(**options):
    return torch.cat([session.generate(p, seed=0, cfg=3.0, **options).latents for p in ref_prompts])


reference = final_latents(sampler="heun", schedule="karras", steps=128)
schedules, samplers = ("default", "karras", "exponential", "polyexponential"), ("euler", "heun", "dpmpp_2m")
counts = (4, 8, 16, 32)
errors = {(sc, sa): [float((final_latents(sampler=sa, schedule=sc, steps=n) - reference).pow(2).mean().sqrt())
                     for n in counts] for sc in schedules for sa in samplers}
fig, axes = plt.subplots(1, 3, figsize=(12, 3.4), sharey=True)
for ax, sa in zip(axes, samplers):
    for sc in schedules:
        ax.loglog(counts, errors[sc, sa], "o-", label=sc)
    ax.set_title(sa)
    ax.set_xlabel("steps")
axes[0].set_ylabel("RMS latent error")
axes[0].legend()
plt.tight_layout()
plt.show()
print(f"{'schedule':<16}{'sampler':<10}" + "".join(f"{n:>9}" for n in counts))
for (sc, sa), e in errors.items():
    print(f"{sc:<16}{sa:<10}" + "".join(f"{v:>9.4f}" for v in e))

# %% [markdown]
# The schedules themselves, and the σ's a run really visited, in **SchedulePlotter** (click a chip to choose a
# schedule; `plotter.sigmas` is the chosen one):

# %%
from difftech_lab.widgets import SchedulePlotter

plotter = SchedulePlotter(session=session, result=session.generate(prompts[0], sampler="restart", steps=10))
plotter

# %% [markdown]
# ## EDM's stochastic sampler: churn
#
# EDM (Karras et al. 2022) adds noise before each step (`s_churn`) and denoises it again. Diversity is the mean
# pixel distance between the four seeds' images of one prompt; adherence is strict.

# %%
def with_diversity(images, prompts):
    scores = adherence(images, prompts)
    per_prompt = [images[i:i + 4] for i in range(0, len(images), 4)]
    spread = [float(np.mean([metrics.change(a, b) for k, a in enumerate(group) for b in group[k + 1:]]))
              for group in per_prompt]
    return {"strict": scores["strict"], "diversity": [d for d in spread for _ in range(4)]}


churn = compare(session, prompts, {f"s_churn {c:g}": {"sampler": "edm", "sampler_options": {"s_churn": c}}
                                   for c in (0, 10, 40, 80)},
                seeds=range(4), metric=with_diversity, steps=20, progress=False)
print(churn)

# %% [markdown]
# ## Restart sampling against Heun and EDM at equal cost
#
# Restart (Xu et al. 2023) runs an ODE sampler and, at chosen noise levels, jumps back up with fresh noise and
# re-solves the stretch. Each row below spends about the same network evaluations per image.

# %%
equal = compare(session, prompts, {
    "heun, 20 steps": {"sampler": "heun", "steps": 20},
    "edm churn 40, 20 steps": {"sampler": "edm", "steps": 20, "sampler_options": {"s_churn": 40}},
    "restart, 10 steps": {"sampler": "restart", "steps": 10},
    "euler, 39 steps": {"sampler": "euler", "steps": 39},
}, seeds=range(2), metric=quality, progress=False)
print(equal)
used = session.generate(prompts[0], sampler="restart", steps=10).sigmas_used
print("restart visits", len(used), "σ's:", " ".join(f"{s:.2f}" for s in used))
