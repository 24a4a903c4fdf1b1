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
