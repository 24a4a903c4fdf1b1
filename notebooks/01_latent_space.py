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
# # Latent space: interpolation, navigation, composition
#
# An image is decided by two inputs: the initial noise (a seed) and the prompt's embedding. Both are vectors, so
# we can walk between them, blend several, step along a direction, or cut them up by region:
#
# - **Interpolation** between two (prompt, seed) endpoints, with LERP or SLERP, for the noise, the prompt
#   embedding, or both.
# - **Navigation** over a pad spanned by up to four anchors, and **direction moves** (a prompt difference, or a
#   noise direction).
# - **Masked latent composition**: a prompt per region, denoised from one noise and combined part-way.
#
# Every path is rendered as one batch whose Recipe holds the blended noise and embeddings, so it replays exactly.
# The last section measures the norm of the noise and the prompt adherence along 50 paths.

# %%
import os

import numpy as np

from difftech_lab import Session
from difftech_lab.images import grid
from difftech_lab.techniques import latents

session = Session.load(os.environ.get("DIFFTECH_MODEL") or None, progress=False)
W, H = session.default_size
session

# %% [markdown]
# ## LERP vs SLERP of the noise
#
# Initial noise is a draw from a d-dimensional standard Gaussian; such draws all have a norm close to √d (here
# d = channels × latent height × latent width). Two independent draws are nearly orthogonal, so their linear
# blend `(1−t)·a + t·b` has norm √((1−t)² + t²)·√d: about 0.71·√d half-way. The sampler then starts from less
# noise than the schedule says it holds. SLERP moves along the great circle between the two instead and keeps the
# norm at √d all the way.
#
# Below, one prompt that leaves position, size and background open, so the seed decides them; six points from
# seed 4 (left) to seed 5 (right), whose pictures differ in background. Top row LERP, bottom row SLERP.

# %%
STEPS = 10
ts = latents.path_ts(6)
start, end = ("a red star", 4), ("a red star", 5)
noise_rows = {mode: latents.interpolate(session, start, end, ts, noise_mode=mode, steps=STEPS)
              for mode in ("lerp", "slerp")}
a, b = session.noise(4), session.noise(5)
root_d = latents.typical_norm(a.shape[1:])
for mode in noise_rows:
    norms = latents.noise_path(a, b, ts, mode).flatten(1).norm(dim=1) / root_d
    print(f"{mode:<6} ‖z‖/√d at t = {', '.join(f'{t:.1f}' for t in ts)}:  {'  '.join(f'{v:.3f}' for v in norms)}")
grid([noise_rows["lerp"].images, noise_rows["slerp"].images], scale=3)

# %% [markdown]
# ## LERP vs SLERP of the prompt embedding
#
# Now the seed stays and the prompt moves: from "a big red circle on the left on a white background" to "a small
# blue square on the right on a black background". Text embeddings lie on no such shell, so the linear blend is
# the usual choice; the spherical one (token by token) is shown for comparison. Half-way the two differ: tokens
# whose states point apart come out shorter from LERP. The scorer reads what each image shows, so the rows can be
# compared attribute by attribute; along the path the attributes do not all switch at the same t.

# %%
from difftech_lab.metrics import detect

prompt_a = "a big red circle on the left on a white background"
prompt_b = "a small blue square on the right on a black background"
prompt_rows = {mode: latents.interpolate(session, (prompt_a, 0), (prompt_b, 0), ts, prompt_mode=mode, steps=STEPS)
               for mode in ("lerp", "slerp")}
ha, hb = session.encode_prompt(prompt_a).hidden, session.encode_prompt(prompt_b).hidden
ratio = latents.lerp(ha, hb, 0.5).norm(dim=-1) / latents.slerp_tokens(ha, hb, 0.5).norm(dim=-1)
print(f"half-way, LERP's token states are {float(ratio.min()):.2f}–{float(ratio.max()):.2f} × as long as SLERP's")


