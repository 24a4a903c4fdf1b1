"""ProfilerView's front end on the static page: sort, filter, charts, the Perfetto download."""

import json

import pytest

from difftech_lab.profiling import profile_generation
from difftech_lab.widgets.profiler_view import ProfilerView

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def report(tiny_session):
    return profile_generation(tiny_session, prompt="a red square", steps=3, progress=False)


def _names(page):
    return page.get_by_test_id("op-row").evaluate_all("(rows) => rows.map((r) => r.dataset.name)")


def _column(page, index):
    return page.get_by_test_id("op-row").evaluate_all(f"(rows) => rows.map((r) => r.cells[{index}].textContent)")


def test_table_sorts_by_clicked_column(static_widget, report):
    view = ProfilerView(report, row_limit=1000)
    h = static_widget(view)
    by_self = sorted(view.ops, key=lambda r: r["self_cpu_us"], reverse=True)
    assert _names(h.page) == [r["name"] for r in by_self]
    h.page.get_by_test_id("th-calls").click()
    assert h.model_get("sort_by") == "calls" and h.model_get("descending") is True
    calls = [int(c) for c in _column(h.page, 1)]
    assert calls == sorted(calls, reverse=True)
    h.page.get_by_test_id("th-calls").click()
    calls = [int(c) for c in _column(h.page, 1)]
    assert calls == sorted(calls) and h.model_get("descending") is False
    h.page.get_by_test_id("th-name").click()
    assert _names(h.page) == sorted(_names(h.page))
    h.pull()
    assert (view.sort_by, view.descending) == ("name", False)


def test_filter_narrows_rows_and_syncs(static_widget, report):
    h = static_widget(ProfilerView(report, row_limit=1000))
    h.page.get_by_test_id("filter").fill("DIFFTECH/")
    names = _names(h.page)
    assert set(names) == {r.name for r in report.ops if r.name.startswith("difftech/")}
    assert "difftech/model" in names and h.model_get("filter") == "DIFFTECH/"
    h.screenshot("static_profiler_filtered")


def test_kernel_side_filter_and_limit_rerender(static_widget, report):
    view = ProfilerView(report)
    h = static_widget(view)
    h.push(filter="aten::", row_limit=3)
    names = _names(h.page)
    assert len(names) == 3 and all(n.startswith("aten::") for n in names)
    assert h.page.get_by_test_id("filter").input_value() == "aten::"


def test_timeline_has_a_bar_per_phase_and_memory_a_curve(static_widget, report):
    h = static_widget(ProfilerView(report))
    labels = h.page.get_by_test_id("timeline-bar").evaluate_all("(gs) => gs.map((g) => g.dataset.label)")
    assert labels == [row["label"] for row in report.timeline()]
    assert labels[-1] == "decode" and [l for l in labels if l.startswith("step")] == ["step 0", "step 1", "step 2"]
    assert h.page.get_by_test_id("memory").locator("path[data-device='cpu']").count() == 1
    assert h.page.get_by_test_id("summary").inner_text().startswith("3 denoising steps")
    h.screenshot("static_profiler")


def test_download_asks_the_kernel_then_saves_the_trace(static_widget, report):
    view = ProfilerView(report)
    h = static_widget(view)
    h.page.get_by_test_id("download").click()
    assert h.model_get("download_request") == 1
    h.pull()  # the kernel sees the request and fills the trace trait
    assert view.trace == report.trace_json
    with h.page.expect_download() as info:
        h.push_keys(["trace"])
    download = info.value
    assert download.suggested_filename == "difftech_trace.json"
    assert "traceEvents" in json.loads(open(download.path()).read())


