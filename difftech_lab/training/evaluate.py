"""Score a model folder on the held-out prompts: ``python -m difftech_lab.training.evaluate [FOLDER]``."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from difftech_lab import scenes
from difftech_lab.images import grid
from difftech_lab.metrics import batch_rates, score
from difftech_lab.models.loading import BUNDLED_MODEL
from difftech_lab.training import dataset
from difftech_lab.training.model_card import write_model_card

DEFAULT_GUIDANCE = 3.0  # the model card's setting


def load_pipeline(folder):
    """The folder as a diffusers StableDiffusionPipeline with the Euler sampler, offline, on the CPU."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline
    pipe = StableDiffusionPipeline.from_pretrained(folder)
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def generate(pipe, prompts: list[str], seeds: list[int], steps: int, guidance: float, batch: int = 25) -> np.ndarray:
    """uint8 ``[n, 64, 64, 3]`` images, one per (prompt, seed); each image has its own seeded generator."""
    out = []
    for i in range(0, len(prompts), batch):
        gens = [torch.Generator().manual_seed(s) for s in seeds[i:i + batch]]
        images = pipe(prompts[i:i + batch], height=scenes.RESOLUTION, width=scenes.RESOLUTION,
                      num_inference_steps=steps, guidance_scale=guidance, generator=gens, output_type="np").images
        out.append((images * 255).round().clip(0, 255).astype(np.uint8))
    return np.concatenate(out)


def _timing(pipe, prompt: str, guidance: float, runs: int = 5) -> dict:
    times = []
    for i in range(runs + 1):
        t = time.perf_counter()
        generate(pipe, [prompt], [i], 20, guidance)
        times.append(time.perf_counter() - t)
    return {"one_image_20_steps_cfg_median_s": round(statistics.median(times[1:]), 3), "runs": runs,
            "torch_threads": torch.get_num_threads()}


def prompt_sets(images: int, validation: bool = False) -> dict[str, tuple[list[str], list[scenes.SceneSpec], list]]:
    """The evaluation rows: name -> (prompts, the specs they name, the full scenes).

    Evaluation rows use held-out scenes only; ``validation`` rows use training-side scenes from another stream
    (settings such as CFG are chosen on these, never on the held-out ones).
    """
    rows = {}
    for n, name in ((1, "one object"), (2, "two objects"), (3, "three objects")):
        full = _validation_scenes(n, images) if validation else dataset.held_out_specs(n, images)
        rows[name] = ([scenes.caption(s) for s in full], full, full)
        if n < 3:
            free = ([scenes.free_caption(s, np.random.default_rng(50_000 + i))[:2] for i, s in enumerate(full)]
                    if validation else dataset.held_out_free_prompts(n, images))
            rows[f"{name}, free phrasing"] = ([t for t, _ in free], [named for _, named in free], full)
    return rows


def _validation_scenes(n: int, count: int) -> list[scenes.SceneSpec]:
    """Training-side scenes (not held out) with ``n`` objects from a stream no other set uses."""
    rng = np.random.default_rng(40_000 + n)
    out = []
    while len(out) < count:
        spec = dataset.random_spec(rng, n)
        if not dataset.is_held_out(spec):
            out.append(spec)
    return out


def evaluate(folder, images: int = 200, steps: int = 20, guidance: float = DEFAULT_GUIDANCE, seed: int = 0,
             timing_runs: int = 5, validation: bool = False) -> dict:
    """Generate and score every row of :func:`prompt_sets`, one seed per prompt (seeds ``seed``…)."""
    pipe = load_pipeline(folder)
    result = {"steps": steps, "guidance_scale": guidance, "seeds": f"{seed}..{seed + images - 1}",
              "prompts": "validation (training-side scenes)" if validation else "held-out scenes",
              "rows": {}, "grid": {}}
    for name, (prompts, named, full) in prompt_sets(images, validation).items():
        seeds = list(range(seed, seed + images))
        generated = generate(pipe, prompts, seeds, steps, guidance)
        scores = [score(image, spec) for image, spec in zip(generated, named)]
        rates = batch_rates(scores)
        rates["strict_se"] = (rates["strict"] * (1 - rates["strict"]) / len(prompts)) ** 0.5
        result["rows"][name] = rates
        if "free" in name:
            result.setdefault("open", {})[name] = by_open_attribute(scores, named)
        result["grid"][name] = (generated[:16], np.stack([dataset.render(s).image for s in full[:16]]))
        if name == "one object":
            result["reference"] = _reference(generated, prompts, seeds, steps, guidance)
    if timing_runs:
        result["timing"] = _timing(pipe, result["reference"]["prompt"], guidance, timing_runs)
    return result