def describe(image):
    background, found = detect(image)
    objects = ", ".join(f"{d.size} {d.colour} {d.shape} {d.position}" for d in found) or "nothing"
    return f"{objects} / {background}"


for mode, result in prompt_rows.items():
    print(mode)
    for t, image in zip(ts, result.images):
        print(f"  t={t:.1f}  {describe(image)}")
grid([prompt_rows["lerp"].images, prompt_rows["slerp"].images], scale=3)

# %% [markdown]
# ## Both together, animated
#
# Noise by SLERP and prompt by LERP at once: from (the red circle, seed 4) to (the blue square, seed 9), twelve
# frames in one batch. The same frames, played forward and back, make the animation below.

# %%
frames = latents.interpolate(session, (prompt_a, 4), (prompt_b, 9), 12, steps=STEPS)
print(frames)
grid(frames.images, columns=6, scale=2)

# %%
# NBVAL_IGNORE_OUTPUT
import io

from IPython.display import Image as Picture
from PIL import Image

pictures = [image.resize((2 * image.width, 2 * image.height), Image.NEAREST) for image in frames.images]
loop = pictures + pictures[-2:0:-1]
buffer = io.BytesIO()
loop[0].save(buffer, format="GIF", save_all=True, append_images=loop[1:], duration=120, loop=0)
Picture(data=buffer.getvalue(), format="gif")

# %% [markdown]
# ## Navigating between four anchors
#
# Four (prompt, seed) anchors sit at the corners of a unit pad. A point on the pad weighs them by its mean value
# coordinates (one-hot at each corner, linear along each edge); the noises are averaged on the sphere (a weighted
# Karcher mean, which keeps the norm at √d) and the embeddings linearly. A 4 × 4 sample of the pad, rendered as
# one batch:

# %%
anchors = [("a big red circle in the centre on a white background", 1),
           ("a big blue square in the centre on a white background", 2),
           ("a big green triangle in the centre on a black background", 3),
           ("a big yellow star in the centre on a black background", 4)]
points = [(x, y) for y in np.linspace(0, 1, 4) for x in np.linspace(0, 1, 4)]
pad = latents.navigate(session, anchors, points, steps=STEPS)
grid(pad.images, columns=4, scale=2)

# %% [markdown]
# The same blend, live: `LatentNavigator` shows the pad in the notebook; drag the point and the preview follows
# (a few steps per preview keep it responsive). `.latent` and `.embedding` hold the chosen point, ready for a full
# `generate`.

# %%
# NBVAL_IGNORE_OUTPUT
from difftech_lab.widgets import LatentNavigator

navigator = LatentNavigator(session, [{"prompt": p, "seed": s} for p, s in anchors], steps=4)
navigator.wait(60)
navigator

# %% [markdown]
# ### Direction moves
#
# A **prompt direction** is the difference of two prompts' embeddings; added with a strength to a third prompt's
# embedding, it moves that prompt's meaning. Two directions are taken from other scenes than the one they move:
# "yellow triangle − yellow square" applied to a green square, and "on a black background − on a white
# background" (said of a red circle) applied to a red star on grey.
#
# A **noise direction** turns the seed's noise towards another draw and puts it back on its sphere: strength s
# turns it by atan(s) (45° at s = 1) and leaves the norm as it was. Rows: the shape direction, the background
# direction, the noise direction (same prompt and seed as the first strip).

# %%
strengths = [0.0, 0.5, 1.0, 2.0]
shape_move = latents.move(session, ("a big green square on the left on a white background", 2), strengths,
                          towards="a big yellow triangle on the left on a white background",
                          away="a big yellow square on the left on a white background", steps=STEPS)
background_move = latents.move(session, ("a big red star at the top on a gray background", 5), strengths,
                               towards="a red circle on a black background",
                               away="a red circle on a white background", steps=STEPS)
