// MaskPainter: strokes, undo/redo, clear, invert and feather run here; the mask syncs at stroke end.

const UNDO_DEPTH = 30;

// Brush coverage at distance d from the centre: a hard disc, or a smooth falloff to 0 at the rim.
function coverage(d, r, soft) {
  if (d > r) return 0;
  if (!soft) return 1;
  const t = 1 - d / r;
  return t * t * (3 - 2 * t);
}

// Separable box blur, three passes ≈ a Gaussian of σ ≈ r (the usual fast feather).
function boxBlur(src, w, h, r) {
  let a = Float32Array.from(src), b = new Float32Array(src.length);
  const pass = (from, to, n, stride, lines, lineStride) => {
    for (let l = 0; l < lines; l++) {
      const base = l * lineStride;
      for (let i = 0; i < n; i++) {
        let sum = 0, count = 0;
        for (let k = Math.max(0, i - r); k <= Math.min(n - 1, i + r); k++) { sum += from[base + k * stride]; count++; }
        to[base + i * stride] = sum / count;
      }
    }
  };
  for (let p = 0; p < 3; p++) {
    pass(a, b, w, 1, h, w);
    pass(b, a, h, w, w, 1);
  }
  return a;
}

function render({ model, el }) {
  const root = widgetRoot(el, model, "mask-painter");
  let W = model.get("width"), H = model.get("height");
  let mask = new Float32Array(W * H);
  let undo = [], redo = [];
  let sent = null;         // the value we last set, so its change echo is not taken for a kernel update
  let stroke = null;       // {base, cover, last}
  let frame = 0;
  let hasImage = () => false;

  const bg = h("img", { "data-testid": "image", draggable: "false",
    style: { position: "absolute", left: 0, top: 0, width: "100%", height: "100%", pointerEvents: "none" } });
  const canvas = h("canvas", { "data-testid": "canvas",
    style: { position: "absolute", left: 0, top: 0, width: "100%", height: "100%", cursor: "crosshair" } });
  // The brush outline follows the pointer, so size and position are visible before painting.
  const ring = h("div", { "data-testid": "brush-ring",
    style: { position: "absolute", border: "1px solid #fff", outline: "1px solid #000", borderRadius: "50%",
             pointerEvents: "none", display: "none", boxSizing: "border-box" } });
  const stage = h("div", { "data-testid": "stage",
    style: { position: "relative", background: "#000", border: "1px solid #999", overflow: "hidden" } }, [bg, canvas, ring]);
  capturePointer(canvas);
  const ctx = canvas.getContext("2d");

  const button = (id, label, onclick) => h("button", { "data-testid": id, onclick, style: { marginRight: "4px" } }, label);
  const modeBtn = button("mode", "", () => { model.set("mode", model.get("mode") === "paint" ? "erase" : "paint"); model.save_changes(); });
  const softBtn = button("soft", "", () => { model.set("soft", !model.get("soft")); model.save_changes(); });
  const numeric = (id, key, attrs, parse) => {
    const input = h("input", { "data-testid": id, type: "range", ...attrs, style: { width: "90px", verticalAlign: "middle" } });
    input.addEventListener("change", () => { model.set(key, parse(input.value)); model.save_changes(); });
    return input;
  };
  const size = numeric("size", "brush_size", { min: 1, max: 128, step: 1 }, (v) => parseInt(v, 10));
  const opacity = numeric("opacity", "opacity", { min: 0, max: 1, step: 0.05 }, parseFloat);
  const readout = h("span", { "data-testid": "readout", style: { marginLeft: "6px", color: "#555" } });
  const toolbar = h("div", { style: { margin: "4px 0", display: "flex", flexWrap: "wrap", alignItems: "center", gap: "4px" } }, [
    modeBtn, softBtn, h("label", {}, ["size ", size]), h("label", {}, [" opacity ", opacity]),
    button("undo", "undo", () => restore(undo, redo)),
    button("redo", "redo", () => restore(redo, undo)),
    button("clear", "clear", () => edit(() => mask.fill(0))),
    button("invert", "invert", () => edit(() => { for (let i = 0; i < mask.length; i++) mask[i] = 1 - mask[i]; })),
    button("feather", "feather", () => edit(() => { mask = boxBlur(mask, W, H, model.get("feather_radius")); })),
    readout,
  ]);
  root.append(toolbar, stage);

  function layout() {
    const s = model.get("display_size") / Math.max(W, H);
    stage.style.width = `${Math.round(W * s)}px`;
    stage.style.height = `${Math.round(H * s)}px`;
    if (canvas.width !== W || canvas.height !== H) { canvas.width = W; canvas.height = H; }
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
  function edit(fn) { pushUndo(); fn(); draw(); sync(); }
  function restore(from, to) {
    if (!from.length) return;
    to.push(Float32Array.from(mask));
    mask = from.pop();
    draw(); sync();
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
    canvas.setPointerCapture(e.pointerId);
    pushUndo();
    const [x, y] = localPoint(canvas, e, W, H);
    stroke = { base: Float32Array.from(mask), cover: new Float32Array(W * H), last: [x, y] };
    stamp(x, y);
    requestDraw();
  });
  function moveRing(e) {
    const r = canvas.getBoundingClientRect(), d = model.get("brush_size") * r.width / W;
    Object.assign(ring.style, { display: "block", width: `${d}px`, height: `${d}px`,
      left: `${e.clientX - r.left - d / 2}px`, top: `${e.clientY - r.top - d / 2}px` });
  }
  canvas.addEventListener("pointerleave", () => { ring.style.display = "none"; });
  canvas.addEventListener("pointermove", (e) => {
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

  function fromModel() {
    const value = model.get("mask");
    if (value === sent || stroke) return;   // our own echo, or a stroke in progress that will overwrite it
    const a = decodeArray(value);
    W = model.get("width"); H = model.get("height");
    layout();
    mask = a && a.array.length === W * H ? Float32Array.from(a.array) : new Float32Array(W * H);
    draw();
  }
  function controls() {
    modeBtn.textContent = model.get("mode") === "paint" ? "✎ paint" : "⌫ erase";
    softBtn.textContent = model.get("soft") ? "soft" : "hard";
    size.value = model.get("brush_size");
    opacity.value = model.get("opacity");
  }

  model.on("change:mask", fromModel);
  model.on("change:width", fromModel);
  model.on("change:height", fromModel);
  model.on("change:display_size", () => { layout(); draw(); });
  for (const key of ["mode", "soft", "brush_size", "opacity"]) model.on(`change:${key}`, controls);
  layout();
  hasImage = bindImage(bg, model, draw);
  controls(); fromModel();
  markReady(root);
  return () => { if (frame) cancelAnimationFrame(frame); };
}

export default { render };
