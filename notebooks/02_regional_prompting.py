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
# # Regional prompting, boxes and prompt composition
#
# One prompt describes the whole canvas. When a layout matters — four objects in four corners, two objects side
# by side — a prompt per region, or a phrase per box, says *where* as well as *what*:
#
# - `session.regional(regions, base_prompt, mode)` with `regions` a list of `(prompt, mask_or_box)`: a mask is an
#   H×W array in [0, 1] (MaskPainter's, or yours), a box `(x0, y0, x1, y1)` in [0, 1]. **Attention mode** (A1111's
#   Regional Prompter) attends to each region's prompt separately inside every cross-attention layer and blends
#   the outputs by region — one network pass per step. **Latent mode** (ComfyUI's area conditioning) runs a pass
#   per region and blends the predictions. The base prompt covers what no region does and keeps `base_ratio` of
#   each region.
# - `session.gligen(prompt, boxes)` with `boxes` a list of `(phrase, box)`: GLIGEN's grounding tokens where the
#   checkpoint has them, otherwise training-free boxes (each phrase's cross-attention restricted to its box). The
#   bundled model has a grounded variant, `Session("tiny-shapes-gligen")`: GLIGEN's gated layers and position net
#   trained on free layouts of one to four objects, with the base model frozen and shipped beside it.
# - The prompt language's own composition: alternation `[a|b]`, scheduling `[a:b:when]` and `AND` with weights.
#
# Everything is measured on the bundled model with the strict scorer (object count, colour, shape and grid cell
# all right, background too). Set `DIFFTECH_MODEL` to run the same cells on a real checkpoint (on a GPU).

# %%
import os
import warnings

import numpy as np

from difftech_lab import PromptLengthWarning, Session, layouts, metrics
from difftech_lab.images import grid
from difftech_lab.models.grounding import has_grounding

session = Session.load(os.environ.get("DIFFTECH_MODEL") or None, progress=False)
# GLIGEN needs grounding weights: a checkpoint that has them, or the bundled model's grounded variant
grounded = session if has_grounding(session.model.unet) else \
    None if os.environ.get("DIFFTECH_MODEL") else Session.load("tiny-shapes-gligen", progress=False)
# scenes per set in the measured table at the end (the recorded run used 50; CI runs a few)
SCENES = int(os.environ.get("DIFFTECH_NOTEBOOK_SCENES", "50"))

# %% [markdown]
# ## A layout the grammar never shows
#
# Training scenes hold one to three objects two grid cells apart. Four objects, one per corner, are outside
# anything the model saw. Written as one prompt, the fourth object goes missing or takes another's shape; as
# four regions in latent mode, each region's pass draws one object in its own corner. The regions here are
# boxes; each region's prompt is the object alone on the background, as the grammar writes a one-object scene.
# GLIGEN's boxes (last row) place all four objects too, but lose the background the caption names in three of
# four (the warning below says why). The strict verdicts count every miss: a stray speck beside an object is an extra object.

# %%
corners = layouts.four_corners(1, seed=7)[0]
print(corners.prompt)
for prompt, box in corners.regions():
    print(f"  {box}  {prompt}")
plain = session.generate(corners.prompt, seed=0, steps=12, batch_size=4)
latent = session.regional(corners.regions(), corners.base_prompt, "latent", base_ratio=0.0, seed=0, steps=12,
                          batch_size=4)
attention = session.regional(corners.regions(), corners.base_prompt, "attention", seed=0, steps=12, batch_size=4)
boxed = (grounded or session).gligen(corners.prompt, corners.phrases(), seed=0, steps=12, batch_size=4)
grid([plain.images, attention.images, latent.images, boxed.images], scale=2)

# %% [markdown]
# Rows: the plain prompt, attention mode, latent mode, GLIGEN (four seeds each). Strict verdicts and network
# evaluations per image:

# %%
for name, result in (("plain", plain), ("attention", attention), ("latent", latent), ("GLIGEN", boxed)):
    print(f"{name:<10} strict {[metrics.score(im, corners.scene).correct for im in result.images]}  NFE {result.nfe}")