for name, result in (("triangle − square", shape_move), ("black − white background", background_move)):
    for s, image in zip(strengths, result.images):
        print(f"{name:<25} strength {s:.1f}: {describe(image)}")
noise_move = latents.move(session, ("a red star", 4), strengths, noise_direction=9, steps=STEPS)
z, u = session.noise(4), session.noise(9)
for s in strengths:
    moved = latents.move_noise(z, u, s)
    angle = np.degrees(np.arccos(float((moved * z).sum() / (moved.norm() * z.norm()))))
    print(f"noise direction, strength {s:.1f}: turned {angle:4.1f}°, ‖z‖/√d {float(moved.norm()) / root_d:.3f}")
grid([shape_move.images, background_move.images, noise_move.images], scale=3)

# %% [markdown]
# ## Masked latent composition
#
# `session.compose(parts, background)` takes a prompt per mask. Every part's prompt (and the background's, where
# the parts leave room) is denoised from the **same noise** for the first `at_step` steps (40% by default); the
# latents are then combined by the masks at that noise level and the composite is finished under the background
# prompt. Because the sources share their noise, the composite is an ordinary latent at that step, and the
# remaining steps blend the seams instead of leaving them.
#
# Four one-object scenes, one per quadrant. The model never saw four objects in one image (its scenes hold at most
# three); composed, it draws them.

# %%
from difftech_lab import metrics
from difftech_lab.scenes import COLOURS


