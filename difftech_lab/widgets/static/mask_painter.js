// MaskPainter: strokes and undo/redo run here and the mask syncs at stroke end. Clear, invert and feather are
// the Python methods, asked for by message, so the buttons and a call from the kernel give the same mask.

const UNDO_DEPTH = 30;

// Brush coverage at distance d from the centre: a hard disc, or a smooth falloff to 0 at the rim.
function coverage(d, r, soft) {
  if (d > r) return 0;
  if (!soft) return 1;
  const t = 1 - d / r;
  return t * t * (3 - 2 * t);
}

// The next brush size for `[` (dir -1) and `]` (dir +1): a quarter bigger or smaller, at least one pixel.
function stepBrush(size, dir, max) {
  const next = dir > 0 ? Math.max(size + 1, Math.round(size * 1.25)) : Math.min(size - 1, Math.round(size / 1.25));
  return Math.min(max, Math.max(1, next));
}

const sameMask = (a, b) => a.length === b.length && a.every((v, i) => v === b[i]);

function render({ model, el }) {
  const root = widgetRoot(el, model, "mask-painter");
  let W = model.get("width"), H = model.get("height");
  let mask = new Float32Array(W * H);
  let undo = [], redo = [];
  let sent = null;         // the value we last set, so its change echo is not taken for a kernel update
  let stroke = null;       // {base, cover, last, keptRedo}
  let frame = 0;
  let hasImage = () => false;

  const bg = h("img", { "data-testid": "image", draggable: "false",
    style: { position: "absolute", left: 0, top: 0, width: "100%", height: "100%", pointerEvents: "none" } });
  const canvas = h("canvas", { "data-testid": "canvas",
    style: { position: "absolute", left: 0, top: 0, width: "100%", height: "100%", cursor: "crosshair" } });
  // The brush outline follows the pointer, so size and position are visible before painting; white inside
  // black reads on any picture.
  const ring = h("div", { "data-testid": "brush-ring",
    style: { position: "absolute", border: "1px solid #fff", outline: "1px solid #000", borderRadius: "50%",
             pointerEvents: "none", display: "none", boxSizing: "border-box" } });
  // Focusable, so the keyboard shortcuts reach it; capturePointer keeps clicks from focusing it on their own.
  const stage = h("div", { "data-testid": "stage", class: "dtl-stage", tabindex: "0",
    "aria-label": "mask: [ and ] brush size, X paint/erase, Ctrl+Z undo, Ctrl+Shift+Z redo, Escape cancel stroke",
    style: { position: "relative", overflow: "hidden" } }, [bg, canvas, ring]);
  capturePointer(canvas);
  const ctx = canvas.getContext("2d");

  const button = (id, label, onclick, title) => h("button", { "data-testid": id, onclick, title }, label);
  // Fixed widths: the label changes with the state, and the controls after it must not move.
  const modeBtn = button("mode", "", () => toggleMode(), "paint or erase (X)");
  const softBtn = button("soft", "", () => { model.set("soft", !model.get("soft")); model.save_changes(); },
    "hard or soft brush edge");
  modeBtn.style.width = "6.5em";
  softBtn.style.width = "4.5em";
  const size = slider(model, "brush_size", { label: "size", min: 1, max: 64, step: 1, testid: "size",
    format: (v) => `${v} px` });
  const opacity = slider(model, "opacity", { label: "opacity", min: 0, max: 1, step: 0.05,
    format: (v) => v.toFixed(2) });
  const feather = slider(model, "feather_radius", { label: "feather σ", min: 1, max: 16, step: 1,
    testid: "feather-radius", format: (v) => `${v} px` });
  // Kernel-side edits: the new mask comes back as a change of `mask` (fromModel keeps it undoable).
  const request = (name) => () => model.send({ request: name });
  // Two rows, the brush and then the whole mask, so neither wraps at an arbitrary control.
  const toolbar = h("div", { "data-testid": "toolbar" }, [
    h("div", { class: "dtl-toolbar" }, [modeBtn, softBtn, size.el, opacity.el]),
    h("div", { class: "dtl-toolbar" }, [
      button("undo", "undo", () => restore(undo, redo), "undo (Ctrl+Z)"),
      button("redo", "redo", () => restore(redo, undo), "redo (Ctrl+Shift+Z)"),
      button("clear", "clear", request("clear"), "erase everything"),
      button("invert", "invert", request("invert"), "swap painted and unpainted"),
      feather.el,
      button("feather", "feather", request("feather"), "blur the mask's edges by feather σ"),
    ]),
  ]);
  const readout = h("div", { "data-testid": "readout", class: "dtl-small dtl-muted dtl-mono",
    style: { marginTop: "2px" } });
  root.append(toolbar, stage, readout);

  function layout() {
    const s = model.get("display_size") / Math.max(W, H);
    stage.style.width = `${Math.round(W * s)}px`;
    stage.style.height = `${Math.round(H * s)}px`;
    if (canvas.width !== W || canvas.height !== H) { canvas.width = W; canvas.height = H; }
    size.setRange(1, Math.max(16, Math.round(Math.max(W, H) / 2)));
    feather.setRange(1, Math.max(4, Math.round(Math.min(W, H) / 4)));
  }

  // Over an image the mask is a translucent magenta overlay (alpha follows strength); on a blank canvas it
  // is the strength map itself, black 0 to white 1.
  function draw() {
    frame = 0;
    const img = ctx.createImageData(W, H), overlay = hasImage();
    for (let i = 0; i < mask.length; i++) {
      const g = Math.round(mask[i] * 255);
      img.data[4 * i] = overlay ? 255 : g; img.data[4 * i + 1] = overlay ? 0 : g; img.data[4 * i + 2] = overlay ? 128 : g;
      img.data[4 * i + 3] = overlay ? Math.round(mask[i] * 170) : 255;
    }
    ctx.putImageData(img, 0, 0);
    let sum = 0; for (let i = 0; i < mask.length; i++) sum += mask[i];
    readout.textContent = `${W}×${H} · mean ${(sum / mask.length).toFixed(3)} · undo ${undo.length}`;
  }
  const requestDraw = () => { if (!frame) frame = requestAnimationFrame(draw); };

  function sync() {
    sent = encodeArray(mask, [H, W], "float32");
    model.set("mask", sent);
    model.save_changes();
  }
  function pushUndo() {
    undo.push(Float32Array.from(mask));
    if (undo.length > UNDO_DEPTH) undo.shift();
    redo = [];
  }
  function restore(from, to) {
    if (!from.length) return;
    to.push(Float32Array.from(mask));
    mask = from.pop();
    draw(); sync();
  }
  function toggleMode() {
    model.set("mode", model.get("mode") === "paint" ? "erase" : "paint");
    model.save_changes();
  }

  // Stroke coverage is the max over stamps, so overlapping stamps inside one stroke don't stack up.
  function stamp(x, y) {
    const r = Math.max(0.5, model.get("brush_size") / 2), soft = model.get("soft");
    const erase = model.get("mode") === "erase", alpha = model.get("opacity");
    const { base, cover } = stroke;
    for (let py = Math.max(0, Math.floor(y - r)); py <= Math.min(H - 1, Math.ceil(y + r)); py++) {
      for (let px = Math.max(0, Math.floor(x - r)); px <= Math.min(W - 1, Math.ceil(x + r)); px++) {
        const i = py * W + px;
        const c = coverage(Math.hypot(px + 0.5 - x, py + 0.5 - y), r, soft);
        if (c <= cover[i]) continue;
        cover[i] = c;
        mask[i] = erase ? base[i] * (1 - alpha * c) : Math.max(base[i], alpha * c);
      }
    }
  }
  function strokeTo(x, y) {
    const [x0, y0] = stroke.last;
    const spacing = Math.max(0.5, model.get("brush_size") / 8);
    const n = Math.max(1, Math.ceil(Math.hypot(x - x0, y - y0) / spacing));
    for (let k = 1; k <= n; k++) stamp(x0 + (x - x0) * k / n, y0 + (y - y0) * k / n);
    stroke.last = [x, y];
    requestDraw();
  }

  canvas.addEventListener("pointerdown", (e) => {
    if (e.button !== 0) return;
    stage.focus({ preventScroll: true });
    canvas.setPointerCapture(e.pointerId);
    const keptRedo = redo;
    pushUndo();
    const [x, y] = localPoint(canvas, e, W, H);
    stroke = { base: Float32Array.from(mask), cover: new Float32Array(W * H), last: [x, y], keptRedo };
    stamp(x, y);
    requestDraw();
  });
  function moveRing(e) {
    const r = canvas.getBoundingClientRect(), d = model.get("brush_size") * r.width / W;
    Object.assign(ring.style, { display: "block", width: `${d}px`, height: `${d}px`,
      left: `${e.clientX - r.left - d / 2}px`, top: `${e.clientY - r.top - d / 2}px` });
  }
  let pointer = null;      // the last pointer event over the canvas, to resize the ring when the brush changes
  canvas.addEventListener("pointerleave", () => { ring.style.display = "none"; pointer = null; });
  canvas.addEventListener("pointermove", (e) => {
    pointer = e;
    moveRing(e);
    if (!stroke) return;
    e.preventDefault(); e.stopPropagation();
    strokeTo(...localPoint(canvas, e, W, H));
  });
  const end = (e) => {
    if (!stroke) return;
    e.preventDefault(); e.stopPropagation();
    stroke = null;
    draw();
    sync();
  };
  canvas.addEventListener("pointerup", end);
  canvas.addEventListener("pointercancel", end);

  // Mask, undo and redo go back to how they were before the stroke.
  function cancelStroke() {
    mask = stroke.base;
    undo.pop();
    redo = stroke.keptRedo;
    stroke = null;
    draw();
  }

  stage.addEventListener("keydown", (e) => {
    const mod = e.ctrlKey || e.metaKey, key = e.key.toLowerCase();
    if (e.key === "Escape" && stroke) cancelStroke();
    else if (!mod && (e.key === "[" || e.key === "]")) {
      model.set("brush_size", stepBrush(model.get("brush_size"), e.key === "]" ? 1 : -1, Number(size.input.max)));
      model.save_changes();
    } else if (!mod && key === "x" && !stroke) toggleMode();
    else if (mod && key === "z" && !stroke) restore(...(e.shiftKey ? [redo, undo] : [undo, redo]));
    else if (mod && key === "y" && !stroke) restore(redo, undo);
    else return;
    e.preventDefault(); e.stopPropagation();
  });

  // A mask from the kernel (a Python assignment, or the result of clear/invert/feather) replaces the one
  // shown; the one it replaces becomes an undo step, so any change can be taken back here.
  function fromModel() {
    const value = model.get("mask");
    if (value === sent || stroke) return;   // our own echo, or a stroke in progress that will overwrite it
    const a = decodeArray(value);
    const w = model.get("width"), hh = model.get("height");
    const next = a && a.array.length === w * hh ? Float32Array.from(a.array) : new Float32Array(w * hh);
    if (w !== W || hh !== H) { undo = []; redo = []; }
    else if (!sameMask(mask, next)) pushUndo();
    W = w; H = hh;
    layout();
    mask = next;
    draw();
  }
  function controls() {
    const paint = model.get("mode") === "paint";
    modeBtn.textContent = paint ? "✎ paint" : "⌫ erase";
    modeBtn.setAttribute("aria-pressed", String(!paint));
    softBtn.textContent = model.get("soft") ? "soft" : "hard";
    if (pointer) moveRing(pointer);
  }

  model.on("change:mask", fromModel);
  model.on("change:width", fromModel);
  model.on("change:height", fromModel);
  model.on("change:display_size", () => { layout(); draw(); });
  for (const key of ["mode", "soft", "brush_size"]) model.on(`change:${key}`, controls);
  layout();
  hasImage = bindImage(bg, model, draw);
  controls(); fromModel();
  markReady(root);
  return () => { if (frame) cancelAnimationFrame(frame); };
}

export default { render };
