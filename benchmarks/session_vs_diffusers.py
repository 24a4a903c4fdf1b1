"""Session.generate vs diffusers' StableDiffusionPipeline on the same components: Euler, 20 steps, CFG.

Runs alternate (diffusers, session, session with the prompt embedding cached) so drift in machine load hits
all three alike; prints the median time of each and the median of the per-round ratios.

    python benchmarks/session_vs_diffusers.py [--model PATH_OR_ID] [--rounds 15] [--steps 20]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="diffusers folder or hub id (default: the bundled model)")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--cfg", type=float, default=7.0)
    parser.add_argument("--prompt", default="a big red circle on the left on a white background")
    args = parser.parse_args(argv)

    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline

    from difftech_lab import Session
    from difftech_lab.models import bundled_model_path

    session = Session.from_pretrained(args.model or bundled_model_path(), progress=False)
    m = session.model
    pipe = StableDiffusionPipeline(
        vae=m.vae, text_encoder=m.text_encoders[0], tokenizer=m.tokenizers[0], unet=m.unet,
        scheduler=EulerDiscreteScheduler.from_config(m.scheduler_config), safety_checker=None,
        feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    width, height = session.default_size

    def run_diffusers():
        pipe(args.prompt, num_inference_steps=args.steps, guidance_scale=args.cfg, width=width, height=height,
             generator=torch.Generator("cpu").manual_seed(0))

    def run_session(cached: bool):
        if not cached:
            session.encoder.cache_clear()
        session.generate(args.prompt, steps=args.steps, sampler="euler", schedule="default", cfg=args.cfg,
                         width=width, height=height, seed=0)

    def timed(fn, *a):
        t = time.perf_counter()
        fn(*a)
        return time.perf_counter() - t

    for _ in range(2):  # warm-up: allocator, kernels, caches
        run_diffusers(), run_session(False), run_session(True)
    rows = []
    for _ in range(args.rounds):
        rows.append((timed(run_diffusers), timed(run_session, False), timed(run_session, True)))
    d, s, c = (statistics.median(col) for col in zip(*rows))
    ratio = statistics.median(r[1] / r[0] for r in rows)
    ratio_cached = statistics.median(r[2] / r[0] for r in rows)
    print(f"model={m.name} device={session.device.type} {width}x{height} steps={args.steps} cfg={args.cfg} "
          f"rounds={args.rounds} threads={torch.get_num_threads()}")
    print(f"diffusers  median {d * 1000:8.1f} ms")
    print(f"session    median {s * 1000:8.1f} ms   ratio {ratio:.3f}   (goal ≤ 1.0)")
    print(f"  cached   median {c * 1000:8.1f} ms   ratio {ratio_cached:.3f}   (goal ≤ 0.9)")


if __name__ == "__main__":
    main()