def quadrant(column, row):
    mask = np.zeros((H, W), np.float32)
    mask[row * H // 2:(row + 1) * H // 2, column * W // 2:(column + 1) * W // 2] = 1.0
    return mask


wanted = [("red", "circle", "top left", quadrant(0, 0)), ("blue", "square", "top right", quadrant(1, 0)),
          ("yellow", "star", "bottom left", quadrant(0, 1)), ("green", "triangle", "bottom right", quadrant(1, 1))]
parts = [(f"a big {colour} {shape} at the {where} on a white background", mask)
         for colour, shape, where, mask in wanted]
composed = session.compose(parts, "a white background", steps=STEPS, seed=0, batch_size=5)
print(composed, "at_step", composed.recipe.params["at_step"])
layout = sum(mask[..., None] * np.array(COLOURS[colour], np.float32) for colour, _, _, mask in wanted)
grid([layout.astype(np.uint8), *composed.images], scale=2)  # the masks in their parts' colours, then the images

# %% [markdown]
# Measured over the five seeds: for each part, how often an object of its colour and shape has its centre inside
# its mask, and how often the image holds exactly four objects.

# %%
def mean_se(values):
    values = np.asarray(values, float)
    return f"{values.mean():.3f} ± {values.std(ddof=1) / np.sqrt(len(values)):.3f}"


def inside(detection, mask):
    x, y = detection.centre
    return mask[min(int(y * H), H - 1), min(int(x * W), W - 1)] > 0.5


found = [detect(image)[1] for image in composed.images]
for colour, shape, where, mask in wanted:
    hits = [any(d.colour == colour and d.shape == shape and inside(d, mask) for d in dets) for dets in found]
    print(f"{colour + ' ' + shape:<16} in the {where:<13} {np.mean(hits):.2f}")
print(f"{'exactly four objects':<36}{np.mean([len(dets) == 4 for dets in found]):.2f}")

# %% [markdown]
# Composed vs pasted. Two halves that disagree about the background (a yellow star on black, a red circle on
# white) combined at 40% of the steps (top) and at the very end (bottom: the finished latents cut and joined,
# nothing left to blend). The finishing steps of the composed images reconcile the two halves into one plain
# background; the pasted latents decode into a seam and colours off the world's palette, since the decoder mixes
# the whole latent. Off-palette is the mean distance of the pixels from the nearest palette colour (0 for a
# rendered scene).

# %%
left = np.zeros((H, W), np.float32)
left[:, : W // 2] = 1.0
halves = [("a big yellow star on the left on a black background", left),
          ("a big red circle on the right on a white background", 1 - left)]
options = dict(steps=STEPS, seed=0, batch_size=3)
blended = session.compose(halves, "a white background", **options)
pasted = session.compose(halves, "a white background", at_step=STEPS, **options)
for name, result in (("composed", blended), ("pasted", pasted)):
    print(f"{name:<9} off-palette {mean_se(metrics.palette_error(result.images))}   NFE {result.nfe}")
again = session.run(blended.recipe)
print("replayed bit for bit:", bool((again.latents == blended.latents).all()))
grid([blended.images, pasted.images], scale=3)

# %% [markdown]
# ## Measured: norm and adherence along the path
#
# 50 held-out one-object scenes, written the free way (so some attributes are left to the seed), each with two
# seeds: 50 noise paths under a fixed prompt. The norm of the start noise is computed at five points along each
# path. The images are measured at the start (t = 0, the same image in both modes; the other end is just another
# seed) and in the middle (t = 0.5, where LERP and SLERP differ most): strict adherence (the count and every named
# attribute right), graded adherence (the share of the named checks that are right) and off-palette (washed-out
# or smeared colours raise it), each with its standard error.

# %%
from difftech_lab.metrics import adherence_value, score
from difftech_lab.training.dataset import held_out_free_prompts

prompts = [text for text, _ in held_out_free_prompts(1, 50)]
starts = [(p, 1000 + 2 * k) for k, p in enumerate(prompts)]
ends = [(p, 1001 + 2 * k) for k, p in enumerate(prompts)]
TABLE_STEPS = 6

norm_ts = latents.path_ts(5)
norms = {mode: np.stack([(latents.noise_path(session.noise(sa), session.noise(sb), norm_ts, mode).flatten(1)
                          .norm(dim=1) / root_d).numpy() for (_, sa), (_, sb) in zip(starts, ends)])
         for mode in ("lerp", "slerp")}
images = {"start": latents.interpolate(session, starts, ends, [0.0], steps=TABLE_STEPS).images}
for mode in ("lerp", "slerp"):
    images[f"middle {mode.upper()}"] = latents.interpolate(session, starts, ends, [0.5], noise_mode=mode,
                                                           steps=TABLE_STEPS).images

print(f"{len(prompts)} paths, d = {a[0].numel()}, √d = {root_d:.1f}\n")
print(f"{'':<18}" + "".join(f"{f't={t:.2f}':>9}" for t in norm_ts))
for mode in ("lerp", "slerp"):
    print(f"{'‖z‖/√d ' + mode.upper():<18}" + "".join(f"{m:>9.3f}" for m in norms[mode].mean(0))
          + f"   (sd at t=0.5: {norms[mode][:, 2].std(ddof=1):.3f})")
print(f"{'√((1−t)²+t²)':<18}" + "".join(f"{np.hypot(1 - t, t):>9.3f}" for t in norm_ts))
print(f"\n{'':<16}{'strict':>16}{'graded':>16}{'off-palette':>16}")
for name, shown in images.items():
    print(f"{name:<16}{mean_se([score(i, p).correct for i, p in zip(shown, prompts)]):>16}"
          f"{mean_se([adherence_value(i, p) for i, p in zip(shown, prompts)]):>16}"
          f"{mean_se(metrics.palette_error(shown)):>16}")

# %% [markdown]
# The norms follow the geometry: SLERP stays at √d along the whole path, and LERP dips to 0.71·√d in the middle,
# as √((1−t)² + t²) predicts for nearly orthogonal draws. What the dip costs depends on the model, and the rows
# above measure it for this one: compare each middle row with the start row, in units of their standard errors.
# A model whose prompt decides nearly everything, as here, has little left for the start noise to spoil; on large
# models the dip shows as washed-out, low-detail images in the middle of LERP paths. SLERP costs nothing extra,
# which is why it is the default for noise (and LERP for embeddings).
