"""StepPreview's front end on the static page: live frames, the scrubber, branch and stop buttons."""

import pytest
import torch

from difftech_lab.sampling.events import StepEvent
from difftech_lab.widgets.step_preview import StepPreview

pytestmark = pytest.mark.browser


def _feed(preview, steps=6):
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(1, 4, 16, 16, generator=g)
    for i in range(steps):
        sigma = float(steps - i)
        preview(StepEvent(i=i, steps=steps, sigma=sigma, sigma_hat=sigma, x=x0 + sigma * torch.randn(x0.shape, generator=g),
                          denoised=x0.roll(3 * i, -1), nfe=i + 1, elapsed=0.0))


@pytest.fixture
def finished():
    preview = StepPreview()
    _feed(preview)
    return preview


def _src(page, testid):
    return page.get_by_test_id(testid).get_attribute("src")


def test_scrubber_shows_each_step_without_the_kernel(static_widget, finished):
    h = static_widget(finished)
    assert h.root.get_attribute("data-step") == "5"
    assert h.page.get_by_test_id("step-label").inner_text() == "step 6/6 · σ 1.000"
    last = _src(h.page, "x0")
    scrubber = h.page.get_by_test_id("scrubber")
    box = scrubber.bounding_box()
    h.page.mouse.move(box["x"] + box["width"] - 2, box["y"] + box["height"] / 2)
    h.page.mouse.down()
    h.page.mouse.move(box["x"] + 2, box["y"] + box["height"] / 2, steps=6)
    assert h.root.get_attribute("data-step") == "0", "the frame follows the pointer during the drag"
    assert h.saves() == [], "the step syncs at release, not during the drag"
    h.page.mouse.up()
    assert h.saves() == [["step"]] and h.model_get("step") == 0
    assert _src(h.page, "x0") != last
    assert h.page.get_by_test_id("step-label").inner_text() == "step 1/6 · σ 6.000"
    assert h.page.get_by_test_id("branch").inner_text() == "branch from step 1"
    h.screenshot("static_step_preview")


def test_arrow_keys_step_the_scrubber(static_widget, finished):
    h = static_widget(finished)
    scrubber = h.page.get_by_test_id("scrubber")
    scrubber.focus()
    scrubber.press("ArrowLeft")
    scrubber.press("ArrowLeft")
    assert h.model_get("step") == 3 and h.root.get_attribute("data-step") == "3"


def test_kernel_step_and_live_frames_rerender(static_widget, finished):
    h = static_widget(finished)
    h.push(step=2)
    assert h.root.get_attribute("data-step") == "2"
    assert h.page.get_by_test_id("scrubber").input_value() == "2"
    frame2 = _src(h.page, "x0")
    h.push(running=True, live_step=1, live_x0=finished.x0_frames[4], live_xt=finished.xt_frames[4])
    assert h.root.get_attribute("data-running") == "1"
    assert h.page.get_by_test_id("scrubber").is_disabled() and not h.page.get_by_test_id("stop").is_disabled()
    assert h.page.get_by_test_id("step-label").inner_text() == "step 2/6"
    assert _src(h.page, "x0") != frame2
    h.push(error="CancelledError: run cancelled at step 1")
    assert "CancelledError" in h.page.get_by_test_id("error").inner_text()


def test_branch_and_stop_buttons_bump_their_requests(static_widget, finished):
    h = static_widget(finished)
    h.page.get_by_test_id("branch-cfg").fill("3.5")
    h.page.get_by_test_id("branch-cfg").press("Enter")
    h.page.get_by_test_id("branch-prompt").fill("a blue circle")
    h.page.get_by_test_id("branch-prompt").press("Enter")
    h.page.get_by_test_id("branch").click()
    assert h.model_get("branch_request") == 1
    assert h.model_get("branch_cfg") == 3.5 and h.model_get("branch_prompt") == "a blue circle"
    h.push(running=True)
    h.page.get_by_test_id("stop").click()
    assert h.model_get("stop_request") == 1


def test_x_t_toggle_hides_the_noisy_thumbnail(static_widget, finished):
    h = static_widget(finished)
    assert h.page.get_by_test_id("xt").is_visible()
    h.page.get_by_test_id("show-xt").uncheck()
    assert not h.page.get_by_test_id("xt").is_visible() and h.model_get("show_xt") is False
