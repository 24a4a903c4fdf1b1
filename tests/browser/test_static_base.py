"""The shared front-end helpers (_base.js) on the static page: the serialisers against Python's, the theme
(JupyterLab's variables, light and dark), the type scale, pixelated pictures and the slider with a readout."""

import numpy as np
import pytest
import traitlets

from difftech_lab.widgets._base import STATIC, NDArray, Widget, binary_trait

PROBE_JS = """
export default {
  render({ model, el }) {
    const root = widgetRoot(el, model, "probe");
    root.append(h("button", { "data-testid": "double", onclick: () => {
      const a = decodeArray(model.get("values"));
      model.set("values", encodeArray(a.array.map((x) => 2 * x), a.shape, a.dtype));
      model.set("blob", new DataView(new Uint8Array([1, 2, 3]).buffer));
      model.save_changes();
    } }, "double"));
    markReady(root);
  },
};
"""


class Probe(Widget):
    _esm = (STATIC / "_base.js").read_text() + PROBE_JS
    values = NDArray()
    blob = binary_trait()


def test_array_and_bytes_round_trip_through_the_browser(static_widget):
    probe = Probe(values=np.arange(6, dtype=np.float32).reshape(2, 3))
    h = static_widget(probe)
    h.page.get_by_test_id("double").click()
    assert h.saves() == [["values", "blob"]]
    h.pull()
    np.testing.assert_array_equal(probe.values, 2 * np.arange(6, dtype=np.float32).reshape(2, 3))
    assert probe.values.dtype == np.float32
    assert probe.blob == b"\x01\x02\x03"


def test_error_banner_shows_python_error_and_hides_when_cleared(static_widget):
    probe = Probe()
    h = static_widget(probe)
    banner = h.page.get_by_test_id("error")
    assert not banner.is_visible()
    h.push(error="ValueError: bad seed")
    assert banner.inner_text() == "ValueError: bad seed"
    h.push(error="")
    assert not banner.is_visible()


# ------------------------------------------------------------------------------------------ the shared look

THEMED_JS = """
export default {
  render({ model, el }) {
    const root = widgetRoot(el, model, "probe");
    const level = slider(model, "level", { label: "level", min: 0, max: 100, step: 1, format: (v) => `${v} %` });
    root.append(h("div", { class: "dtl-toolbar" }, [h("button", { "data-testid": "button" }, "go"), level.el,
                                                    h("span", { "data-testid": "after" }, "after")]),
                h("span", { "data-testid": "note", class: "dtl-small dtl-muted" }, "note"),
                h("img", { "data-testid": "img" }), h("canvas", { "data-testid": "canvas" }));
    markReady(root);
  },
};
"""


class Themed(Widget):
    _esm = (STATIC / "_base.js").read_text() + THEMED_JS
    level = traitlets.Int(30).tag(sync=True)


# (theme, text, muted text, button background): JupyterLab's own values, or the fallbacks outside it
THEMED = [
    (None, "rgba(0, 0, 0, 0.87)", "rgba(0, 0, 0, 0.54)", "rgb(238, 238, 238)"),
    ("light", "rgba(0, 0, 0, 0.87)", "rgba(0, 0, 0, 0.54)", "rgb(238, 238, 238)"),
    ("dark", "rgba(255, 255, 255, 0.87)", "rgba(255, 255, 255, 0.54)", "rgb(66, 66, 66)"),
]


@pytest.mark.parametrize(("theme", "text", "muted", "button"), THEMED, ids=["no-theme", "light", "dark"])
def test_text_and_controls_follow_the_jupyterlab_theme(static_widget, theme, text, muted, button):
    h = static_widget(Themed(), theme=theme)
    assert h.style(h.root, "color") == text
    assert h.style(h.page.get_by_test_id("note"), "color") == muted
    assert h.style(h.page.get_by_test_id("button"), "color") == text
    assert h.style(h.page.get_by_test_id("button"), "background-color") == button
    assert h.style(h.root, "font-size") == "13px"
    assert h.style(h.page.get_by_test_id("note"), "font-size") in ("10.8333px", "11px")   # one type scale
    h.push(error="ValueError: bad seed")
    assert h.style(h.page.get_by_test_id("error"), "color") == ("rgb(244, 67, 54)" if theme == "dark" else
                                                                "rgb(211, 47, 47)")


@pytest.mark.parametrize("theme", [None, "dark"])
def test_real_widgets_take_their_text_colour_from_the_theme(static_widget, theme):
    from difftech_lab.widgets.box_editor import BoxEditor
    from difftech_lab.widgets.mask_painter import MaskPainter

    expected = "rgba(255, 255, 255, 0.87)" if theme == "dark" else "rgba(0, 0, 0, 0.87)"
    h = static_widget(MaskPainter(width=32, height=32), theme=theme)
    static_widget(BoxEditor(width=32, height=32, boxes=[("cat", [0.1, 0.1, 0.5, 0.5])]))
    for testid in ("mask-painter", "box-editor"):
        root = h.page.locator(f"[data-testid='{testid}']")
        assert h.style(root, "color") == expected
        assert h.style(root.locator("button").first, "color") == expected
    assert h.style(h.page.get_by_test_id("phrase-0"), "color") == expected


def test_images_and_canvases_are_drawn_pixelated(static_widget):
    h = static_widget(Themed())
    assert h.style(h.page.get_by_test_id("img"), "image-rendering") == "pixelated"
    assert h.style(h.page.get_by_test_id("canvas"), "image-rendering") == "pixelated"


def test_slider_shows_its_value_saves_on_release_and_follows_python(static_widget):
    themed = Themed()
    h = static_widget(themed)
    value = h.page.get_by_test_id("level-value")
    after = h.page.get_by_test_id("after").bounding_box()
    assert value.inner_text() == "30 %"
    h.page.get_by_test_id("level").fill("7")
    assert value.inner_text() == "7 %"
    assert h.saves() == [["level"]] and h.pull().level == 7
    h.page.get_by_test_id("level").fill("100")
    assert value.inner_text() == "100 %"
    assert h.page.get_by_test_id("after").bounding_box() == after      # fixed-width readout: nothing moves
    h.push(level=55)
    assert value.inner_text() == "55 %" and h.page.get_by_test_id("level").input_value() == "55"
