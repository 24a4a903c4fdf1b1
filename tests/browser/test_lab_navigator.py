"""LatentNavigator in JupyterLab: a real drag moves the point and changes the preview; Python re-renders."""

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]


SETUP = """from difftech_lab import Session
from difftech_lab.models.tiny import tiny_model
from difftech_lab.widgets.latent_navigator import LatentNavigator
s = Session(tiny_model(), progress=False)
nav = LatentNavigator(s, [1, 2, 3, 4], prompt="a red square", steps=2)
nav.wait(60)"""


def test_drag_moves_the_point_and_the_preview_follows(lab, drag):
    nb = lab.open([SETUP, "nav", "nav"])
    nb.run_all()
    view = nb.widget("latent-navigator")
    first = nb.py("nav.preview.hex()")
    captions = [view.get_by_test_id(f"anchor-label-{k}").inner_text() for k in range(4)]
    assert captions == ["seed 1", "seed 2", "seed 3", "seed 4"] == nb.py("nav.anchor_labels")
    version = int(view.get_by_test_id("preview").get_attribute("data-version"))

    drag(nb.page, view.get_by_test_id("pad").bounding_box(), [(0.5, 0.5), (0.9, 0.15)], steps=12)
    point = nb.wait_until("nav.preview_point", lambda p: abs(p[0] - 0.9) < 0.02 and abs(p[1] - 0.15) < 0.02)
    assert abs(point[0] - 0.9) < 0.02 and abs(point[1] - 0.15) < 0.02
    assert nb.py("nav.preview.hex()") != first
    nb.page.wait_for_function(
        "(v) => Number(document.querySelector('[data-testid=latent-navigator] [data-testid=preview]')"
        ".dataset.version) > v", arg=version)
    weights = nb.py("nav.weights")
    assert max(weights) == weights[1], "top-right is anchor B's corner"
    # the second view of the same widget shows the same state
    second = nb.widget("latent-navigator", 1)
    assert second.get_attribute("data-point") == view.get_attribute("data-point")
    nb.screenshot("lab_navigator_drag")


def test_python_side_point_and_keys(lab):
    nb = lab.open([SETUP, "nav"])
    nb.run_all()
    view = nb.widget("latent-navigator")
    nb.execute("nav.point = [0.1, 0.9]")
    nb.page.wait_for_function(
        "() => document.querySelector('[data-testid=latent-navigator]').dataset.point === '0.1000,0.9000'")
    nb.wait_until("nav.preview_point", lambda p: p == [0.1, 0.9])
    view.get_by_test_id("pad").focus()
    nb.page.keyboard.press("ArrowRight")
    nb.page.keyboard.press("ArrowRight")
    point = nb.wait_until("nav.point", lambda p: abs(p[0] - 0.14) < 1e-6)
    assert abs(point[0] - 0.14) < 1e-6 and abs(point[1] - 0.9) < 1e-6
    assert nb.page.evaluate("() => window.jupyterapp.shell.currentWidget.content.activeCellIndex") == 1, \
        "arrow keys on the pad must not move between cells"
    norm = view.get_by_test_id("norm").inner_text()
    assert norm.startswith("‖z‖") and "ratio" in norm
    nb.screenshot("lab_navigator_python_side")

    nb.save()
    nb.reopen()  # the kernel keeps the state; the new page rebuilds the view from it
    view = nb.widget("latent-navigator")
    assert view.get_attribute("data-point") == "0.1400,0.9000"
    view.get_by_test_id("preview").evaluate("(img) => img.decode()")
    assert view.get_by_test_id("preview").evaluate("(img) => img.naturalWidth") > 0
