"""Per-step curves: any guider scalar may be a number, a list with one value per step, or a function."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Union

from ..errors import InvalidArgumentError

Curve = Union[float, int, Sequence[float], Callable[[int, int], float]]


def curve_value(curve: Curve, step: int, steps: int, name: str = "value") -> float:
    """The value of ``curve`` at 0-based ``step`` of ``steps``.

    A sequence shorter than ``steps`` holds its last value; a callable is called as ``f(step, steps)``.
    """
    if callable(curve):
        return float(curve(step, steps))
    if isinstance(curve, (int, float)):
        return float(curve)
    values = list(curve)
    if not values:
        raise InvalidArgumentError(f"{name} curve is empty; give a number or one value per step")
    return float(values[min(step, len(values) - 1)])


def curve_values(curve: Curve, steps: int, name: str = "value") -> list[float]:
    """The whole curve as one value per step (what the Recipe records)."""
    return [curve_value(curve, i, steps, name) for i in range(steps)]
