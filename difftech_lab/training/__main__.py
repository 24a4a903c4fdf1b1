"""``python -m difftech_lab.training <stage>``: the stages that build the bundled model, each resumable."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

STAGES = {  # stage -> (module, default steps, batch, learning rate)
    "vae": ("train_vae", 4000, 16, 1e-3),
    "text": ("train_text", 3000, 64, 1e-3),
    "unet": ("train_unet", 20000, 32, 1e-3),
    "gligen": ("train_gligen", 3000, 32, 5e-4),
}


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m difftech_lab.training", description=__doc__, allow_abbrev=False)
    p.add_argument("stage", choices=[*STAGES, "export", "export-gligen", "eval-gligen", "eval"])
    p.add_argument("--run-dir", help="checkpoints and log.jsonl (default runs/<stage>)")
    p.add_argument("--runs", default="runs", help="folder holding every stage's run")
    p.add_argument("--steps", type=int, help="total optimiser steps (a resumed run continues up to this)")
    p.add_argument("--minutes", type=float, default=1e9, help="stop (and save) after this much wall time")
    p.add_argument("--batch", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, help="torch CPU threads for this process")
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--save-every", type=int, default=250)
    p.add_argument("--out", help="export: the model folder to write; eval: the model folder to score")
    p.add_argument("--images", type=int, default=200, help="eval: prompts per table row")
    args, rest = p.parse_known_args(argv)
    args.rest = rest
    return args


def _record(args: argparse.Namespace, argv: list[str] | None) -> None:
    """Append the exact command to ``runs/commands.jsonl``; the model card lists them."""
    path = Path(args.runs)
    path.mkdir(parents=True, exist_ok=True)
    with open(path / "commands.jsonl", "a") as f:
        f.write(json.dumps({"time": time.strftime("%Y-%m-%d %H:%M:%S"), "argv": ["python -m difftech_lab.training",
                                                                             *(sys.argv[1:] if argv is None else argv)]}) + "\n")


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    _record(args, argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.stage == "export":
        from difftech_lab.training import export
        export.main(args)
        return
    if args.stage in ("export-gligen", "eval-gligen"):
        from difftech_lab.training import train_gligen
        (train_gligen.export if args.stage == "export-gligen" else train_gligen.validate)(args)
        return
    if args.stage == "eval":
        from difftech_lab.training import evaluate
        evaluate.main([args.out or "difftech_lab/bundled/tiny-shapes", "--images", str(args.images), *args.rest])
        return
    module, steps, batch, lr = STAGES[args.stage]
    args.run_dir = args.run_dir or f"{args.runs}/{args.stage}"
    args.steps, args.batch, args.lr = args.steps or steps, args.batch or batch, args.lr or lr
    __import__(f"difftech_lab.training.{module}", fromlist=["train"]).train(args)


if __name__ == "__main__":
    main(sys.argv[1:])
