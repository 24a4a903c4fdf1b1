"""SchedulePlotter's JS on a static page with a fake model: controls edit traits, the plot draws curves."""

import pytest

from difftech_lab.models.parameterization import FlowMatch
from difftech_lab.sampling.schedules import SCHEDULES, exponential_sigmas, karras_sigmas, make_sigmas
from difftech_lab.widgets.schedule_plotter import SD_MODEL_SAMPLING, SchedulePlotter


@pytest.fixture
def plotter(static_widget):
    return static_widget(SchedulePlotter(steps=10))


def polyline(h, name, panel=0):
    return h.page.locator("[data-testid=plots] svg").nth(panel).locator(f"[data-testid=line-{name}]")


def polyline_points(h, name, panel=0):
    pts = polyline(h, name, panel).get_attribute("points")
    return [tuple(map(float, p.split(","))) for p in pts.split()]


def test_every_schedule_is_drawn_on_both_panels_in_its_colour(plotter):
    names = [name for name in SCHEDULES if name != "flow"]   # SD 1.x when no model is given: no flow schedule
    for name in names:
        assert len(polyline_points(plotter, name, 0)) == 10, name   # σ = 0 has no place on the log axis
        assert len(polyline_points(plotter, name, 1)) == 10, name
    colors = {c["name"]: c["color"] for c in plotter.widget.curves}
    assert {name: polyline(plotter, name).get_attribute("stroke") for name in names} == colors
    chips = plotter.page.get_by_test_id("legend").locator("button").all_inner_texts()
    assert [chip[2:] for chip in chips] == names
    assert plotter.page.get_by_test_id("rho").is_visible()
    assert not plotter.page.get_by_test_id("shift").is_visible()   # no flow schedule for the shift to tune
    karras = polyline_points(plotter, "karras", 0)
    assert all(b[1] > a[1] for a, b in zip(karras, karras[1:]))   # σ decreases: screen y increases
    plotter.screenshot("static_schedule_plotter")


def test_steps_control_changes_sigmas(plotter):
    steps = plotter.page.get_by_test_id("steps")
    steps.fill("6")
    steps.press("Enter")
    assert plotter.saves() == [["steps"]]
    widget = plotter.pull()
    assert widget.steps == 6
    assert widget.sigmas.tolist() == karras_sigmas(6, widget.sigma_min, widget.sigma_max, 7.0).tolist()
    plotter.push_keys(["curves"])
    assert len(polyline_points(plotter, "karras")) == 6


def test_legend_picks_the_schedule(plotter):
    plotter.page.get_by_test_id("pick-exponential").click()
    widget = plotter.pull()
    assert widget.schedule == "exponential"
    assert widget.sigmas.tolist() == exponential_sigmas(10, widget.sigma_min, widget.sigma_max).tolist()
    plotter.page.get_by_test_id("pick-default").click()
    assert plotter.pull().sigmas.tolist() == make_sigmas("default", SD_MODEL_SAMPLING, 10).tolist()
    plotter.push_keys(["schedule"])
    assert polyline(plotter, "default").get_attribute("stroke-width") == "3"


def test_flow_model_draws_the_flow_schedule(static_widget):
    h = static_widget(SchedulePlotter(FlowMatch(shift=3.0), steps=8))
    assert len(polyline_points(h, "flow")) == 9   # σ = 0 too: a flow's σ axis is linear
    assert h.page.get_by_test_id("pick-flow").is_visible() and h.page.get_by_test_id("shift").is_visible()
    h.push(shown=["default", "leading"])
    h.push_keys(["curves"])
    assert not h.page.get_by_test_id("shift").is_visible() and not h.page.get_by_test_id("rho").is_visible()
    assert h.page.get_by_test_id("sigma_min").is_visible()


def test_used_sigmas_overlay_with_restart_segment(plotter):
    class FakeResult:
        sigmas_used = [14.6, 5.0, 2.0, 4.0, 1.0, 0.3, 0.0]   # a restart jumps back up to 4.0
    plotter.widget.show_result(FakeResult())
    plotter.push_keys(["used"])
    used = polyline_points(plotter, "used")
    assert len(used) == 6 and used[3][1] < used[2][1]        # the jump up is drawn as a rise
    assert polyline(plotter, "used").get_attribute("stroke") == "#000"
    markers = plotter.page.locator("[data-testid=plots] svg").first.locator("[data-testid=marks-used] circle")
    assert markers.count() == 6
    assert plotter.page.get_by_test_id("legend-used").is_visible()