# %% [markdown]
# ## A prompt longer than the model's captions
#
# The four-object prompt is 37 tokens; the longest caption the bundled model's text encoder was trained on is 34
# (`difftech.json` records it, and the encoder warns past it). Position embeddings past that length never
# learned anything, and what sits there — "on a … background" — is read poorly. `BREAK` encodes a prompt in
# parts, each on its own, and the UNet attends to all of them. Split into two parts of two objects, each part
# reads like a two-object caption the model knows (`layout.prompt_in_parts()`; on 24 validation scenes the plain
# prompt in two-and-two parts was right 15 times, in three-and-one parts 5 times, whole never):

# %%
in_parts = corners.prompt_in_parts()
print(in_parts)
plain_parts = session.generate(in_parts, seed=0, steps=12, batch_size=4)
boxed_parts = (grounded or session).gligen(in_parts, corners.phrases(), seed=0, steps=12, batch_size=4)
for name, result in (("plain", plain_parts), ("GLIGEN", boxed_parts)):
    print(f"{name:<10} strict {[metrics.score(im, corners.scene).correct for im in result.images]}  NFE {result.nfe}")
grid([plain_parts.images, boxed_parts.images], scale=2)

# %% [markdown]
# In parts, the background comes back in all eight images. The plain prompt (top row) still misses in three of
# these four: a stray speck, a red where the prompt says orange, a blue for purple. GLIGEN (bottom row) is right
# in all four: its grounding places every object in its corner during the first 70 % of the steps (the card's
# τ), and the base model finishes the shapes in the rest. Grounded to the last step, shapes are where it slips
# (the card's validation scenes, four corners in parts: 0.72 at τ 0.7, 0.44 at τ 1). The measured section
# counts 50 scenes.

# %% [markdown]
# Masks work the same way as boxes (a box is a hard mask of the pixels whose centres it holds), overlaps are
# shared by weight, and a region may carry its own negative prompt. A region list is part of the Recipe, so the
# result replays:

# %%
left = np.zeros((64, 64), np.float32)
left[:, :32] = 1.0
regions = [("a big red circle on the left on a white background", left),
           {"prompt": "a big blue square on the right on a white background", "box": (0.5, 0.0, 1.0, 1.0),
            "negative_prompt": "a star"}]
result = session.regional(regions, "on a white background", "latent", seed=3, steps=12)
print("replays bit for bit:", bool((session.run(result.recipe).latents == result.latents).all()))
result.images[0]

# %% [markdown]
# BoxEditor draws boxes with phrases on an image; its `.boxes` feed `session.gligen` as they are, and
# `[(p, b) for p, b in editor.boxes]` feeds `session.regional` (MaskPainter's `.mask` is a region mask).

# %%
# NBVAL_IGNORE_OUTPUT
from difftech_lab.widgets import BoxEditor

editor = BoxEditor(latent.images[0], boxes=corners.phrases(), width=256, height=256)
editor

# %% [markdown]
# ## Prompt scheduling and composition
#
# The prompt language composes over *time* and by *sum* as well as over space. Each line runs eight seeds of one
# prompt at 12 steps and reports the colour of the biggest object found in each image.
#
# - `[red:blue:n]` uses "red" for the first n steps, then "blue" (a fraction below 1 is a share of the steps).
# - `[red|blue]` alternates the two words every step.
# - `A AND B :w` adds the terms' guidance (composable diffusion) with weights; a negative weight guides away.

# %%
def biggest_colours(prompt):
    images = session.generate(prompt, seed=0, steps=12, batch_size=8).images
    return [(metrics.detect(image)[1] or [None])[0] for image in images]


for prompt in ("a big blue circle in the centre on a white background",
               "a big [red:blue:1] circle in the centre on a white background",
               "a big [red:blue:2] circle in the centre on a white background",
               "a big [red|blue] circle in the centre on a white background",
               "a big [blue|red] circle in the centre on a white background",
               "a big circle in the centre on a white background",
               "a big circle in the centre on a white background AND a yellow circle :-1"):
    found = biggest_colours(prompt)
    print(f"{prompt:<76}{' '.join(d.colour if d else '–' for d in found)}")