def _synthetic_report(n_ops=105):
    """A report with known figures: many ops (one freeing more than it allocates), stages a thousand times
    shorter than the model calls, and a memory curve with one peak."""
    from difftech_lab.profiling import MemorySample, OpRow, ProfileReport, StageSpan

    ops = [OpRow(f"aten::op{k:03d}", 1 + k, 1000.0 - k, 2000.0, 4096 * k, 8192 * k) for k in range(n_ops - 1)]
    ops.append(OpRow("aten::copy_", 3, 5.0, 5.0, -112 * 2**20, -112 * 2**20))
    spans = [StageSpan("encode_prompt", None, 0.0, 3.0, 3.0)]
    for i in range(3):
        t = 3.0 + 60.0 * i
        spans += [StageSpan("step", i, t, 60.0, 0.05), StageSpan("guidance", i, t, 59.95, 0.02),
                  StageSpan("model", i, t, 59.93, 59.93)]
    spans.append(StageSpan("decode", None, 183.0, 10.0, 10.0))
    memory = [MemorySample(float(t), a, "cpu") for t, a in [(0, 0), (50, 1_000_000), (90, 2_065_000), (120, 500_000),
                                                              (193, 400_000)]]
    return ProfileReport(ops=ops, stages=spans, memory=memory, steps=3, trace_json=b"{}")


def test_negative_memory_is_explained(static_widget):
    h = static_widget(ProfilerView(_synthetic_report(), filter="copy_"))
    assert "freed" in h.page.get_by_test_id("th-self_cpu_memory").get_attribute("title")
    cell = h.page.get_by_test_id("op-row").locator("td").nth(4)
    assert cell.inner_text() == "-112.00 MB" and cell.get_attribute("title") == "freed 112.00 MB more than it allocated"
    note = h.page.get_by_test_id("table-note")
    assert note.is_visible() and "negative value means the op freed more than it allocated" in note.inner_text()


def test_rows_past_the_limit_can_be_shown(static_widget):
    view = ProfilerView(_synthetic_report())
    h = static_widget(view)
    rows = h.page.get_by_test_id("op-row")
    assert rows.count() == 40 and h.page.get_by_test_id("row-count").inner_text().startswith("40 of 105")
    h.page.get_by_test_id("show-more").click()
    assert rows.count() == 80 and h.model_get("row_limit") == 80
    assert h.page.get_by_test_id("show-more").inner_text() == "25 more"
    h.page.get_by_test_id("show-all").click()
    assert rows.count() == 105 and not h.page.get_by_test_id("show-all").is_visible()
    h.pull()
    assert view.row_limit == 105
    h.page.get_by_test_id("show-fewer").click()
    assert rows.count() == 40


def test_short_stages_stay_visible_and_the_legend_gives_their_time(static_widget):
    h = static_widget(ProfilerView(_synthetic_report()))
    step = h.page.locator("[data-testid=timeline-bar][data-label='step 1']")
    heights = step.locator("rect").evaluate_all(
        "(rs) => Object.fromEntries(rs.map((r) => [r.dataset.stage, r.getBBox().height]))")
    assert set(heights) == {"model", "guidance", "step"}
    assert heights["guidance"] >= 2 and heights["step"] >= 2 and heights["model"] > 100
    legend = {e.get_attribute("data-stage"): e.inner_text() for e in h.page.get_by_test_id("legend-item").all()}
    assert list(legend) == ["encode_prompt", "model", "guidance", "step", "decode"]
    assert "guidance combine 0.06 ms" in legend["guidance"] and "sampler (rest of step) 0.15 ms" in legend["step"]


def test_axes_have_round_ticks(static_widget):
    h = static_widget(ProfilerView(_synthetic_report()))
    ticks = h.page.get_by_test_id("timeline-tick").evaluate_all("(ts) => ts.map((t) => t.textContent)")
    assert ticks == ["0 ms", "20 ms", "40 ms", "60 ms"]  # the tallest phase is a step of 60 ms
    memory = h.page.get_by_test_id("memory-tick").evaluate_all("(ts) => ts.map((t) => t.textContent)")
    assert memory[0] == "0" and len(memory) >= 3 and all(m.endswith(" MB") for m in memory[1:])
    values = h.page.get_by_test_id("memory-tick").evaluate_all("(ts) => ts.map((t) => Number(t.dataset.value))")
    assert values == sorted(values) and values[-1] >= 2_065_000


def test_the_memory_chart_says_what_it_measures(static_widget):
    h = static_widget(ProfilerView(_synthetic_report()))
    assert h.page.get_by_test_id("memory-peak").text_content() == "peak 1.97 MB at 90.0 ms (cpu)"
    note = h.page.get_by_test_id("memory-note").inner_text()
    assert "Bytes held by the allocator" in note and "added up over all its calls" in note
    h.page.get_by_test_id("show-all").click()
    h.screenshot("static_profiler_synthetic")
