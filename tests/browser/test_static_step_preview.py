"""StepPreview's front end on the static page: live frames, the scrubber, branch and stop buttons."""

from types import SimpleNamespace

import pytest
import torch

from difftech_lab.errors import CancelledError
from difftech_lab.sampling.events import StepEvent
from difftech_lab.widgets.step_preview import StepPreview

pytestmark = pytest.mark.browser


class StubSession:
    """Session's contract as the widget uses it: step events to the callback, cancel after a step, branch from
    a step of a kept trajectory; the "preview" of a latent is its first three channels."""

    model_sampling = SimpleNamespace(scale_input=lambda x, sigma: x)

    def __init__(self, cancel_after=None):
        self.cancel_after = cancel_after

    def preview(self, latents):
        return [torch.sigmoid(z[:3]).permute(1, 2, 0).numpy() for z in latents]

    def generate(self, prompt, *, steps=6, cfg=7.0, callback=None, **options):
        return self._run(steps, cfg, 0, [], callback)

    def branch(self, result, step, *, cfg=7.0, callback=None, **options):
        return self._run(result.recipe.settings.steps, cfg, step, result.trajectory[:step], callback)

    def cancel(self):
        self.cancel_after = -1

    def _run(self, steps, cfg, start, trajectory, callback):
        x = torch.rand(1, 4, 16, 16, generator=torch.Generator().manual_seed(start))
        for i in range(start, steps):
            event = StepEvent(i=i, steps=steps, sigma=float(steps - i), sigma_hat=float(steps - i), x=x,
                              denoised=x.roll(i, -1) * cfg / 7, nfe=i + 1, elapsed=0.0)
            trajectory = [*trajectory, event]
            callback(event)
            if self.cancel_after is not None and (self.cancel_after < 0 or i == self.cancel_after):
                self.cancel_after = None
                raise CancelledError(f"run cancelled at step {i}")
        return SimpleNamespace(recipe=SimpleNamespace(settings=SimpleNamespace(cfg=cfg, steps=steps)),
                               trajectory=trajectory)


def _feed(preview, steps=6, seed=0):
    g = torch.Generator().manual_seed(seed)
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


def _shown(page, *testids):
    """The PNG bytes each of the images ``testids`` shows."""
    arrays = page.evaluate("""(ids) => Promise.all(ids.map(async (id) => {
        const src = document.querySelector(`[data-testid=${id}]`).src;
        return Array.from(new Uint8Array(await (await fetch(src)).arrayBuffer()));
    }))""", list(testids))
    return [bytes(a) for a in arrays]


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
    h.push(error="ShapeError: latent has 3 channels")
    assert "ShapeError" in h.page.get_by_test_id("error").inner_text()


def test_a_finished_run_shows_its_last_step(static_widget, finished):
    h = static_widget(finished)
    scrubber = h.page.get_by_test_id("scrubber")
    scrubber.focus()
    for _ in range(3):
        scrubber.press("ArrowLeft")
    assert h.page.get_by_test_id("step-label").inner_text().startswith("step 3/6")
    # a new run of as many steps: the kernel's step (5, the last) does not change, only the frames do
    _feed(finished, seed=1)
    h.push_keys(["running", "live_step", "live_x0", "live_xt", "x0_frames", "xt_frames", "sigmas"])
    assert h.root.get_attribute("data-step") == "5"
    assert h.page.get_by_test_id("step-label").inner_text() == "step 6/6 · σ 1.000"
    assert _shown(h.page, "x0") == [finished.x0_frames[-1]] != [finished.x0_frames[2]]


def test_stop_keeps_the_frames_made_and_says_where_it_stopped(static_widget):
    preview = StepPreview(StubSession(cancel_after=2))
    preview.run("x", steps=6)
    assert preview.wait(10)
    h = static_widget(preview)
    assert h.page.get_by_test_id("error").is_hidden()
    assert h.page.get_by_test_id("status").inner_text().startswith("stopped at step 3/6")
    assert h.root.get_attribute("data-stopped") == "2" and h.root.get_attribute("data-step") == "2"
    assert h.page.get_by_test_id("step-label").inner_text() == "step 3/6 · σ 4.000"
    scrubber = h.page.get_by_test_id("scrubber")
    assert scrubber.get_attribute("max") == "2" and not scrubber.is_disabled()
    scrubber.focus()
    scrubber.press("Home")
    assert h.root.get_attribute("data-step") == "0" and h.model_get("step") == 0
    assert h.page.get_by_test_id("branch").is_disabled()
    h.screenshot("static_step_preview_stopped")


def test_escape_stops_a_running_generation(static_widget, finished):
    h = static_widget(finished)
    h.root.press("Escape")
    assert h.model_get("stop_request") == 0, "nothing runs: nothing to stop"
    h.push(running=True)
    h.root.press("Escape")
    assert h.model_get("stop_request") == 1


def test_a_branch_is_shown_beside_the_run_it_came_from(static_widget):
    preview = StepPreview(StubSession())
    preview.run("x", steps=6, cfg=3.0)
    assert preview.wait(10)
    original = preview.x0_frames[-1]
    preview.branch(2, cfg=9.0)
    assert preview.wait(10) and preview.error == ""
    h = static_widget(preview)
    assert h.page.get_by_test_id("compare").is_visible()
    a, b = _shown(h.page, "original", "branched")
    assert a == original, "A is the original run's final x̂0"
    assert b == preview.x0_frames[-1] != original, "B is the branch's"
    assert "branch from step 3" in h.page.get_by_test_id("compare").inner_text()
    h.screenshot("static_step_preview_branch")


def test_branch_cfg_field_starts_at_the_runs_cfg(static_widget):
    preview = StepPreview(StubSession())
    preview.run("x", steps=4, cfg=3.0)
    assert preview.wait(10)
    h = static_widget(preview)
    assert h.page.get_by_test_id("branch-cfg").input_value() == "3"


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