# %% [markdown]
# On this model the colour is settled within the first two of twelve steps: "red" for one step and then "blue"
# gives blue or the pink between them, two steps of "red" give red or pink every time. Alternation is not symmetric for the same
# reason — whichever word the first step sees dominates, and `[blue|red]` mixes into purple. A negative AND term
# removes what it names: the bare "a big circle" comes out yellow more often than any other colour, and with
# "a yellow circle" at weight −1 never. What AND does *not* do is layout: the sum of two one-object prompts is a different scene
# from the two-object prompt —

# %%
target = "a big red circle on the left and a big blue square on the right on a white background"
for prompt in (target, "a big red circle on the left on a white background AND a big blue square on the right "
               "on a white background"):
    images = session.generate(prompt, seed=0, steps=12, batch_size=8).images
    print(f"strict {np.mean([metrics.score(im, target).correct for im in images]):.2f}, objects found "
          f"{[len(metrics.detect(im)[1]) for im in images]}  ← {prompt[:60]}…")

# %% [markdown]
# — each term pulls towards a whole one-object image, and their sum draws too many objects or too few. Regions
# are the tool for layout.

# %% [markdown]
# ## Measured: where regions and boxes help
#
# Four sets of scenes, `SCENES` each with one fixed seed per scene, every method on the same scenes, 12 Euler
# steps, CFG from the model card:
#
# - **three objects, in grammar**: held-out scenes of the kind training shows (far-apart cells);
# - **four corners**: one more object than any training scene;
# - **neighbouring cells**: two objects sharing a cell edge, which training scenes never have;
# - **free boxes**: two or three boxes of free size and place (the scene's cells are the box centres').
#
# Methods: the plain prompt (the whole scene in one prompt); attention-mode regions with Regional Prompter's
# default base ratio 0.2 and the background as the base prompt; attention mode with the whole scene as the base
# prompt at base ratio 0.5; latent-mode regions (base: the background, base ratio 0); training-free boxes (the
# whole scene as the prompt, each object's phrase held to its box); GLIGEN (the grounded variant of the bundled
# model: the whole scene as the prompt, each object's phrase as a grounding token with its box, grounding for
# the fraction τ of the steps its card chose on validation scenes, and again at the paper's τ 0.3 and at τ 1). The
# base-prompt settings are the two common recipes, not tuned on these scenes.

# %%
# NBVAL_IGNORE_OUTPUT
# (the recorded table has 50 scenes per cell; CI runs this cell with a few, see SCENES above)
from difftech_lab.automation import compare_calls, side_by_side


def strict(image, layout):
    return {"strict": metrics.score(image, layout.scene).correct}


run = dict(steps=12, sampler="euler")
methods = {
    "plain prompt": lambda s, l, i: s.generate(l.prompt, seed=i, **run),
    "attention, base 0.2": lambda s, l, i: s.regional(l.regions(), l.base_prompt, "attention", seed=i, **run),
    "attention, scene base 0.5": lambda s, l, i: s.regional(l.regions(), l.prompt, "attention", base_ratio=0.5,
                                                             seed=i, **run),
    "latent": lambda s, l, i: s.regional(l.regions(), l.base_prompt, "latent", base_ratio=0.0, seed=i, **run),
    "training-free boxes": lambda s, l, i: s.gligen(l.prompt, l.phrases(), method="boxes", seed=i, **run),
}
if grounded is not None:  # the grounded variant's own session, same scenes and seeds
    methods["GLIGEN"] = lambda s, l, i: grounded.gligen(l.prompt, l.phrases(), seed=i, **run)
    for tau in (0.3, 1.0):  # the paper's τ, and grounding to the last step
        methods[f"GLIGEN, τ {tau:g}"] = lambda s, l, i, tau=tau: grounded.gligen(l.prompt, l.phrases(),
                                                                                 scheduled_sampling=tau, seed=i, **run)
with warnings.catch_warnings():  # four-corner prompts are past the model's captions, as said above
    warnings.simplefilter("ignore", PromptLengthWarning)
    tables = {name: compare_calls(session, make(SCENES), methods, metric=strict, progress=False)
              for name, make in layouts.SETS.items()}
print(f"strict adherence, {SCENES} scenes per cell (mean ± standard error)")
print(side_by_side(tables, "strict"))

