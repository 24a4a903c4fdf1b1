"""Cold start: a fresh process's ``Session()`` against diffusers' ``StableDiffusionPipeline.from_pretrained`` of the
same folder, each timed inside its own new interpreter from before the import to a loaded model.

Rounds alternate the two so drift in machine load hits both alike; prints the median of each and the median of the
per-round ratios (Session / diffusers).

    python benchmarks/cold_start.py [--model FOLDER] [--rounds 7]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

_SESSION = """
import time; t = time.perf_counter()
from difftech_lab import Session
Session.load({model!r}, device="cpu", progress=False)
print(time.perf_counter() - t)
"""
_DIFFUSERS = """
import time; t = time.perf_counter()
import os; os.environ["HF_HUB_OFFLINE"] = "1"
from diffusers import StableDiffusionPipeline
StableDiffusionPipeline.from_pretrained({model!r}, safety_checker=None, requires_safety_checker=False)
print(time.perf_counter() - t)
"""


def _seconds(code: str) -> float:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="a diffusers folder (default: the bundled model)")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    from difftech_lab.models import bundled_model_path
    model = str(args.model or bundled_model_path())
    _seconds(_DIFFUSERS.format(model=model))  # warm the file cache for both
    session, diffusers = [], []
    for _ in range(args.rounds):
        diffusers.append(_seconds(_DIFFUSERS.format(model=model)))
        session.append(_seconds(_SESSION.format(model=model)))
    result = {"session_s": round(statistics.median(session), 2), "diffusers_s": round(statistics.median(diffusers), 2),
              "ratio_median": round(statistics.median(s / d for s, d in zip(session, diffusers)), 2),
              "rounds": args.rounds}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
