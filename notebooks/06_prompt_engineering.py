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
# # Prompt engineering: expansion and search
#
# Two ways to get more out of a prompt without touching the model:
#
# - **Expansion** rewrites the prompt from a vocabulary the model's family understands, deterministically:
#   `session.generate(prompt, style=...)`. The Recipe records the style and the text the model was given.
# - **Search** treats the model as a black box and changes the prompt's words until a scorer is satisfied:
#   `session.prompt_search(prompt, target=...)` (or `scorer=`). The Recipe records every accepted change and
#   replays the final prompt.
#
# Everything is measured on the bundled model with the strict scorer, on held-out scenes. Set `DIFFTECH_MODEL` to
# run the same cells on a real checkpoint (on a GPU): its family's vocabulary is the SD one, and a search there
# needs your own `scorer(image) -> float`.

# %%
import os

import matplotlib.pyplot as plt
import numpy as np

from difftech_lab import Session, metrics
from difftech_lab.automation import compare
from difftech_lab.conditioning.expansion import SD_MODIFIERS, SD_STYLES, expand
from difftech_lab.images import grid
from difftech_lab.scenes import COLOURS, POSITIONS, SceneSpec, caption, far_apart
from difftech_lab.training.dataset import held_out_free_prompts, held_out_specs

session = Session.load(os.environ.get("DIFFTECH_MODEL") or None, progress=False)
# prompts per row of the measured tables and targets of the search (the recorded run used 50 and 20; CI a few)
SCENES = int(os.environ.get("DIFFTECH_NOTEBOOK_SCENES", "50"))
TARGETS = max(2, min(20, SCENES * 2 // 5))

# %% [markdown]
# ## Expansion: a vocabulary per model family
#
# Stable Diffusion checkpoints learned from web captions, where quality and style tags ("highly detailed",
# "watercolor painting of") carry meaning; the styles of the `"sd"` family wrap the prompt in such tags and add a
# negative prompt, as the styles menus of A1111 and Fooocus do. The bundled model learned a small grammar; its
# styles speak that grammar: `"canonical"` rewrites a free prompt in the grammar's word order and spellings,
# `"complete"` also names every attribute the prompt leaves open, by a fixed rule (big; white background; a lone
# object in the centre, several two cells apart). An open attribute means "any", so the completed prompt asks for
# a scene the original allows.

# %%
print("this model's styles:", session.prompt_styles())
for text in ["red circle, left", "A Large Cyan Star", "a yellow shape and a purple triangle on grey"]:
    print(f"{text!r:48} canonical: {session.expand_prompt(text, 'canonical')[0]!r}")
    print(f"{'':48} complete:  {session.expand_prompt(text, 'complete')[0]!r}")
print()
for name in SD_STYLES:  # the "sd" family's styles (text only: no SD model needed to read them)
    prompt, negative = expand("a lighthouse at dusk", name, "sd")
    print(f"{name:13} {prompt}\n{'':13} negative: {negative}")

# %%
styled = session.generate("red circle, left", style="complete", seed=3, steps=12)
print(styled.recipe.params["expanded"])
assert (session.run(styled.recipe).latents == styled.latents).all()  # the recipe replays the expansion
grid([session.generate("red circle, left", seed=3, steps=12, batch_size=4).grid(4),
      session.generate("red circle, left", style="complete", seed=3, steps=12, batch_size=4).grid(4)], columns=1)

# %% [markdown]
# Top row: the free prompt as typed; bottom row: completed. Same seeds.
#
# ### Measured: does expansion help the model follow free prompts?
#
# Held-out scenes written in free phrasing (the evaluation set of the model card), `SCENES` prompts per set, two
# seeds each, 12 steps. Each image is scored strictly against the prompt *as typed* (what it leaves open may be
# anything), so a completed prompt gets no credit for its own additions.

# %%
# NBVAL_IGNORE_OUTPUT
# (the recorded table has 50 prompts per set; CI runs this cell with a few, see SCENES above)
styles = {"as typed": {}, "canonical": {"style": "canonical"}, "complete": {"style": "complete"}}
for n in (1, 2):
    prompts = [text for text, _ in held_out_free_prompts(n, SCENES)]
    table = compare(session, prompts, styles, seeds=range(2), steps=12, progress=False)
    print(f"{n} object{'s' * (n > 1)}, free phrasing, {len(prompts)} prompts × 2 seeds")
    print(table, end="\n\n")

# %% [markdown]
# Completing the prompt is the gain (recorded run: one object 0.95 → 1.00 strict, two objects 0.87 → 1.00, every
# image right): what the model still misses on free prompts, mostly an extra object where a prompt leaves the
# position open, comes from the open attributes themselves — named, the count is right. The canonical rewrite,
# which keeps the open attributes open, changes little (within two standard errors): word order and spellings are
# not what the model trips on.

# %% [markdown]
# ## Search: change the words until the scorer is satisfied
#
# `session.prompt_search(prompt, target=...)` is a discrete coordinate ascent. Each word of the prompt that
# belongs to a vocabulary group (the bundled model's: sizes, colours, shapes, position words, backgrounds; for SD
# models, modifier groups like lighting or medium) is a slot; a group the prompt lacks may be appended. A sweep
# visits the slots in turn, draws every alternative at the same seeds in one batch and keeps the best if it
# scores strictly higher. The search stops at the top score, after a sweep that changes nothing, after
# `max_sweeps`, or before exceeding `budget` network evaluations. The scorer is the graded adherence to the
# target (the share of its checks that pass) or any `scorer(image) -> float`.
#
# "Make the circle red and move it left":

# %%
search = session.prompt_search("a big blue circle on the right on a white background",
                               target="a red circle on the left", seeds=2, steps=10, seed=0)
for h in search.recipe.params["history"]:
    print(f"sweep {h['sweep']}  NFE {h['nfe']:4}  score {h['score']:.2f}  {h['prompt']}")
search.grid(2)

# %% [markdown]
# Any scorer works. With a brightness score and only the background words to choose from, the search picks the
# white background:

# %%
def brightness(image):
    return float(np.asarray(image, dtype=float).mean() / 255)


bright = session.prompt_search("a small green star at the top on a black background", scorer=brightness,
                               vocabulary={"background": ["white", "gray", "black"]}, seeds=1, steps=10)
print(bright.recipe.params["best"], "| NFE", bright.nfe)
print("SD modifier groups the search uses on SD models:", {g: len(w) for g, w in SD_MODIFIERS.items()})

# %% [markdown]
# ### Measured: 20 targets
#
# Each target is a held-out scene (half with one object, half with two). The search starts from the target's
# caption with one object's colour and position changed (a random other colour, a far-away cell) and searches at
# seeds 0–1, 10 steps. The start and the final prompt are then drawn at four *fresh* seeds (100–103), which the
# search never saw, and scored strictly against the target.

# %%
# NBVAL_IGNORE_OUTPUT
# (the recorded run has 20 targets; CI runs a few, see TARGETS above)
rng = np.random.default_rng(6)
targets = held_out_specs(1, TARGETS // 2) + held_out_specs(2, TARGETS - TARGETS // 2)
runs = []
for spec in targets:
    k = int(rng.integers(len(spec.objects)))
    changed = list(spec.objects)
    other = [c for c in COLOURS if c not in {o.colour for o in spec.objects}]
    others = [o.position for j, o in enumerate(spec.objects) if j != k]
    free = [p for p in POSITIONS if p != spec.objects[k].position and all(far_apart(p, q) for q in others)]
    free = [p for p in free if far_apart(p, spec.objects[k].position)] or free  # far from where it was, if any
    changed[k] = type(changed[k])(changed[k].size, str(rng.choice(other)), changed[k].shape, str(rng.choice(free)))
    start = caption(SceneSpec(tuple(changed), spec.background))
    runs.append(session.prompt_search(start, target=caption(spec), seeds=2, steps=10, seed=0))

starts = [r.recipe.params["prompt"] for r in runs]
finals = [r.recipe.params["best"] for r in runs]
histories = [r.recipe.params["history"] for r in runs]


def strict_to_target(images, used):  # compare draws 4 seeds per prompt, prompts in target order
    return {"strict": [float(metrics.score(im, caption(targets[i // 4])).correct) for i, im in enumerate(images)]}


fresh = {name: compare(session, prompts, {name: {}}, seeds=range(100, 104), steps=10, progress=False,
                       metric=strict_to_target).rows[0].metrics["strict"]
         for name, prompts in (("start", starts), ("final", finals))}
first = np.array([h[0]["score"] for h in histories])
last = np.array([h[-1]["score"] for h in histories])
nfe = np.array([h[-1]["nfe"] for h in histories])
se = lambda v: v.std(ddof=1) / np.sqrt(len(v))  # noqa: E731
print(f"{len(runs)} targets")
print(f"adherence at the search seeds: start {first.mean():.2f} ± {se(first):.2f} → final {last.mean():.2f} ± "
      f"{se(last):.2f}; top score reached on {int((last == 1).sum())} of {len(runs)}")
print(f"strict at fresh seeds (4 per target): start {fresh['start'][0]:.2f} ± {fresh['start'][1]:.2f} → final "
      f"{fresh['final'][0]:.2f} ± {fresh['final'][1]:.2f}")
print(f"NFE spent per target: mean {nfe.mean():.0f}, median {np.median(nfe):.0f}, max {nfe.max()}")

# %%
# NBVAL_IGNORE_OUTPUT
fig, ax = plt.subplots(figsize=(6, 3.2))
for h in histories:
    ax.step([e["nfe"] for e in h], [e["score"] for e in h], where="post", alpha=0.35, color="tab:blue")
grid_nfe = np.arange(0, nfe.max() + 1, 20)
at = [[max((e["score"] for e in h if e["nfe"] <= x), default=h[0]["score"]) for h in histories] for x in grid_nfe]
ax.plot(grid_nfe, np.mean(at, axis=1), color="black", label="mean over targets")
ax.set(xlabel="network evaluations spent", ylabel="adherence to the target", title="prompt search convergence")
ax.legend(loc="lower right")
plt.show()

# %% [markdown]
# In the recorded run the search reached the top score at its seeds on 15 of 20 targets (mean adherence 0.73 →
# 0.96), and the prompts it found hold at four fresh seeds it never saw: strict 0.00 → 0.75. Where it stops
# short, no single word change raised the score at the seeds searched (coordinate ascent's local optimum) or
# the sweeps ran out; a second changed word then has to wait for its own slot to pay off alone. It pays for its
# generality in evaluations: each slot costs one image per alternative and seed, about 1,200 network
# evaluations per target here.
#
# The first targets, start (left) and final prompt (right), seed 100:

# %%
# NBVAL_IGNORE_OUTPUT
pairs = [session.generate(p, seed=100, steps=10).images[0] for s, f in zip(starts[:4], finals[:4]) for p in (s, f)]
for s, f in zip(starts[:4], finals[:4]):
    print(f"{s}\n  → {f}")
grid(pairs, columns=2)