# %% [markdown]
# What the table says about this model:
#
# - **Latent-mode regions** reach every layout the grammar never shows: about seven in ten four-corner scenes
#   and half the neighbouring-cell scenes, where the plain prompt gets a few percent. Each region's pass draws a
#   one-object scene, which the model knows well, and the blend puts each where its region is. They pay a pass
#   per region, and in the grammar they are as good as the plain prompt (within a standard error).
# - **Attention mode** is still one pass, and this model appears to decide how many objects to draw from the
#   prompts as a whole: with only the background as the base prompt it draws too few objects in every set; with
#   the whole scene as the base it behaves like the plain prompt with small gains. Regional Prompter's users
#   report attention mode as the better one on SD models, whose text states are far richer than this toy's.
# - **Training-free boxes** change nothing measurable here: the layout of this model does not come from where
#   its cross-attention to an object's words falls.
# - **GLIGEN** is one pass per step. At its card's τ 0.7 (grounded for the first 70 % of the steps; the card's
#   rule takes the highest mean over the four validation sets, four corners in two parts as below) it is as good
#   as the plain prompt in the grammar (0.88 against 0.90, within a standard error) and far better on the layouts
#   a box can say and a caption cannot: neighbouring cells 0.70 against the plain prompt's 0.02, free boxes 0.84
#   against 0.44 (recorded run). τ trades the two: grounded to the last step (τ 1) it reaches 0.80 on
#   neighbouring cells but drops to 0.66 in the grammar, since grounding to the end overrides what the caption
#   settles late; at the paper's τ 0.3 it is 0.94 in the grammar and 0.56 on neighbouring cells. With the whole
#   four-corner prompt it stays near a quarter at every τ: the background, past the model's captions, is lost
#   (see the prompt in parts below).
#
# Free boxes are the easiest of the new layouts for the plain prompt (two or three objects at cells the
# grammar knows, often far apart). Where the plain prompt is near 0, latent mode clears 60 % on four corners
# and GLIGEN on neighbouring cells (and on four corners with the prompt in parts, below). Neither region mode
# does on neighbouring cells (0.02 and 0.52; latent mode's misses are mostly the two objects cut or merged at
# their shared edge).
#
# Wall time per image, relative to the plain prompt (machine-dependent, so outside the recorded check):

# %%
# NBVAL_IGNORE_OUTPUT
print(tables["four corners"].timing())

# %% [markdown]
# Four corners again, each prompt in two parts of two objects (same scenes and seeds as the table above):

# %%
# NBVAL_IGNORE_OUTPUT
# (the recorded table has 50 scenes per cell; CI runs this cell with a few, see SCENES above)
in_parts_methods = {
    "plain prompt, in two parts": lambda s, l, i: s.generate(l.prompt_in_parts(), seed=i, **run),
    "attention, scene base 0.5, in two parts": lambda s, l, i: s.regional(l.regions(), l.prompt_in_parts(),
                                                                           "attention", base_ratio=0.5, seed=i, **run),
}
if grounded is not None:
    in_parts_methods["GLIGEN, in two parts"] = lambda s, l, i: grounded.gligen(l.prompt_in_parts(), l.phrases(),
                                                                                seed=i, **run)
corners_in_parts = compare_calls(session, layouts.four_corners(SCENES), in_parts_methods, metric=strict,
                                 progress=False)
print(side_by_side({"four corners": corners_in_parts}, "strict"))

# %% [markdown]
# Much of what made four objects look beyond the model was the prompt's length: in two parts the plain prompt
# goes from 0.02 to 0.64 and attention mode with the scene as its base from 0.16 to 0.68, as close to latent
# mode's 0.72 as a standard error, at one pass per step. GLIGEN in parts is the best of all, 0.78 at one pass per
# step: the boxes place the objects, the caption in parts keeps the background, and the steps after τ leave the
# shapes to the base model.

# %% [markdown]
# The first four scenes of the four-corner set, one row per method:

# %%
# NBVAL_IGNORE_OUTPUT
grid([[r.images[0] for r in tables["four corners"].results[name][:4]] for name in methods], scale=2)
