"""SchedulePlotter's JS on a static page with a fake model: controls edit traits, the plot draws curves."""

import pytest

from difftech_lab.sampling.schedules import exponential_sigmas, karras_sigmas
from difftech_lab.widgets.schedule_plotter import SchedulePlotter


@pytest.fixture
def plotter(static_widget):
    return static_widget(SchedulePlotter(steps=10))


def polyline_points(h, name, panel=0):
    pts = h.page.locator("[data-testid=plots] svg").nth(panel).locator(f"[data-testid=line-{name}]").get_attribute("points")
    return [tuple(map(float, p.split(","))) for p in pts.split()]


def test_every_schedule_is_drawn_on_both_panels(plotter):
    for name in ("karras", "exponential", "polyexponential", "flow"):
        assert len(polyline_points(plotter, name, 0)) == 10   # σ = 0 has no place on the log axis
        assert len(polyline_points(plotter, name, 1)) == 10
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


def test_used_sigmas_overlay_with_restart_segment(plotter):
    class FakeResult:
        sigmas_used = [14.6, 5.0, 2.0, 4.0, 1.0, 0.3, 0.0]   # a restart jumps back up to 4.0
    plotter.widget.show_result(FakeResult())
    plotter.push_keys(["used"])
    used = polyline_points(plotter, "used")
    assert len(used) == 6 and used[3][1] < used[2][1]        # the jump up is drawn as a rise
    assert plotter.page.get_by_test_id("pick-used").is_visible()
