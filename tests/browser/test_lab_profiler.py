"""ProfilerView in JupyterLab: sort and filter reach Python, Python-side filters re-render, trace download."""

import json

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]


SETUP = """from difftech_lab import Session
from difftech_lab.models.tiny import tiny_model
from difftech_lab.profiling import profile_generation
from difftech_lab.widgets.profiler_view import ProfilerView
s = Session(tiny_model(), progress=False)
report = profile_generation(s, prompt="a red square", steps=3, progress=False)
view = ProfilerView(report, row_limit=500)"""

NAMES = "(rows) => rows.map((r) => r.dataset.name)"


def test_sort_filter_and_download(lab):
    nb = lab.open([SETUP, "view"])
    nb.run_all()
    view = nb.widget("profiler-view")
    view.get_by_test_id("th-calls").click()
    assert nb.wait_until("view.sort_by", lambda v: v == "calls") == "calls"
    calls = view.get_by_test_id("op-row").evaluate_all("(rows) => rows.map((r) => Number(r.cells[1].textContent))")
    assert calls == sorted(calls, reverse=True) and len(calls) > 5

    view.get_by_test_id("filter").fill("difftech/")
    assert nb.wait_until("view.filter", lambda v: v == "difftech/") == "difftech/"
    names = view.get_by_test_id("op-row").evaluate_all(NAMES)
    assert {"difftech/encode_prompt", "difftech/model", "difftech/decode"} <= set(names)
    assert all(n.startswith("difftech/") for n in names)

    with nb.page.expect_download() as info:
        view.get_by_test_id("download").click()
    trace = json.loads(open(info.value.path()).read())
    assert any(e.get("name") == "difftech/model" for e in trace["traceEvents"])
    nb.screenshot("lab_profiler")


def test_python_side_filter_rerenders(lab):
    nb = lab.open([SETUP, "view"])
    nb.run_all()
    view = nb.widget("profiler-view")
    nb.execute("view.filter = 'aten::'; view.sort_by = 'name'; view.descending = False")
    nb.page.wait_for_function(
        "() => document.querySelector('[data-testid=profiler-view] [data-testid=filter]').value === 'aten::'")
    names = view.get_by_test_id("op-row").evaluate_all(NAMES)
    assert names and all(n.startswith("aten::") for n in names) and names == sorted(names)
    steps = view.get_by_test_id("timeline-bar").evaluate_all("(gs) => gs.map((g) => g.dataset.label)")
    assert steps == ["encode", "step 0", "step 1", "step 2", "decode"]


def test_the_row_limit_buttons_reach_python(lab):
    nb = lab.open([SETUP.replace("row_limit=500", "row_limit=5"), "view"])
    nb.run_all()
    view = nb.widget("profiler-view")
    total = nb.py("len(view.ops)")
    assert view.get_by_test_id("op-row").count() == 5
    view.get_by_test_id("show-all").click()
    assert nb.wait_until("view.row_limit", lambda v: v == total) == total
    assert view.get_by_test_id("op-row").count() == total
    assert "freed" in view.get_by_test_id("th-self_cpu_memory").get_attribute("title")
