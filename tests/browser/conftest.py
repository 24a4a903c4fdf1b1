"""Browser fixtures: a static page that runs one widget's ES module against a fake anywidget model, and a
real JupyterLab (and Notebook 7) server driven by Playwright with Debian's Chromium.

Static harness (fast, ~1 s a test)::

    def test_x(static_widget):
        h = static_widget(MyWidget(...))        # renders widget._esm into a page, waits for data-ready="1"
        h.page.mouse...                          # real gestures on h.root
        h.pull()                                 # browser-side model state -> the Python widget (set_state)
        h.push(value=3)                          # Python-side change -> the fake model + change events
        h.relay()                                # messages the widget sent -> the Python widget, and back

    static_widget(MyWidget(...), theme="dark")   # under JupyterLab Dark's variables ("light": Light's;
                                                 # default: none, as in a host without JupyterLab's CSS)

JupyterLab (one server per test session)::

    def test_y(lab):
        nb = lab.open(["from x import W", "w = W(); w"])    # writes a notebook in the scratch root, opens it
        nb.run_all()                                       # runs every cell, waits for the kernel
        nb.py("w.value")                                   # evaluates in the kernel, returns the JSON value
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import traitlets

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"


def pytest_collection_modifyitems(items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.browser)


def screenshot(page, name: str) -> Path:
    """Save a screenshot under test-artifacts/screenshots/ (git-ignored) and return its path."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def drag_through(page, box, points, steps: int = 5):
    """A left-button mouse drag through ``points``, given as (x, y) fractions of ``box`` (a bounding box)."""
    xy = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in points]
    page.mouse.move(*xy[0])
    page.mouse.down()
    for x, y in xy[1:]:
        page.mouse.move(x, y, steps=steps)
    page.mouse.up()


@pytest.fixture
def drag():
    """``drag(page, box, [(fx, fy), …])``: a mouse drag through fractions of an element's bounding box."""
    return drag_through


@pytest.fixture(scope="session")
def browser():
    if not os.path.exists(CHROMIUM):
        message = f"{CHROMIUM} not found: install it with `apt-get install chromium fonts-dejavu-core`"
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


# ---------------------------------------------------------------------------------------------- static page

HARNESS_ORIGIN = "http://harness.test"

# JupyterLab's theme variables as its Light and Dark themes set them (the subset widgets use). Only the page
# background follows them, not the text colour: in hosts other than JupyterLab nothing passes the theme's
# colour down, so a widget has to set its own.
THEMES = {
    "light": {"--jp-ui-font-color1": "rgba(0, 0, 0, 0.87)", "--jp-ui-font-color2": "rgba(0, 0, 0, 0.54)",
              "--jp-layout-color0": "white", "--jp-layout-color1": "white", "--jp-layout-color2": "#eeeeee",
              "--jp-border-color1": "#bdbdbd", "--jp-border-color2": "#e0e0e0", "--jp-brand-color1": "#1976d2",
              "--jp-error-color1": "#d32f2f", "--jp-rendermime-error-background": "#ffdddd",
              "--jp-ui-font-size0": "0.83333em", "--jp-ui-font-size1": "13px", "--jp-ui-font-size2": "1.2em"},
    "dark": {"--jp-ui-font-color1": "rgba(255, 255, 255, 0.87)", "--jp-ui-font-color2": "rgba(255, 255, 255, 0.54)",
             "--jp-layout-color0": "#111111", "--jp-layout-color1": "#212121", "--jp-layout-color2": "#424242",
             "--jp-border-color1": "#616161", "--jp-border-color2": "#424242", "--jp-brand-color1": "#2196f3",
             "--jp-error-color1": "#f44336", "--jp-rendermime-error-background": "rgba(244, 67, 54, 0.28)",
             "--jp-ui-font-size0": "0.83333em", "--jp-ui-font-size1": "13px", "--jp-ui-font-size2": "1.2em"},
}

