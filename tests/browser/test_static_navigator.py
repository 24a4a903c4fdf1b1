"""LatentNavigator's front end on the static page: drag, per-frame sync, keys, kernel-side updates."""

import pytest

from difftech_lab.images import png_bytes
from difftech_lab.widgets.latent_navigator import LatentNavigator

pytestmark = pytest.mark.browser


@pytest.fixture
def navigator_state(tiny_session):
    nav = LatentNavigator(tiny_session, [1, 2, 3, 4], prompt="a red square", steps=2)
    assert nav.wait(60)
    return nav


def test_drag_moves_the_point_and_the_marker(static_widget, navigator_state, drag):
    h = static_widget(navigator_state)
    pad = h.page.get_by_test_id("pad")
    drag(h.page, pad.bounding_box(), [(0.5, 0.5), (0.1, 0.2), (0.8, 0.9)], steps=20)
    x, y = h.model_get("point")
    assert x == pytest.approx(0.8, abs=0.02) and y == pytest.approx(0.9, abs=0.02)
    assert h.saves() and all(keys == ["point"] for keys in h.saves())
    marker = h.page.get_by_test_id("point").bounding_box()
    box = pad.bounding_box()
    assert marker["x"] + marker["width"] / 2 == pytest.approx(box["x"] + 0.8 * box["width"], abs=3)
    h.screenshot("static_navigator_drag")


def test_a_burst_of_moves_syncs_once_per_frame(static_widget, navigator_state):
    h = static_widget(navigator_state)
    saves = h.page.evaluate("""async () => {
        const pad = document.querySelector("[data-testid=pad]"), r = pad.getBoundingClientRect();
        const ev = (type, f) => pad.dispatchEvent(new PointerEvent(type, { bubbles: true, button: 0, pointerId: 1,
            clientX: r.left + f * r.width, clientY: r.top + f * r.height }));
        const frame = () => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)));
        ev("pointerdown", 0.1);
        for (let k = 0; k < 50; k++) ev("pointermove", 0.1 + k * 0.01);
        await frame();
        const during = window.model.saves.length;
        ev("pointerup", 0.6);
        return [during, window.model.saves.length];
    }""")
    assert saves == [1, 2]  # 51 pointer events in one frame: one sync, then the drag end
    assert h.model_get("point") == pytest.approx([0.6, 0.6], abs=1e-3)


def test_drag_is_clamped_to_the_pad(static_widget, navigator_state, drag):
    h = static_widget(navigator_state)
    drag(h.page, h.page.get_by_test_id("pad").bounding_box(), [(0.5, 0.5), (1.4, -0.3)])
    assert h.model_get("point") == [1.0, 0.0]


def test_arrow_keys_nudge_the_point(static_widget, navigator_state):
    h = static_widget(navigator_state)
    pad = h.page.get_by_test_id("pad")
    pad.focus()
    pad.press("ArrowRight")
    pad.press("ArrowRight")
    pad.press("Shift+ArrowUp")
    x, y = h.model_get("point")
    assert x == pytest.approx(0.54) and y == pytest.approx(0.4)


def test_kernel_updates_rerender(static_widget, navigator_state):
    h = static_widget(navigator_state)
    preview = h.page.get_by_test_id("preview")
    version = int(preview.get_attribute("data-version"))
    h.push(preview=png_bytes(navigator_state.session.preview(navigator_state.latent)[0]),
           norm=1.0, typical_norm=2.0, weights=[0.1, 0.2, 0.3, 0.4])
    assert int(preview.get_attribute("data-version")) == version + 1
    assert "ratio 0.500" in h.page.get_by_test_id("norm").inner_text()
    assert h.page.get_by_test_id("weights").inner_text() == "w A=0.10 B=0.20 C=0.30 D=0.40"
    h.push(point=[0.25, 0.75])
    assert h.root.get_attribute("data-point") == "0.2500,0.7500"
    h.push(error="InvalidArgumentError: bad seed")
    assert h.page.get_by_test_id("error").inner_text() == "InvalidArgumentError: bad seed"


def test_blend_choice_syncs(static_widget, navigator_state):
    h = static_widget(navigator_state)
    h.page.get_by_test_id("noise-blend").select_option("linear")
    assert h.model_get("noise_blend") == "linear"
    h.pull()
    assert navigator_state.noise_blend == "linear"
    navigator_state.noise_blend = "slerp"


def test_thumbnails_show_on_the_pad(static_widget, navigator_state):
    h = static_widget(navigator_state)
    for k in range(4):
        img = h.page.get_by_test_id(f"anchor-{k}").locator("img")
        assert img.evaluate("(e) => e.complete && e.naturalWidth > 0")
    h.screenshot("static_navigator")


def test_each_thumbnail_has_its_label_under_it(static_widget, navigator_state):
    h = static_widget(navigator_state)
    assert navigator_state.anchor_labels == ["seed 1", "seed 2", "seed 3", "seed 4"]
    frame = h.root.bounding_box()
    for k, label in enumerate(navigator_state.anchor_labels):
        caption = h.page.get_by_test_id(f"anchor-label-{k}")
        assert caption.inner_text() == label and caption.is_visible()
        thumb, box = h.page.get_by_test_id(f"anchor-{k}").bounding_box(), caption.bounding_box()
        assert box["y"] >= thumb["y"] + thumb["height"] - 1, "the label sits under its thumbnail"
        assert box["x"] < thumb["x"] + thumb["width"] and box["x"] + box["width"] > thumb["x"]
        assert frame["x"] <= box["x"] and box["x"] + box["width"] <= frame["x"] + frame["width"]
    legend = h.page.get_by_test_id("legend").bounding_box()
    bottom = max(h.page.get_by_test_id(f"anchor-label-{k}").bounding_box()["y"] + 14 for k in range(4))
    assert legend["y"] >= bottom, "the legend starts below the bottom captions"
    h.push(anchor_labels=["red circle", "blue square", "seed 3", "seed 4"])
    assert h.page.get_by_test_id("anchor-label-1").inner_text() == "blue square"
    h.screenshot("static_navigator_labels")


def test_the_pad_and_readouts_follow_the_theme(static_widget, navigator_state):
    h = static_widget(navigator_state, theme="dark")
    background = h.style(h.page.get_by_test_id("pad"), "background-image")
    assert background.count("linear-gradient") == 2
    assert h.style(h.page.get_by_test_id("pad"), "background-color") == "rgb(33, 33, 33)"  # --jp-layout-color1
    assert h.style(h.page.get_by_test_id("norm"), "color") == "rgba(255, 255, 255, 0.87)"
