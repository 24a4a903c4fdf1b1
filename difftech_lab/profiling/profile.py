"""Profile one generation (or any technique call) with ``torch.profiler``: op table, per-step stage timeline,
memory over time.

The Session marks its stages with ``record_function`` ranges (``difftech/encode_prompt``, ``difftech/step``,
``difftech/model``, ``difftech/guidance``, ``difftech/decode``); :func:`profile_generation` subscribes to the
step events to call ``prof.step()`` once per denoising step, and :class:`ProfileReport` reads the ranges and
the allocator's ``[memory]`` events back out of the Chrome trace, so the timeline, the memory curve and the
file a user opens in Perfetto (https://ui.perfetto.dev) share one clock.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

STAGE_PREFIX = "difftech/"
STEP = STAGE_PREFIX + "step"
MAX_MEMORY_SAMPLES = 2000  # enough for a smooth curve; a big model's trace holds far more allocator events


@dataclass
class OpRow:
    """One row of the op table (``key_averages()``); times in µs, memory in bytes."""

    name: str
    calls: int  # every figure below is a total over the calls
    self_cpu_us: float
    cpu_total_us: float
    self_cpu_memory: int  # bytes allocated minus bytes freed inside the op: negative when it frees others' tensors
    cpu_memory: int  # the same with the ops it called
    self_device_us: float = 0.0
    device_total_us: float = 0.0
    self_device_memory: int = 0


@dataclass
class StageSpan:
    """One ``difftech/<stage>`` range: ``self_ms`` excludes the difftech ranges nested inside it."""

    stage: str
    step: int | None
    start_ms: float
    duration_ms: float
    self_ms: float


@dataclass
class MemorySample:
    """Bytes allocated on ``device`` just after an allocator event at ``t_ms``: the allocator's live total at
    that moment (unlike :class:`OpRow`'s memory, which adds up allocations minus frees per op over its calls)."""

    t_ms: float
    allocated: int
    device: str


@dataclass
class ProfileReport:
    """What a profiled generation produced; ``result`` is the generation's own Result."""

    ops: list[OpRow]
    stages: list[StageSpan]  # every difftech range, in start order
    memory: list[MemorySample]
    steps: int
    trace_json: bytes = field(repr=False)
    result: Any = field(default=None, repr=False)

    def timeline(self) -> list[dict]:
        """One row per phase (``encode``, ``step 0`` …, ``decode``): start and exclusive ms per stage."""
        rows: dict[str, dict] = {}
        for s in self.stages:
            label = _phase_label(s)
            row = rows.setdefault(label, {"label": label, "step": s.step, "start_ms": s.start_ms, "stages": {}})
            row["start_ms"] = min(row["start_ms"], s.start_ms)
            row["stages"][s.stage] = row["stages"].get(s.stage, 0.0) + s.self_ms
        return sorted(rows.values(), key=lambda r: r["start_ms"])

    def to_dict(self) -> dict:
        """Everything but the trace, JSON-able (what ProfilerView shows)."""
        return {
            "ops": [asdict(o) for o in self.ops],
            "timeline": self.timeline(),
            "memory": [asdict(m) for m in self.memory],
            "steps": self.steps,
        }

    def export_chrome_trace(self, path: str | os.PathLike) -> str:
        """Write the Chrome trace JSON (open it at https://ui.perfetto.dev or chrome://tracing)."""
        with open(path, "wb") as f:
            f.write(self.trace_json)
        return os.fspath(path)

    def export_tensorboard(self, log_dir: str | os.PathLike) -> str:
        """Write the trace where TensorBoard's profiler plugin looks, named as ``tensorboard_trace_handler`` does."""
        os.makedirs(log_dir, exist_ok=True)
        name = f"{socket.gethostname()}_{os.getpid()}.{time.time_ns()}.pt.trace.json"
        return self.export_chrome_trace(os.path.join(log_dir, name))

    def __repr__(self) -> str:
        return (f"ProfileReport(steps={self.steps}, ops={len(self.ops)}, stages={len(self.stages)}, "
                f"memory_samples={len(self.memory)})")


def profile_generation(session, *, call=None, profile_memory: bool = True, record_shapes: bool = False,
                       with_stack: bool = False, **options) -> ProfileReport:
    """Run ``call(**options)`` under ``torch.profiler`` and read it back as a report.

    ``call`` is any technique call that takes step-event ``subscribers`` (``session.img2img``,
    ``session.inpaint``, ``session.run`` …); it defaults to ``session.generate``. The profiler's per-step marker
    is added to ``subscribers``, so a ``callback`` in ``options`` reaches the call unchanged.
    """
    call = session.generate if call is None else call
    activities = [ProfilerActivity.CPU]
    if torch.cuda.is_available():
        activities.append(ProfilerActivity.CUDA)
    prof = profile(activities=activities, profile_memory=profile_memory, record_shapes=record_shapes,
                   with_stack=with_stack)

    def mark_step(event):
        prof.step()

    subscribers = [*options.pop("subscribers", ()), mark_step]
    with _quiet_native_stderr():
        prof.start()
    try:
        result = call(subscribers=subscribers, **options)
    finally:
        with _quiet_native_stderr():
            prof.stop()
    return report_from_profiler(prof, result)


@contextmanager
def _quiet_native_stderr():
    """Kineto logs ``USDT: … profiler_start``/``profiler_stop`` with a timestamp straight to file descriptor 2,
    which Jupyter shows as a stderr output (and nbval compares); hide fd 2 while the profiler starts and stops."""
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def report_from_profiler(prof, result=None) -> ProfileReport:
    """Build a :class:`ProfileReport` from a finished ``torch.profiler.profile``."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "trace.json")
        prof.export_chrome_trace(path)
        with open(path, "rb") as f:
            trace_json = f.read()
    events = json.loads(trace_json)["traceEvents"]
    spans, memory = _spans_and_memory(events)
    steps = sum(1 for s in spans if s.stage == "step")
    return ProfileReport(ops=_op_rows(prof), stages=spans, memory=memory, steps=steps,
                         trace_json=trace_json, result=result)


def _op_rows(prof) -> list[OpRow]:
    rows = []
    for k in prof.key_averages():
        rows.append(OpRow(
            name=k.key, calls=int(k.count),
            self_cpu_us=float(k.self_cpu_time_total), cpu_total_us=float(k.cpu_time_total),
            self_cpu_memory=int(k.self_cpu_memory_usage), cpu_memory=int(k.cpu_memory_usage),
            self_device_us=float(getattr(k, "self_device_time_total", 0.0)),
            device_total_us=float(getattr(k, "device_time_total", 0.0)),
            self_device_memory=int(getattr(k, "self_device_memory_usage", 0)),
        ))
    return sorted(rows, key=lambda r: r.self_cpu_us, reverse=True)


def _spans_and_memory(events: list[dict]) -> tuple[list[StageSpan], list[MemorySample]]:
    ranges = _stage_ranges(events)
    allocs = sorted((e for e in events if e.get("name") == "[memory]" and "Total Allocated" in e.get("args", {})),
                    key=lambda e: e["ts"])
    stamps = [e["ts"] for e in ranges + allocs]
    t0 = min(stamps) if stamps else 0.0
    step_ranges = [e for e in ranges if e["name"] == STEP]

    def step_of(e):
        for i, s in enumerate(step_ranges):
            if _contains(s, e) or s is e:
                return i
        return None

    spans = []
    for e in ranges:
        inside = [c for c in ranges if _contains(e, c)]
        direct = [c for c in inside if not any(_contains(o, c) for o in inside)]
        dur = float(e.get("dur", 0))
        self_us = dur - sum(float(c.get("dur", 0)) for c in direct)
        spans.append(StageSpan(stage=e["name"][len(STAGE_PREFIX):], step=step_of(e),
                               start_ms=(e["ts"] - t0) / 1e3, duration_ms=dur / 1e3, self_ms=self_us / 1e3))
    memory = [MemorySample(t_ms=(e["ts"] - t0) / 1e3, allocated=int(e["args"]["Total Allocated"]),
                           device=_device_name(e["args"]))
              for e in _thin(allocs, MAX_MEMORY_SAMPLES)]
    return spans, memory


def _thin(allocs: list[dict], limit: int) -> list[dict]:
    """At most about ``limit`` allocator events per device, keeping each run of events' lowest and highest in
    time order: taking every k-th event would drop short spikes, and the peak is what a memory chart is read for."""
    by_device: dict[str, list[dict]] = {}
    for e in allocs:
        by_device.setdefault(_device_name(e["args"]), []).append(e)
    kept = []
    for events in by_device.values():
        if len(events) <= limit:
            kept += events
            continue
        size = -(-2 * len(events) // limit)  # two events kept per run
        for k in range(0, len(events), size):
            run = events[k:k + size]
            total = [e["args"]["Total Allocated"] for e in run]
            kept += [run[i] for i in sorted({total.index(min(total)), total.index(max(total))})]
    return sorted(kept, key=lambda e: e["ts"])


def _stage_ranges(events: list[dict]) -> list[dict]:
    """The ``difftech/<stage>`` ranges the Session marks, in start order (outer before inner)."""
    ranges = [e for e in events if e.get("ph") == "X" and str(e.get("name", "")).startswith(STAGE_PREFIX)]
    return sorted(ranges, key=lambda e: (e["ts"], -e.get("dur", 0)))


def _phase_label(span: StageSpan) -> str:
    if span.step is not None:
        return f"step {span.step}"
    return {"encode_prompt": "encode", "decode": "decode"}.get(span.stage, span.stage)


def _contains(outer: dict, inner: dict) -> bool:
    """Whether ``inner`` lies within ``outer`` on the same thread and is not the same interval."""
    if outer.get("tid") != inner.get("tid") or outer.get("pid") != inner.get("pid"):
        return False
    o0, o1 = outer["ts"], outer["ts"] + outer.get("dur", 0)
    i0, i1 = inner["ts"], inner["ts"] + inner.get("dur", 0)
    return o0 <= i0 and i1 <= o1 and (o0, -o1) < (i0, -i1)


def _device_name(args: dict) -> str:
    # Device Type follows c10::DeviceType: 0 is CPU, 1 CUDA
    kind = {0: "cpu", 1: "cuda"}.get(int(args.get("Device Type", 0)), f"device{args.get('Device Type')}")
    index = int(args.get("Device Id", -1))
    return kind if index < 0 else f"{kind}:{index}"