# A fake anywidget model: get/set/on/off/save_changes/send, recording what the widget saves and sends.
HARNESS_HTML = """<!doctype html><html><head><meta charset="utf-8"><style>
body[data-theme] { background: var(--jp-layout-color0); }
</style></head>
<body style="margin:16px;font-family:sans-serif"><div id="host"></div><script>
function b64ToDataView(s) {
  const bin = atob(s); const a = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) a[i] = bin.charCodeAt(i);
  return new DataView(a.buffer);
}
function dataViewToB64(dv) {
  const a = new Uint8Array(dv.buffer, dv.byteOffset, dv.byteLength); let s = "";
  for (let i = 0; i < a.length; i += 0x8000) s += String.fromCharCode.apply(null, a.subarray(i, i + 0x8000));
  return btoa(s);
}
function putBuffers(state, paths, buffers) {
  paths.forEach((path, i) => {
    let obj = state;
    for (const k of path.slice(0, -1)) obj = obj[k];
    obj[path[path.length - 1]] = b64ToDataView(buffers[i]);
  });
  return state;
}
function encodeBuffers(value) {
  if (value instanceof DataView) return {__b64__: dataViewToB64(value)};
  if (ArrayBuffer.isView(value)) return {__b64__: dataViewToB64(new DataView(value.buffer, value.byteOffset, value.byteLength))};
  if (Array.isArray(value)) return value.map(encodeBuffers);
  if (value && typeof value === "object") {
    const out = {}; for (const [k, v] of Object.entries(value)) out[k] = encodeBuffers(v); return out;
  }
  return value;
}
class FakeModel {
  constructor(state) { this.state = state; this.handlers = {}; this.saves = []; this.sent = []; this.dirty = new Set(); }
  get(k) { return this.state[k]; }
  set(k, v) { this.state[k] = v; this.dirty.add(k); this.emit("change:" + k); }
  on(evt, cb) { (this.handlers[evt] ||= []).push(cb); }
  off(evt, cb) {
    if (!evt) { this.handlers = {}; return; }
    this.handlers[evt] = (this.handlers[evt] || []).filter((h) => cb && h !== cb);
  }
  emit(evt, ...args) { for (const cb of this.handlers[evt] || []) cb(...args); }
  save_changes() { this.saves.push([...this.dirty]); this.dirty.clear(); }
  send(msg, callbacks, buffers) { this.sent.push(msg); }
  take() { const sent = this.sent; this.sent = []; return sent; }
  kernelSet(k, v) { this.state[k] = v; this.emit("change:" + k); }   // a change arriving from Python
  receive(msg) { this.emit("msg:custom", msg, []); }
}
window.harness = {
  async mount(esm, state, paths, buffers) {
    const model = new FakeModel(putBuffers(state, paths, buffers));
    window.model = model;
    const url = URL.createObjectURL(new Blob([esm], {type: "text/javascript"}));
    const mod = await import(url);
    let widget = mod.default;
    if (typeof widget === "function") widget = await widget();
    if (widget.initialize) await widget.initialize({model});
    const el = document.getElementById("host");
    await widget.render({model, el});
  },
  state() { return encodeBuffers(window.model.state); },
};
</script></body></html>"""


def _wire_state(widget, keys=None):
    """The widget's synced state as the kernel would send it: JSON plus base64 buffers at their paths."""
    from ipywidgets.widgets.widget import _remove_buffers

    state = widget.get_state(keys)
    state, paths, buffers = _remove_buffers(state)
    return state, paths, [base64.b64encode(bytes(b)).decode() for b in buffers]


