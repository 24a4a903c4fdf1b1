"""The structure of a profile (ranges, steps, table, memory, trace), never its timings."""

import json
from types import SimpleNamespace

import pytest
import torch
from torch.profiler import record_function

from difftech_lab.profiling import ProfileReport, profile_generation
from difftech_lab.profiling import profile as profile_module


class StagedSession:
    """Stands in for Session.generate: the same difftech/<stage> ranges, each step event to the subscribers,
    then to the callback."""

    def __init__(self):
        self.net = torch.nn.Linear(32, 32)
        self.callbacks = []

    @torch.no_grad()
    def generate(self, prompt="", *, steps=4, cfg=7.0, callback=None, subscribers=(), **_):
        self.callbacks.append(callback)
        listeners = [*subscribers, *([callback] if callback is not None else [])]
        with record_function("difftech/encode_prompt"):
            cond = self.net(torch.randn(2, 32))
        x = torch.randn(2, 32)
        for i in range(steps):
            with record_function("difftech/step"):
                with record_function("difftech/guidance"):
                    with record_function("difftech/model"):
                        out = self.net(torch.cat([x, x]) + cond.repeat(2, 1))
                    denoised = out[:2] + cfg * (out[2:] - out[:2])
                x = x + 0.1 * (denoised - x)
            for listener in listeners:
                listener(SimpleNamespace(i=i, steps=steps, x=x, denoised=denoised))
        with record_function("difftech/decode"):
            image = self.net(x).sum()
        return SimpleNamespace(images=[image], nfe=2 * steps)


@pytest.fixture(scope="module")
def report():
    return profile_generation(StagedSession(), prompt="a cat", steps=3)


def test_every_stage_range_is_found(report):
    stages = {s.stage for s in report.stages}
    assert stages == {"encode_prompt", "step", "model", "guidance", "decode"}
    assert report.steps == 3
    assert [s.step for s in report.stages if s.stage == "model"] == [0, 1, 2]
    assert {s.step for s in report.stages if s.stage in ("encode_prompt", "decode")} == {None}


def test_timeline_has_encode_steps_decode_in_order(report):
    rows = report.timeline()
    assert [r["label"] for r in rows] == ["encode", "step 0", "step 1", "step 2", "decode"]
    assert set(rows[1]["stages"]) == {"step", "guidance", "model"}
    starts = [r["start_ms"] for r in rows]
    assert starts == sorted(starts)


def test_nested_ranges_are_not_double_counted(report):
    for span in report.stages:
        assert 0 <= span.self_ms <= span.duration_ms + 1e-9
    step0 = [s for s in report.stages if s.step == 0]
    outer = next(s for s in step0 if s.stage == "step")
    assert sum(s.self_ms for s in step0) == pytest.approx(outer.duration_ms, rel=1e-6)


def test_op_table_counts_calls(report):
    by_name = {row.name: row for row in report.ops}
    assert by_name["difftech/model"].calls == 3
    assert by_name["difftech/step"].calls == 3
    assert by_name["aten::addmm"].calls >= 3 + 2  # the model per step, the encoder and the decoder
    assert all(row.cpu_total_us >= row.self_cpu_us - 1e-6 for row in report.ops)
    self_times = [row.self_cpu_us for row in report.ops]
    assert self_times == sorted(self_times, reverse=True)


def test_memory_samples_are_ordered_and_non_negative(report):
    assert report.memory, "profile_memory=True records allocator events"
    times = [m.t_ms for m in report.memory]
    assert times == sorted(times)
    assert all(m.allocated >= 0 and m.device == "cpu" for m in report.memory)


def test_chrome_trace_exports_valid_json(report, tmp_path):
    path = report.export_chrome_trace(tmp_path / "trace.json")
    trace = json.loads(open(path).read())
    names = {e.get("name") for e in trace["traceEvents"]}
    assert {"difftech/step", "difftech/model", "difftech/decode"} <= names


