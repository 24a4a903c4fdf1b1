"""The ``difftech-lab`` command: lab, generate, info, eval."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

TOUR = "notebooks/00_tour.ipynb"


def _session(args):
    from .models.loading import load_model
    from .session import Session

    # An empty DIFFTECH_MODEL means "not set", as for any environment variable.
    model = load_model(args.model or None, device=args.device, allow_pickle=args.allow_pickle)
    return Session(model, progress=False)


def cmd_generate(args) -> int:
    session = _session(args)
    options = dict(width=args.width, height=args.height, steps=args.steps, sampler=args.sampler,
                   schedule=args.schedule, cfg=args.cfg, cfg_rescale=args.cfg_rescale, seed=args.seed,
                   batch_size=args.batch_size)
    result = session.generate(args.prompt, args.negative_prompt, **options)
    out = Path(args.output)
    for k in range(len(result.images)):
        target = out if len(result.images) == 1 else out.with_name(f"{out.stem}-{k}{out.suffix}")
        result.save(target, index=k)
        print(target)
    print(f"nfe={result.nfe} time={result.timings['total']:.2f}s", file=sys.stderr)
    return 0


def cmd_info(args) -> int:
    import diffusers
    import torch
    import transformers

    from . import __version__
    from .models.loading import BUNDLED_MODEL

    info = {
        "difftech_lab": __version__, "python": platform.python_version(), "torch": torch.__version__,
        "diffusers": diffusers.__version__, "transformers": transformers.__version__,
        "cuda": torch.cuda.is_available(),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "bundled_model": str(BUNDLED_MODEL) if (BUNDLED_MODEL / "model_index.json").is_file() else "missing",
        "DIFFTECH_MODEL": os.environ.get("DIFFTECH_MODEL", ""),
    }
    if args.model:
        session = _session(args)
        info["model"] = {"name": session.model.name, "source": session.model.source,
                         "parameterisation": type(session.model_sampling).__name__,
                         "default_size": session.default_size, "dtype": str(session.dtype)}
    print(json.dumps(info, indent=2))
    return 0


def cmd_lab(args) -> int:
    from jupyterlab.labapp import main as lab_main

    argv = [f"--ServerApp.default_url=/lab/tree/{TOUR}"] if Path(TOUR).exists() else []
    if not os.environ.get("DISPLAY") and sys.platform.startswith("linux"):
        argv.append("--no-browser")  # headless: JupyterLab prints the URL to open
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        argv.append("--allow-root")  # containers and CI machines often run as root
    argv += args.lab_args
    sys.argv = ["jupyter-lab", *argv]
    return lab_main() or 0


def cmd_eval(args) -> int:
    from .training.evaluate import main as eval_main

    eval_main(args.eval_args)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="difftech-lab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def model_options(p):
        p.add_argument("--model", default=os.environ.get("DIFFTECH_MODEL"),
                       help="diffusers folder, hub id or .safetensors file (default: the bundled model)")
        p.add_argument("--device", default="auto")
        p.add_argument("--allow-pickle", action="store_true", help="load a .ckpt/.pt with weights_only=True")

    gen = sub.add_parser("generate", help="text to image, writes PNGs with the recipe embedded")
    gen.add_argument("prompt")
    gen.add_argument("-o", "--output", default="out.png")
    gen.add_argument("-n", "--negative-prompt", default="")
    gen.add_argument("--width", type=int)
    gen.add_argument("--height", type=int)
    gen.add_argument("--steps", type=int, default=20)
    gen.add_argument("--sampler", default="euler")
    gen.add_argument("--schedule", default="default")
    gen.add_argument("--cfg", type=float, default=None, help="guidance scale (default: the model's recommended one)")
    gen.add_argument("--cfg-rescale", type=float, default=0.0)
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--batch-size", type=int, default=1)
    model_options(gen)
    gen.set_defaults(func=cmd_generate)

    info = sub.add_parser("info", help="versions, device, model")
    model_options(info)
    info.set_defaults(func=cmd_info)

    lab = sub.add_parser("lab", help="JupyterLab on the tour notebook (other options go to JupyterLab)")
    lab.set_defaults(func=cmd_lab, passthrough="lab_args")

    ev = sub.add_parser("eval", help="score a model on the held-out prompts ([FOLDER] --images N --guidance G …)",
                        add_help=False)
    ev.set_defaults(func=cmd_eval, passthrough="eval_args")
    return parser


def main(argv=None) -> int:
    from .errors import DifftechError

    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if getattr(args, "passthrough", None):  # lab and eval hand their own options on
        setattr(args, args.passthrough, extra)
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return args.func(args)
    except DifftechError as err:
        print(f"difftech-lab: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
