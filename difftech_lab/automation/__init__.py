"""Batch runs, comparisons and their statistics."""

from .compare import Comparison, Row, adherence, compare, compare_calls, side_by_side

__all__ = ["Comparison", "Row", "adherence", "compare", "compare_calls", "side_by_side"]