def used_result(sigmas):
    class FakeResult:
        sigmas_used = list(sigmas)
    return FakeResult()


def test_sigma_boxes_show_four_significant_digits_in_full(plotter):
    box = plotter.page.get_by_test_id("sigma_min")
    assert box.input_value() == "0.02917" and plotter.page.get_by_test_id("sigma_max").input_value() == "14.61"
    assert box.evaluate("(el) => el.scrollWidth <= el.clientWidth"), "the value fits its box"
    assert f"{plotter.widget.sigma_min}" in box.get_attribute("title"), "the exact value on hover"
    box.fill("5")
    box.press("Escape")
    assert box.input_value() == "0.02917" and plotter.saves() == [], "Escape abandons the edit"


def test_a_run_of_another_step_count_is_drawn_against_the_run_fraction(static_widget):
    plotter = SchedulePlotter(steps=8, schedule="karras")
    plotter.show_result(used_result(make_sigmas("karras", SD_MODEL_SAMPLING, 20).tolist()))
    h = static_widget(plotter)
    assert h.root.get_attribute("data-axis") == "fraction"
    assert h.page.locator("[data-testid=x-label]").first.text_content() == "run fraction (step ÷ steps)"
    used, karras = polyline_points(h, "used"), polyline_points(h, "karras")
    assert used[0][0] == karras[0][0] and used[10][0] == pytest.approx(karras[4][0]), "half-way lines up"
    h.push(steps=20)
    h.push_keys(["curves"])
    assert h.root.get_attribute("data-axis") == "step"
    assert h.page.locator("[data-testid=x-label]").first.text_content() == "step"


def test_used_markers_leave_the_line_they_follow_visible(static_widget):
    plotter = SchedulePlotter(steps=10, schedule="karras")
    plotter.show_result(used_result(make_sigmas("default", SD_MODEL_SAMPLING, 10).tolist()))
    h = static_widget(plotter)
    order = h.page.evaluate("""() => [...document.querySelector("[data-testid=plots] svg").children]
        .map((n) => n.dataset.testid).filter(Boolean)""")
    assert order.index("line-used") < order.index("line-default") < order.index("marks-used"), \
        "the run's connector under the schedules, its markers over them"
    assert float(polyline(h, "used").get_attribute("stroke-opacity")) < 0.5
    fills = h.page.locator("[data-testid=marks-used] circle").evaluate_all(
        "(cs) => cs.map((c) => c.getAttribute('fill'))")
    assert set(fills) == {"none"}, "hollow markers: the default line shows through"
    h.screenshot("static_schedule_plotter_used")


def test_legend_says_its_chips_choose_and_used_is_not_a_choice(plotter):
    plotter.widget.show_result(used_result([14.6, 5.0, 1.0, 0.0]))
    plotter.push_keys(["used"])
    legend = plotter.page.get_by_test_id("legend")
    assert "click to use" in plotter.page.get_by_test_id("legend-hint").inner_text()
    karras = plotter.page.get_by_test_id("pick-karras")
    assert karras.get_attribute("aria-checked") == "true" and karras.inner_text().startswith("●")
    assert "use karras" in karras.get_attribute("title")
    assert plotter.page.get_by_test_id("pick-exponential").inner_text().startswith("○")
    used = plotter.page.get_by_test_id("legend-used")
    assert used.evaluate("(el) => el.tagName") == "SPAN" and plotter.style(used, "cursor") == "default"
    assert "not selectable" in used.get_attribute("title")
    assert legend.locator("[data-testid=pick-used]").count() == 0


def test_flow_schedules_are_labelled_as_flow_time_on_a_linear_axis(static_widget):
    h = static_widget(SchedulePlotter(FlowMatch(shift=3.0), steps=8))
    titles = h.page.locator("[data-testid=panel-title]").all_text_contents()
    assert titles == ["σ = flow time t (0 = clean, 1 = noise)", "log-SNR = 2 ln((1−σ)/σ)"]
    ticks = h.page.locator("[data-testid=plots] svg").first.locator("[data-testid=y-tick]").all_text_contents()
    assert ticks == ["0", "0.25", "0.5", "0.75", "1"]
    assert len(polyline_points(h, "flow", 1)) == 7, "log-SNR is infinite at σ = 1 and σ = 0"
    h.screenshot("static_schedule_plotter_flow")
