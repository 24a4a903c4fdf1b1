"""The shared front-end helpers (_base.js) against the Python serialisers, on the static page."""

import numpy as np

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