def _unwire(value):
    if isinstance(value, dict) and set(value) == {"__b64__"}:
        return memoryview(base64.b64decode(value["__b64__"]))
    if isinstance(value, dict):
        return {k: _unwire(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unwire(v) for v in value]
    return value


class StaticHarness:
    """One widget's ES module rendered on a plain page against a fake model."""

    def __init__(self, page, widget):
        self.page, self.widget = page, widget
        self.root = page.locator("[data-ready='1']").first

    def model_get(self, key):
        """The fake model's current value of ``key`` (buffers as memoryview)."""
        return _unwire(self.page.evaluate("(k) => window.harness.state()[k]", key))

    def saves(self) -> list[list[str]]:
        """Keys saved by each ``save_changes()`` call so far."""
        return self.page.evaluate("() => window.model.saves")

    def sent(self) -> list:
        return self.page.evaluate("() => window.model.sent")

    def pull(self):
        """Apply the browser-side model state to the Python widget, as the kernel would on a sync."""
        state = {k: _unwire(v) for k, v in self.page.evaluate("() => window.harness.state()").items()
                 if not k.startswith("_")}
        self.widget.set_state(state)
        return self.widget

    def push(self, **traits):
        """Set traits in Python and deliver the serialised change to the page (as a kernel update)."""
        for k, v in traits.items():
            setattr(self.widget, k, v)
        self.push_keys(list(traits))

    def push_keys(self, keys):
        state, paths, buffers = _wire_state(self.widget, keys)
        self.page.evaluate(
            """([state, paths, buffers]) => {
                 const dv = (s) => { const b = atob(s); const a = new Uint8Array(b.length);
                   for (let i = 0; i < b.length; i++) a[i] = b.charCodeAt(i); return new DataView(a.buffer); };
                 paths.forEach((p, i) => { let o = state; for (const k of p.slice(0, -1)) o = o[k];
                   o[p[p.length - 1]] = dv(buffers[i]); });
                 for (const [k, v] of Object.entries(state)) window.model.kernelSet(k, v);
               }""",
            [state, paths, buffers],
        )

    def relay(self) -> list:
        """Deliver the custom messages the widget sent to the Python widget (as its ``on_msg`` handlers get
        them), then push the traits they changed back to the page; returns the messages. The browser's state
        is pulled first: in a kernel, changes saved before a message arrive before it."""
        messages = self.page.evaluate("() => window.model.take()")
        self.pull()
        changed: list[str] = []

        def note(change):
            if change["name"] not in changed:
                changed.append(change["name"])

        self.widget.observe(note, names=traitlets.All)
        try:
            for msg in messages:
                self.widget._handle_custom_msg(msg, [])
        finally:
            self.widget.unobserve(note, names=traitlets.All)
        synced = [k for k in changed if k in self.widget.keys]
        if synced:
            self.push_keys(synced)
        return messages

    def style(self, locator, prop: str) -> str:
        """The computed value of CSS property ``prop`` (e.g. "color") of the element ``locator`` finds."""
        return locator.evaluate("(el, prop) => getComputedStyle(el).getPropertyValue(prop)", prop)

    def screenshot(self, name: str) -> Path:
        return screenshot(self.page, name)


@pytest.fixture
def static_widget(browser):
    """Factory: ``static_widget(widget, theme=None) -> StaticHarness`` with the widget rendered and ready;
    ``theme`` ("light" or "dark") sets JupyterLab's theme variables on the page first."""
    context = browser.new_context(viewport={"width": 1000, "height": 800})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.route(f"{HARNESS_ORIGIN}/**", lambda route: route.fulfill(
        status=200, content_type="text/html", body=HARNESS_HTML))
    page.goto(f"{HARNESS_ORIGIN}/index.html")

    def mount(widget, theme: str | None = None) -> StaticHarness:
        if theme is not None:
            page.evaluate("""([name, vars]) => { document.body.dataset.theme = name;
                               for (const [k, v] of Object.entries(vars)) document.body.style.setProperty(k, v); }""",
                          [theme, THEMES[theme]])
        state, paths, buffers = _wire_state(widget)
        page.evaluate("([esm, s, p, b]) => window.harness.mount(esm, s, p, b)",
                      [widget._esm, state, paths, buffers])
        page.wait_for_selector("[data-ready='1']", timeout=10_000)
        return StaticHarness(page, widget)

    yield mount
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


# ----------------------------------------------------------------------------------------------- JupyterLab

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LabServer:
    """A JupyterLab server in its own process group, with every Jupyter directory in a scratch folder."""

    def __init__(self, scratch: Path):
        self.scratch = scratch
        self.root = scratch / "root"
        self.root.mkdir(parents=True)
        self.token = secrets.token_hex(16)
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ)
        for var, sub in [("JUPYTER_CONFIG_DIR", "config"), ("JUPYTER_RUNTIME_DIR", "runtime"),
                         ("JUPYTERLAB_SETTINGS_DIR", "settings"), ("JUPYTERLAB_WORKSPACES_DIR", "workspaces"),
                         ("IPYTHONDIR", "ipython")]:
            (scratch / sub).mkdir()
            env[var] = str(scratch / sub)
        env["PYTHONUNBUFFERED"] = "1"
        # no "notified about Jupyter news?" toast over the widgets
        notification = scratch / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
        notification.parent.mkdir(parents=True)
        notification.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
        self.log = open(scratch / "server.log", "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ServerApp.ip=127.0.0.1",
             f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0",
             f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root}",
             "--LabApp.expose_app_in_browser=True", "--JupyterNotebookApp.expose_app_in_browser=True",
             "--allow-root"],
            env=env, cwd=self.root, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self._wait_ready()

    def api(self, method: str, path: str):
        req = urllib.request.Request(f"{self.url}{path}?token={self.token}", method=method)
        with urllib.request.urlopen(req, timeout=10) as resp:
            body = resp.read()
        return json.loads(body) if body else None

    def _wait_ready(self, timeout: float = 60.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited: {(self.scratch / 'server.log').read_text()[-3000:]}")
            try:
                self.api("GET", "/api/status")
                return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"jupyter lab not ready in {timeout}s: {(self.scratch / 'server.log').read_text()[-3000:]}")

    def shutdown_kernels(self):
        for session in self.api("GET", "/api/sessions"):
            self.api("DELETE", f"/api/sessions/{session['id']}")

    def stop(self):
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        except ProcessLookupError:
            pass
        self.log.close()


