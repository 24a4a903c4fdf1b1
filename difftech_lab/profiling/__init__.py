"""Profiling a generation: torch.profiler ranges per stage, read back as a report for ProfilerView."""

from .profile import MemorySample, OpRow, ProfileReport, StageSpan, profile_generation, report_from_profiler

__all__ = ["MemorySample", "OpRow", "ProfileReport", "StageSpan", "profile_generation", "report_from_profiler"]
