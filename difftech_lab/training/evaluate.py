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
from difftech_lab.metrics import score, score_batch
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
    return {"one_image_20_steps_cfg_median_s": round(statistics.median(times[1:]), 3), "runs": runs}


def evaluate(folder, images: int = 200, steps: int = 20, guidance: float = DEFAULT_GUIDANCE, seed: int = 0,
             timing_runs: int = 5) -> dict:
    """Generate and score ``images`` single-object and ``images`` two-object held-out prompts."""
    pipe = load_pipeline(folder)
    result = {"steps": steps, "guidance_scale": guidance, "seeds": f"{seed}..{seed + images - 1}", "rows": {}, "grid": {}}
    for n_objects, name in ((1, "single object"), (2, "two objects")):
        specs = dataset.held_out_specs(n_objects, images)
        prompts = [scenes.caption(s) for s in specs]
        seeds = list(range(seed, seed + images))
        generated = generate(pipe, prompts, seeds, steps, guidance)
        result["rows"][name] = score_batch(list(generated), specs)
        result["grid"][name] = (generated[:16], np.stack([dataset.render(s).image for s in specs[:16]]))
        if n_objects == 1:
            result["reference"] = _reference(generated, prompts, seeds, steps, guidance)
    if timing_runs:
        result["timing"] = _timing(pipe, result["reference"]["prompt"], guidance, timing_runs)
    return result


def _reference(generated: np.ndarray, prompts: list[str], seeds: list[int], steps: int, guidance: float) -> dict:
    """The first generation that scores fully right (or the first one): what the tests regenerate and check."""
    scores = [score(g, p) for g, p in zip(generated, prompts)]
    i = next((k for k, s in enumerate(scores) if s.correct and s.background), 0)
    s = scores[i]
    return {"prompt": prompts[i], "seed": seeds[i], "steps": steps, "guidance_scale": guidance,
            "mean": round(float(generated[i].mean()), 2),
            "score": {"colour": s.objects[0].colour, "shape": s.objects[0].shape, "position": s.objects[0].position,
                      "background": s.background}}


def table(result: dict) -> str:
    head = f"{'prompts':<15}{'n':>5}{'colour':>9}{'shape':>9}{'position':>10}{'backgr.':>9}{'object':>9}{'all':>8}"
    lines = [head]
    for name, r in result["rows"].items():
        lines.append(f"{name:<15}{r['n']:>5}{r['colour']:>9.1%}{r['shape']:>9.1%}{r['position']:>10.1%}"
                     f"{r['background']:>9.1%}{r['object']:>9.1%}{r['all']:>8.1%}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="difftech-lab eval", description=__doc__)
    p.add_argument("folder", nargs="?", default=str(BUNDLED_MODEL))
    p.add_argument("--images", type=int, default=200, help="prompts per row (held-out, fixed seeds)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--guidance", type=float, default=DEFAULT_GUIDANCE)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timing-runs", type=int, default=5, help="timed single-image generations (0: none)")
    p.add_argument("--save", action="store_true", help="write evaluation.json, the grid PNG and the model card")
    if argv and argv[0] == "--":  # what `difftech-lab eval -- --images 50` forwards
        argv = argv[1:]
    args = p.parse_args(argv)
    started = time.time()
    result = evaluate(args.folder, args.images, args.steps, args.guidance, args.seed, args.timing_runs)
    print(table(result))
    print(f"timing: {result.get('timing')}; evaluation took {time.time() - started:.0f} s")
    if args.save:
        folder = Path(args.folder)
        pairs = result.pop("grid").values()  # (generated, reference) rows per prompt kind
        grid([list(row) for pair in pairs for row in pair], scale=2).save(folder / "evaluation_grid.png")
        (folder / "evaluation.json").write_text(json.dumps(result, indent=1))
        write_model_card(folder)
    return result


if __name__ == "__main__":
    main()
