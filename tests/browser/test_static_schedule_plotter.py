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
    assert plotter.page.get_by_test_id("legend").locator("button").all_inner_texts() == names
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
    assert len(polyline_points(h, "flow")) == 8
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
    assert plotter.page.get_by_test_id("pick-used").is_visible()
