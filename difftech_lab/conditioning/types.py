"""What the prompt compiler produces and the guider consumes."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class Embedding:
    """One encoded text: token hidden states ``[1, T, D]`` and, for SDXL, the pooled vector ``[1, P]``."""

    hidden: torch.Tensor
    pooled: torch.Tensor | None = None


@dataclass
class CondTerm:
    """One prompt term of a composable-AND sum, possibly changing over the steps.

    ``schedule`` lists ``(until_step, embedding)`` pairs in A1111's convention: the embedding is used for
    1-based steps ``<= until_step`` (``prompt_schedules`` in ``prompt_parser`` produces the same pairs for text).
    ``weight`` is the AND weight (negative for NOT). ``mask`` (``[1, 1, h, w]`` at latent size, in [0, 1])
    restricts the term to a region, as its share of each latent pixel; ``None`` means the whole canvas.
    ``negative`` is a masked term's own negative (a region's negative prompt), used under its mask in place of
    the conditioning's; ``None``: the conditioning's.
    """

    schedule: list[tuple[int, Embedding]]
    weight: float = 1.0
    mask: torch.Tensor | None = None
    negative: "CondTerm | None" = None

    def at(self, step: int) -> Embedding:
        """The embedding in force at 0-based sampler step ``step``."""
        for until, emb in self.schedule:
            if step + 1 <= until:
                return emb
        return self.schedule[-1][1]

    @classmethod
    def constant(cls, embedding: Embedding, weight: float = 1.0) -> "CondTerm":
        return cls(schedule=[(1 << 30, embedding)], weight=weight)


@dataclass
class Conditioning:
    """Positive AND terms and the negative (unconditional) term of one generation."""

    terms: list[CondTerm]
    negative: CondTerm
    extras: dict = field(default_factory=dict)
