// Shared front-end helpers, prepended to each widget's module by difftech_lab.widgets._base.load_esm.

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
  const el = h("div", { "data-testid": "error", class: "dtl-error",
    style: { color: "#b00020", background: "#fdecea", padding: "4px 8px", fontFamily: "monospace",
             fontSize: "12px", whiteSpace: "pre-wrap", display: "none" } });
  const show = () => {
    const msg = model.get("error") || "";
    el.textContent = msg;
    el.style.display = msg ? "block" : "none";
  };
  model.on("change:error", show);
  show();
  return el;
}

// Common root: data-testid, the error banner, and data-ready once the widget has drawn. Lumino skips its
// keyboard shortcuts (cell delete, mode switches) for keys pressed inside data-lm-suppress-shortcuts.
function widgetRoot(el, model, testid) {
  const root = h("div", { "data-testid": testid, class: "dtl-widget", "data-lm-suppress-shortcuts": "true",
    style: { fontFamily: "sans-serif", fontSize: "13px", display: "inline-block" } });
  root.append(errorBanner(model));
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