def by_open_attribute(scores, named: list[scenes.SceneSpec]) -> dict[str, dict]:
    """How free prompts fare by what they leave open: for each attribute (and ``"none"``, every attribute
    named), over the prompts that leave it open for some object, the strict rate and the rates of too many
    objects and too few. ``scores``: each image's score against its prompt's spec in ``named``; an image counts
    once for each attribute its prompt leaves open."""
    groups: dict[str, list] = {}
    for s, spec in zip(scores, named):
        open_ = [a for a in ("size", "colour", "shape", "position") if any(getattr(o, a) is None for o in spec.objects)]
        open_ += ["background"] if spec.background is None else []
        for key in open_ or ["none"]:
            groups.setdefault(key, []).append((s.correct, len(s.detections) - len(s.objects)))
    return {key: {"n": len(rows), "strict": float(np.mean([c for c, _ in rows])),
                  "too_many": float(np.mean([d > 0 for _, d in rows])),
                  "too_few": float(np.mean([d < 0 for _, d in rows]))}
            for key, rows in sorted(groups.items(), key=lambda kv: (kv[0] != "none", kv[0]))}


# The CI-sized evaluation: few enough images for the test suite, through the Session (the product's own sampling).
CI_SETS = (("one object", 8), ("one object, free phrasing", 8), ("two objects", 8))


def ci_evaluation(session, guidance: float, steps: int = 20) -> dict:
    """Strict verdict per image of the CI-sized evaluation (first prompts of three rows, seeds 0…7)."""
    sets = prompt_sets(max(n for _, n in CI_SETS))
    out = {}
    for name, n in CI_SETS:
        prompts, named, _ = sets[name]
        images = [session.generate(p, seed=i, steps=steps, cfg=guidance, sampler="euler", progress=False).images[0]
                  for i, p in enumerate(prompts[:n])]
        out[name] = [bool(score(image, spec).correct) for image, spec in zip(images, named[:n])]
    return out


def _reference(generated: np.ndarray, prompts: list[str], seeds: list[int], steps: int, guidance: float) -> dict:
    """The first generation that scores fully right (or the first one): what the tests regenerate and check."""
    scores = [score(g, p) for g, p in zip(generated, prompts)]
    i = next((k for k, s in enumerate(scores) if s.correct), 0)
    s = scores[i]
    return {"prompt": prompts[i], "seed": seeds[i], "steps": steps, "guidance_scale": guidance,
            "mean": round(float(generated[i].mean()), 2),
            "score": {a: getattr(s.objects[0], a) for a in ("size", "colour", "shape", "position")}
            | {"background": s.background, "count": s.count}}


COLUMNS = ("strict", "count", "size", "colour", "shape", "position", "background", "lenient")


def table(result: dict) -> str:
    head = f"{'prompts':<28}{'n':>5}" + "".join(f"{c:>11}" for c in COLUMNS)
    lines = [head]
    for name, r in result["rows"].items():
        cells = "".join(f"{'-':>11}" if r[c] is None else f"{r[c]:>11.1%}" for c in COLUMNS)
        lines.append(f"{name:<28}{r['n']:>5}{cells}   ±{r['strict_se']:.1%}")
    for name, groups in result.get("open", {}).items():
        lines += ["", f"{name}, by what the prompt leaves open:", f"{'open':<28}{'n':>5}"
                  + "".join(f"{c:>11}" for c in ("strict", "too many", "too few"))]
        lines += [f"{key:<28}{g['n']:>5}{g['strict']:>11.1%}{g['too_many']:>11.1%}{g['too_few']:>11.1%}"
                  for key, g in groups.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="difftech-lab eval", description=__doc__)
    p.add_argument("folder", nargs="?", default=str(BUNDLED_MODEL))
    p.add_argument("--images", type=int, default=200, help="prompts per row (held-out, fixed seeds)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--guidance", type=float, default=DEFAULT_GUIDANCE)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timing-runs", type=int, default=5, help="timed single-image generations (0: none)")
    p.add_argument("--validation", action="store_true", help="score validation prompts (training-side scenes)")
    p.add_argument("--note", action="append", default=[], help="a line for the model card's evaluation notes")
    p.add_argument("--save", action="store_true", help="write evaluation.json, the grid PNG and the model card")
    if argv and argv[0] == "--":  # what `difftech-lab eval -- --images 50` forwards
        argv = argv[1:]
    args = p.parse_args(argv)
    started = time.time()
    result = evaluate(args.folder, args.images, args.steps, args.guidance, args.seed, args.timing_runs,
                      args.validation)
    print(table(result))
    print(f"timing: {result.get('timing')}; evaluation took {time.time() - started:.0f} s")
    if args.save:
        from difftech_lab import Session
        result["ci"] = ci_evaluation(Session.load(args.folder, progress=False), args.guidance, args.steps)
        result["notes"] = args.note
        folder = Path(args.folder)
        pairs = result.pop("grid").values()  # (generated, reference) rows per prompt kind
        grid([list(row) for pair in pairs for row in pair], scale=2).save(folder / "evaluation_grid.png")
        (folder / "evaluation.json").write_text(json.dumps(result, indent=1))
        write_model_card(folder)
    return result


if __name__ == "__main__":
    main()
