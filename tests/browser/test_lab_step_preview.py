"""StepPreview in JupyterLab: live frames from a run, the scrubber, branching, Python-side changes."""

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]


SETUP = """from difftech_lab import Session
from difftech_lab.models.tiny import tiny_model
from difftech_lab.widgets.step_preview import StepPreview
s = Session(tiny_model(), progress=False)
preview = StepPreview(s)"""


def test_run_scrub_and_branch(lab):
    nb = lab.open([SETUP, "preview", "preview.run('a red square', steps=6, cfg=5.0); preview.wait(120)"])
    nb.run_all()
    view = nb.widget("step-preview")
    nb.page.wait_for_function("() => document.querySelector('[data-testid=step-preview]').dataset.step === '5'")
    last = view.get_by_test_id("x0").get_attribute("src")

    scrubber = view.get_by_test_id("scrubber")
    box = scrubber.bounding_box()
    nb.page.mouse.move(box["x"] + box["width"] - 3, box["y"] + box["height"] / 2)
    nb.page.mouse.down()
    nb.page.mouse.move(box["x"] + 3, box["y"] + box["height"] / 2, steps=8)
    nb.page.mouse.up()
    assert view.get_attribute("data-step") == "0"
    assert view.get_by_test_id("x0").get_attribute("src") != last
    assert nb.wait_until("preview.step", lambda v: v == 0) == 0

    frames = nb.py("[f.hex() for f in preview.x0_frames]")
    assert view.get_by_test_id("branch-cfg").input_value() == "5", "the branch starts at the run's own cfg"
    view.get_by_test_id("branch-cfg").fill("1.0")
    view.get_by_test_id("branch-cfg").press("Enter")
    view.get_by_test_id("branch").click()
    assert nb.wait_until("preview.branched_from == 0 and not preview.running"
                         " and preview.result.recipe.settings.cfg == 1.0", lambda ok: ok, timeout=60)
    nb.page.wait_for_function(
        "() => document.querySelector('[data-testid=step-preview] [data-testid=status]').textContent"
        " === 'branched from step 1'")
    assert nb.py("[f.hex() for f in preview.x0_frames]") != frames
    assert nb.py("preview.error") == ""
    assert view.get_by_test_id("compare").is_visible(), "the original's final image beside the branch's"
    assert nb.py(f"preview.original_x0.hex() == {frames[-1]!r}")
    nb.screenshot("lab_step_preview_branch")


def test_callback_use_and_python_side_step(lab):
    nb = lab.open([SETUP, "preview", "r = s.generate('a blue circle', steps=4, callback=preview, progress=False)"])
    nb.run_all()
    view = nb.widget("step-preview")
    nb.page.wait_for_function("() => document.querySelector('[data-testid=step-preview]').dataset.step === '3'")
    nb.execute("preview.step = 1")
    nb.page.wait_for_function("() => document.querySelector('[data-testid=step-preview]').dataset.step === '1'")
    assert view.get_by_test_id("step-label").inner_text().startswith("step 2/4")
    nb.screenshot("lab_step_preview_callback")

    nb.save()
    nb.reopen()
    view = nb.widget("step-preview")
    assert view.get_attribute("data-step") == "1"
    view.get_by_test_id("scrubber").focus()
    nb.page.keyboard.press("ArrowRight")
    assert nb.wait_until("preview.step", lambda v: v == 2) == 2