def write_notebook(path: Path, cells: list[str]) -> Path:
    """A minimal nbformat-4 notebook with one code cell per source string."""
    nb = {"nbformat": 4, "nbformat_minor": 5,
          "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
          "cells": [{"cell_type": "code", "id": f"c{i}", "metadata": {}, "execution_count": None,
                     "outputs": [], "source": src} for i, src in enumerate(cells)]}
    path.write_text(json.dumps(nb))
    return path


class NotebookPage:
    """A notebook open in JupyterLab or Notebook 7, with helpers to run cells and query the kernel."""

    PANEL = "window.jupyterapp.shell.currentWidget"

    def __init__(self, page, server: LabServer, name: str, ui: str):
        self.page, self.server, self.name = page, server, name
        route = "lab/tree" if ui == "lab" else "notebooks"
        page.goto(f"{server.url}/{route}/{name}?reset&token={server.token}")
        page.wait_for_function("() => window.jupyterapp !== undefined", timeout=60_000)
        page.evaluate("() => window.jupyterapp.restored")
        self.wait_kernel()

    def wait_kernel(self, timeout: float = 60_000):
        """Until the notebook's kernel is connected and idle."""
        self.page.wait_for_function(
            f"""() => {{ const p = {self.PANEL}; const k = p && p.sessionContext && p.sessionContext.session
                        && p.sessionContext.session.kernel;
                        return k && k.connectionStatus === 'connected' && k.status === 'idle'; }}""",
            timeout=timeout)

    def run_cell(self, index: int):
        """Run one cell through the UI command and wait for it to finish; fail on an error output."""
        self.page.evaluate(
            f"""async (i) => {{ const p = {self.PANEL}; p.content.activeCellIndex = i;
                              await window.jupyterapp.commands.execute('notebook:run-cell'); }}""", index)
        self.wait_kernel()
        outputs = self.page.evaluate(
            f"(i) => {self.PANEL}.content.widgets[i].model.outputs.toJSON()", index)
        errors = [o for o in outputs if o.get("output_type") == "error"]
        assert not errors, f"cell {index} raised: {errors[0]['ename']}: {errors[0]['evalue']}"
        return outputs

    def run_all(self):
        count = self.page.evaluate(f"() => {self.PANEL}.content.widgets.length")
        for i in range(count):
            self.run_cell(i)

    def save(self):
        """Save the notebook (outputs included) through the UI command."""
        self.page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
        self.page.wait_for_function(f"() => !{self.PANEL}.context.model.dirty", timeout=10_000)

    def reopen(self):
        """Reload the page, as closing and reopening the browser tab does; the kernel keeps running."""
        self.page.reload()
        self.page.wait_for_function("() => window.jupyterapp !== undefined", timeout=60_000)
        self.page.evaluate("() => window.jupyterapp.restored")
        self.wait_kernel()

    def execute(self, code: str) -> str:
        """Run ``code`` in the kernel outside any cell; return its stdout (raise on an error reply)."""
        result = self.page.evaluate(
            f"""async (code) => {{
                  const k = {self.PANEL}.sessionContext.session.kernel;
                  let out = "", err = null;
                  const future = k.requestExecute({{code, silent: false, store_history: false}});
                  future.onIOPub = (msg) => {{
                    if (msg.header.msg_type === 'stream') out += msg.content.text;
                    if (msg.header.msg_type === 'error') err = msg.content.ename + ': ' + msg.content.evalue;
                  }};
                  await future.done;
                  return {{out, err}};
                }}""", code)
        if result["err"]:
            raise AssertionError(f"kernel raised {result['err']} running:\n{code}")
        return result["out"]

    def py(self, expr: str):
        """Evaluate a Python expression in the kernel and return its JSON-decoded value."""
        out = self.execute(f"import json as _json; print(_json.dumps({expr}))")
        return json.loads(out.strip().splitlines()[-1])

    def widget(self, testid: str, nth: int = 0):
        """The nth rendered widget root with this data-testid, once it is ready."""
        loc = self.page.locator(f"[data-testid='{testid}'][data-ready='1']").nth(nth)
        loc.wait_for(timeout=30_000)
        loc.scroll_into_view_if_needed()
        return loc

    def wait_until(self, expr: str, predicate, timeout: float = 15.0, poll: float = 0.25):
        """Poll the kernel with ``py(expr)`` until ``predicate(value)``; return the value."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.py(expr)
            if predicate(value) or time.monotonic() > deadline:
                return value
            time.sleep(poll)

    def screenshot(self, name: str) -> Path:
        return screenshot(self.page, name)


class Lab:
    """Opens notebooks on the shared server; each test gets its own browser page and kernel."""

    def __init__(self, browser, server: LabServer):
        self.browser, self.server = browser, server
        self.pages: list = []

    def open(self, cells: list[str] | None = None, *, notebook: Path | None = None, ui: str = "lab",
             name: str | None = None) -> NotebookPage:
        """Open ``cells`` (written to a new notebook) or a copy of ``notebook`` in the scratch root."""
        name = name or f"nb_{len(self.pages)}_{secrets.token_hex(3)}.ipynb"
        if notebook is not None:
            shutil.copy(notebook, self.server.root / name)
        else:
            write_notebook(self.server.root / name, cells or [])
        context = self.browser.new_context(viewport={"width": 1200, "height": 900})
        page = context.new_page()
        self.pages.append(context)
        return NotebookPage(page, self.server, name, ui)

    def close(self):
        for context in self.pages:
            context.close()
        self.server.shutdown_kernels()


@pytest.fixture(scope="session")
def lab_server(browser, tmp_path_factory):
    server = LabServer(tmp_path_factory.mktemp("jupyter"))
    yield server
    server.stop()


@pytest.fixture
def lab(browser, lab_server):
    """Factory for notebooks in the session's JupyterLab; pages and kernels are closed after the test."""
    lab = Lab(browser, lab_server)
    yield lab
    lab.close()


@pytest.fixture(scope="module")
def module_lab(browser, lab_server):
    """Like ``lab``, but kept for a whole test module: open one notebook and share it between its tests."""
    lab = Lab(browser, lab_server)
    yield lab
    lab.close()
