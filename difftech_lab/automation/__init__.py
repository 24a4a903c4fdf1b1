"""Batch runs, comparisons and their statistics."""

from .compare import Comparison, Row, adherence, compare

__all__ = ["Comparison", "Row", "adherence", "compare"]
