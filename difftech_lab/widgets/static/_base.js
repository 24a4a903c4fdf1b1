// Shared front-end helpers, prepended to each widget's module by difftech_lab.widgets._base.load_esm.
//
// Look: every widget root gets the class "dtl-widget" (widgetRoot does it), whose stylesheet (DTL_CSS below)
// maps JupyterLab's theme variables to a few --dtl-* variables with fallbacks for hosts without them (VS Code,
// Colab, a static page), so one widget reads right in light and dark themes. Use them instead of colours:
//   inline styles:  h("span", { style: { color: "var(--dtl-fg-muted)" } })
//   SVG:            node.style.fill = "var(--dtl-fg)"   (presentation attributes do not resolve var())
// Type scale: the root is --dtl-size-m (13 px); class "dtl-small" (~11 px) for secondary text, "dtl-large" for
// headings, "dtl-mono" for numbers and code. Images and canvases inside a widget are drawn pixelated, since
// the pictures are small and every pixel matters. Buttons and inputs are themed; "dtl-stage" is the framed
// area a picture sits in.
//
// A slider with its value beside it (the readout has a fixed width, so nothing after it moves):
//   const s = slider(model, "opacity", { label: "opacity", min: 0, max: 1, step: 0.05,
//                                        format: (v) => v.toFixed(2) });
//   toolbar.append(s.el);              // s.input: the range input; s.readout: the value; s.setRange(min, max)
// It shows the value while dragging, saves the trait on release (one sync per gesture), follows changes made
// in Python, and keeps arrow keys from reaching the notebook. data-testid: the key (or `testid`), and
// `${testid}-value` for the readout.

const DTL_CSS = `
.dtl-widget {
  --dtl-fg: var(--jp-ui-font-color1, rgba(0, 0, 0, 0.87));
  --dtl-fg-muted: var(--jp-ui-font-color2, rgba(0, 0, 0, 0.54));
  --dtl-bg: var(--jp-layout-color1, #fff);
  --dtl-bg-raised: var(--jp-layout-color2, #eee);
  --dtl-border: var(--jp-border-color1, #bdbdbd);
  --dtl-border-soft: var(--jp-border-color2, #e0e0e0);
  --dtl-accent: var(--jp-brand-color1, #1976d2);
  --dtl-error: var(--jp-error-color1, #d32f2f);
  --dtl-error-bg: var(--jp-rendermime-error-background, #fdd);
  --dtl-font: var(--jp-ui-font-family, system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif);
  --dtl-mono: var(--jp-code-font-family, ui-monospace, "DejaVu Sans Mono", monospace);
  --dtl-size-s: var(--jp-ui-font-size0, 11px);
  --dtl-size-m: var(--jp-ui-font-size1, 13px);
  --dtl-size-l: var(--jp-ui-font-size2, 1.2em);
  display: inline-block;
  color: var(--dtl-fg);
  font-family: var(--dtl-font);
  font-size: var(--dtl-size-m);
  line-height: 1.4;
}
.dtl-widget .dtl-small { font-size: var(--dtl-size-s); }
.dtl-widget .dtl-large { font-size: var(--dtl-size-l); }
.dtl-widget .dtl-mono { font-family: var(--dtl-mono); }
.dtl-widget .dtl-muted { color: var(--dtl-fg-muted); }
.dtl-widget img, .dtl-widget canvas { image-rendering: pixelated; }
.dtl-widget .dtl-stage { background: var(--dtl-bg-raised); border: 1px solid var(--dtl-border); }
.dtl-widget .dtl-stage:focus-visible { outline: 2px solid var(--dtl-accent); outline-offset: 1px; }
.dtl-widget .dtl-toolbar { display: flex; flex-wrap: wrap; align-items: center; gap: 4px 8px; margin: 4px 0; }
.dtl-widget button {
  font: inherit; color: var(--dtl-fg); background: var(--dtl-bg-raised); border: 1px solid var(--dtl-border);
  border-radius: 2px; padding: 1px 8px; cursor: pointer; white-space: nowrap; text-align: center;
}
.dtl-widget button:hover { border-color: var(--dtl-accent); }
.dtl-widget button:disabled { opacity: 0.45; cursor: default; border-color: var(--dtl-border); }
.dtl-widget button:focus-visible, .dtl-widget input:focus-visible {
  outline: 2px solid var(--dtl-accent); outline-offset: 1px;
}
.dtl-widget input:not([type=range]) {
  font: inherit; color: var(--dtl-fg); background: var(--dtl-bg); border: 1px solid var(--dtl-border);
  border-radius: 2px; padding: 1px 4px;
}
.dtl-widget input[type=range] { accent-color: var(--dtl-accent); vertical-align: middle; margin: 0 4px; }
.dtl-widget .dtl-slider { display: inline-flex; align-items: center; white-space: nowrap; }
.dtl-widget .dtl-readout { display: inline-block; text-align: right; font-variant-numeric: tabular-nums; }
.dtl-widget .dtl-error {
  color: var(--dtl-error); background: var(--dtl-error-bg); padding: 4px 8px; font-family: var(--dtl-mono);
  font-size: var(--dtl-size-s); white-space: pre-wrap;
}
`;

const TYPED = { uint8: Uint8Array, int32: Int32Array, float32: Float32Array, float64: Float64Array };

