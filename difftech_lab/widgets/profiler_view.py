"""ProfilerView: a profiled generation as a sortable, filterable op table, a per-step stacked timeline by
stage, memory over time, and a button that downloads the Chrome trace for Perfetto.

The two memory figures answer different questions: the table's memory columns are per-op totals (bytes an op
allocated minus bytes it freed, over all its calls, so negative where an op frees what others made), while
the chart shows the allocator's live bytes at each moment, whose peak is what the run needed at once.
"""

from __future__ import annotations

import traitlets

from ..errors import InvalidArgumentError
from ..profiling.profile import OpRow, ProfileReport
from ._base import Widget, binary_trait, load_esm

SORT_KEYS = tuple(OpRow.__dataclass_fields__)


class ProfilerView(Widget):
    """Shows a :class:`~difftech_lab.profiling.ProfileReport` (``profile_generation(session, ...)``).

    Sorting and filtering happen in the browser and sync back, so ``sort_by``, ``descending`` and ``filter``
    can also be set from Python. The trace travels to the browser only when the download button asks for it.
    """

    _esm = load_esm("profiler_view.js")

    ops = traitlets.List(traitlets.Dict()).tag(sync=True)
    timeline = traitlets.List(traitlets.Dict()).tag(sync=True)
    memory = traitlets.List(traitlets.Dict()).tag(sync=True)
    steps = traitlets.Int(0).tag(sync=True)
    sort_by = traitlets.Enum(SORT_KEYS, "self_cpu_us").tag(sync=True)
    descending = traitlets.Bool(True).tag(sync=True)
    filter = traitlets.Unicode("", help="substring of op names to show (case-insensitive)").tag(sync=True)
    row_limit = traitlets.Int(40, min=1, help="rows the table shows; its buttons show more, or all").tag(sync=True)
    trace = binary_trait(help="Chrome-trace JSON, sent on the first download request")
    download_request = traitlets.Int(0, help="incremented by the download button").tag(sync=True)
    trace_name = traitlets.Unicode("difftech_trace.json").tag(sync=True)

    def __init__(self, report: ProfileReport | None = None, **kwargs):
        super().__init__(**kwargs)
        self._report = None
        self.report = report
        self.observe(self._send_trace, names="download_request")

    @property
    def report(self) -> ProfileReport | None:
        return self._report

    @report.setter
    def report(self, report: ProfileReport | None) -> None:
        if report is not None and not isinstance(report, ProfileReport):
            raise InvalidArgumentError(f"ProfilerView shows a ProfileReport, got {type(report).__name__}; make one "
                                       "with difftech_lab.profiling.profile_generation(session, prompt=...)")
        self._report = report
        data = report.to_dict() if report is not None else {"ops": [], "timeline": [], "memory": [], "steps": 0}
        with self.hold_sync():
            self.trace = b""
            self.ops, self.timeline, self.memory, self.steps = data["ops"], data["timeline"], data["memory"], data["steps"]

    def _send_trace(self, change) -> None:
        if self._report is None:
            self.error = "no profile to download; set view.report = profile_generation(session, prompt=...)"
            return
        self.trace = self._report.trace_json

    def __repr__(self) -> str:
        return f"ProfilerView(steps={self.steps}, ops={len(self.ops)})"
