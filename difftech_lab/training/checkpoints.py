"""A training run's folder: JSON-lines log, resumable checkpoint (tensors only, loaded with ``weights_only``)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch


class RunDir:
    """``runs/<stage>/``: ``log.jsonl`` (one record per logged step) and ``checkpoint.pt`` (the latest state)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.started = time.time()

    @property
    def checkpoint(self) -> Path:
        return self.path / "checkpoint.pt"

    def log(self, **record) -> None:
        record.setdefault("time", round(time.time() - self.started, 2))
        with open(self.path / "log.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()), flush=True)

    def save(self, state: dict) -> None:
        tmp = self.checkpoint.with_suffix(".tmp")
        torch.save(state, tmp)
        tmp.replace(self.checkpoint)  # atomic: a run killed mid-save keeps its previous checkpoint

    def load(self) -> dict | None:
        return torch.load(self.checkpoint, weights_only=True) if self.checkpoint.exists() else None

    def records(self) -> list[dict]:
        log = self.path / "log.jsonl"
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def ema_update(ema: dict[str, torch.Tensor], model: torch.nn.Module, decay: float) -> None:
    """Exponential moving average of the weights (Polyak averaging), in place, over the entries ``ema`` holds (all
    of the model's, or only the ones a stage trains)."""
    with torch.no_grad():
        state = model.state_dict()
        for name, e in ema.items():
            p = state[name]
            if p.dtype.is_floating_point:
                e.lerp_(p, 1 - decay)
            else:
                e.copy_(p)