// {data: DataView, shape, dtype} from the kernel -> {array, shape, dtype}; copies so the view is aligned.
function decodeArray(v) {
  if (!v || !v.data) return null;
  const dv = v.data;
  const bytes = dv.buffer.slice(dv.byteOffset, dv.byteOffset + dv.byteLength);
  return { array: new TYPED[v.dtype](bytes), shape: Array.from(v.shape), dtype: v.dtype };
}

// A typed array -> the wire form the Python NDArray trait reads.
function encodeArray(array, shape, dtype) {
  return { data: new DataView(array.buffer.slice(0)), shape: Array.from(shape), dtype };
}

// PNG bytes (a DataView from a binary trait) -> an object URL, or "" when empty.
function pngURL(dv) {
  if (!dv || dv.byteLength === 0) return "";
  return URL.createObjectURL(new Blob([dv], { type: "image/png" }));
}

// Keep an <img> showing the PNG bytes of the `image` trait, then call `after`; returns "is one shown?".
function bindImage(img, model, after = () => {}) {
  let url = "";
  const show = () => {
    if (url) URL.revokeObjectURL(url);
    url = pngURL(model.get("image"));
    if (url) img.src = url;
    img.style.display = url ? "block" : "none";
    after();
  };
  model.on("change:image", show);
  show();
  return () => Boolean(url);
}

function h(tag, attrs = {}, children = []) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "style") Object.assign(el.style, v);
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v);
  }
  for (const c of [].concat(children)) el.append(c);
  return el;
}

// JupyterLab selects and drags cells on pointer events that reach the notebook: keep them here.
function capturePointer(el) {
  el.style.touchAction = "none";
  el.style.userSelect = "none";
  for (const type of ["pointerdown", "mousedown", "touchstart", "dragstart"]) {
    el.addEventListener(type, (e) => { e.preventDefault(); e.stopPropagation(); });
  }
}

// The banner that shows a Python-side exception (the `error` trait) inside the widget.
function errorBanner(model) {
  const el = h("div", { "data-testid": "error", class: "dtl-error", style: { display: "none" } });
  const show = () => {
    const msg = model.get("error") || "";
    el.textContent = msg;
    el.style.display = msg ? "block" : "none";
  };
  model.on("change:error", show);
  show();
  return el;
}

// Common root: data-testid, the shared stylesheet, the error banner, and data-ready once the widget has drawn.
// The stylesheet travels inside each root rather than in the page's head: a host may render widgets in a
// shadow root or a detached element, where a head stylesheet would not reach. Lumino skips its keyboard
// shortcuts (cell delete, mode switches) for keys pressed inside data-lm-suppress-shortcuts.
function widgetRoot(el, model, testid) {
  const root = h("div", { "data-testid": testid, class: "dtl-widget", "data-lm-suppress-shortcuts": "true" });
  root.append(h("style", {}, DTL_CSS), errorBanner(model));
  el.append(root);
  return root;
}

// Commit a text/number input on change and on Enter: JupyterLab's capture-phase shortcut handler
// preventDefaults Enter, which would otherwise swallow the change event. Commits once per edit.
function onCommit(input, fn) {
  let committed = null;
  const commit = () => { if (input.value !== committed) { committed = input.value; fn(); } };
  input.addEventListener("focus", () => { committed = input.value; });
  input.addEventListener("change", commit);
  input.addEventListener("keydown", (e) => {
    e.stopPropagation();
    if (e.key === "Enter") commit();
  });
}

function markReady(root) { root.setAttribute("data-ready", "1"); }

// Pointer position in the element's own pixel coordinates (element may be scaled by CSS).
function localPoint(el, e, width, height) {
  const r = el.getBoundingClientRect();
  return [(e.clientX - r.left) * width / r.width, (e.clientY - r.top) * height / r.height];
}

// A labelled range input bound to the trait `key`, with a fixed-width readout; usage at the top of this file.
function slider(model, key, { label = "", min = 0, max = 1, step = 1, format = String, testid = key,
                              width = "90px" } = {}) {
  const input = h("input", { "data-testid": testid, type: "range", min, max, step, "aria-label": label || key,
    style: { width } });
  const readout = h("output", { "data-testid": `${testid}-value`, class: "dtl-readout dtl-mono dtl-small" });
  const show = (v) => { readout.textContent = format(v); };
  // wide enough for the longest value the range can show, so the toolbar does not move while dragging
  const fit = () => {
    const lo = Number(input.min), hi = Number(input.max), st = Number(input.step) || 1;
    const chars = Math.max(...[lo, hi, lo + st, hi - st].map((v) => format(v).length));
    readout.style.width = `${chars}ch`;
  };
  const fromModel = () => { input.value = model.get(key); show(model.get(key)); };
  input.addEventListener("input", () => show(Number(input.value)));
  input.addEventListener("change", () => { model.set(key, Number(input.value)); model.save_changes(); });
  // arrow keys would otherwise also move the notebook's cell selection
  input.addEventListener("keydown", (e) => e.stopPropagation());
  model.on(`change:${key}`, fromModel);
  fit(); fromModel();
  const el = h("label", { class: "dtl-slider" }, label ? [label, input, readout] : [input, readout]);
  return { el, input, readout, setRange(lo, hi) { input.min = lo; input.max = hi; fit(); fromModel(); } };
}