def test_to_dict_is_json_and_repr_is_stable(report):
    data = json.loads(json.dumps(report.to_dict()))
    assert set(data) == {"ops", "timeline", "memory", "steps"}
    assert repr(report).startswith("ProfileReport(steps=3, ")
    assert "trace_json" not in repr(report)


def test_user_callback_still_runs_and_result_is_kept():
    seen = []
    session = StagedSession()
    callback = lambda e: seen.append(e.i)  # noqa: E731
    report = profile_generation(session, steps=2, callback=callback)
    assert seen == [0, 1]
    assert session.callbacks == [callback], "the profiler subscribes beside the callback, never wraps it"
    assert isinstance(report, ProfileReport) and report.result.nfe == 4


@pytest.fixture
def profilers(monkeypatch):
    """The torch profilers profile_generation makes, kept so their step count can be read."""
    made = []

    class Kept(profile_module.profile):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(profile_module, "profile", Kept)
    return made


def test_the_profiler_steps_once_per_step_beside_the_users_subscribers(profilers):
    seen = []
    profile_generation(StagedSession(), steps=3, subscribers=[lambda e: seen.append(e.i)])
    assert seen == [0, 1, 2]
    assert profilers[0].step_num == 3


def test_any_technique_call_can_be_profiled(profilers):
    session = StagedSession()
    report = profile_generation(session, call=lambda **options: session.generate("an edit", **options), steps=2)
    assert report.steps == 2 and profilers[0].step_num == 2
    assert report.result.nfe == 4


def test_tensorboard_export_uses_the_plugin_file_name(report, tmp_path):
    path = report.export_tensorboard(tmp_path / "run")
    assert path.endswith(".pt.trace.json") and list((tmp_path / "run").glob("*.pt.trace.json"))


def test_a_real_session_marks_every_stage_of_every_step(tiny_session):
    report = profile_generation(tiny_session, prompt="a red circle", steps=3, width=32, height=32, cfg=3.0)
    assert report.steps == 3
    assert [r["label"] for r in report.timeline()] == ["encode", "step 0", "step 1", "step 2", "decode"]
    assert [s.step for s in report.stages if s.stage == "model"] == [0, 1, 2]
    assert [s.step for s in report.stages if s.stage == "guidance"] == [0, 1, 2]


def test_the_profiler_start_and_stop_lines_do_not_reach_stderr(capfd):
    """Kineto writes them to fd 2 with a timestamp; in a notebook they would become a changing stderr output."""
    import sys

    profile_generation(StagedSession(), steps=1)
    print("still here", file=sys.stderr)
    err = capfd.readouterr().err
    assert "profiler_start" not in err and "profiler_stop" not in err
    assert "still here" in err


def test_a_real_img2img_is_profiled_step_by_step(tiny_session, profilers):
    image = tiny_session.generate("a red circle", steps=1, width=32, height=32, cfg=3.0).images[0]
    report = profile_generation(tiny_session, call=tiny_session.img2img, image=image, prompt="a blue circle",
                                steps=4, strength=0.5, cfg=3.0)
    assert report.steps == 2 and profilers[0].step_num == 2
    assert report.result.recipe.technique == "img2img"


def test_thinning_the_memory_samples_keeps_every_peak():
    """A trace holds far more allocator events than a chart needs; a short spike must survive the thinning."""
    n = 10 * profile_module.MAX_MEMORY_SAMPLES
    spikes = {1234: 10_000_000, 7777: 9_000_000}
    events = [{"name": "[memory]", "ph": "i", "ts": float(k), "pid": 1, "tid": 1,
               "args": {"Total Allocated": spikes.get(k, 1000 + k % 7), "Device Type": 0, "Device Id": -1}}
              for k in range(n)]
    _, memory = profile_module._spans_and_memory(events)
    assert len(memory) <= profile_module.MAX_MEMORY_SAMPLES + 2
    assert max(m.allocated for m in memory) == 10_000_000
    assert {m.t_ms * 1e3 for m in memory} >= {1234.0, 7777.0}
    assert [m.t_ms for m in memory] == sorted(m.t_ms for m in memory)
