// CurveEditor: keyframes move here while dragging; they sync at drag end.

const PLOT_W = 480, PLOT_H = 200, PAD = { l: 44, r: 12, t: 22, b: 28 };
const DOUBLE_MS = 400;
const NS = "http://www.w3.org/2000/svg";

function el(tag, attrs = {}, text) {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

// Per-step values, linear between keyframes and constant outside them (numpy.interp's rule), for display.
function interpolate(keyframes, steps) {
  const out = [];
  for (let s = 0; s < steps; s++) {
    let j = keyframes.findIndex(([k]) => k >= s);
    if (j === -1) out.push(keyframes[keyframes.length - 1][1]);
    else if (j === 0 || keyframes[j][0] === s) out.push(keyframes[j][1]);
    else {
      const [s0, v0] = keyframes[j - 1], [s1, v1] = keyframes[j];
      out.push(v0 + (v1 - v0) * (s - s0) / (s1 - s0));
    }
  }
  return out;
}

function render({ model, el: host }) {
  const root = widgetRoot(host, model, "curve-editor");
  let keyframes = [];     // [[step, value], …] sorted by step
  let selected = -1;
  let drag = null;

  const plot = el("svg", { "data-testid": "plot", width: PLOT_W, height: PLOT_H, viewBox: `0 0 ${PLOT_W} ${PLOT_H}` });
  plot.style.cursor = "crosshair";
  plot.style.background = "#fff";
  plot.style.border = "1px solid #bbb";
  capturePointer(plot);
  const readout = h("span", { "data-testid": "readout", style: { color: "#444", fontFamily: "monospace", marginLeft: "8px" } });
  const del = h("button", { "data-testid": "delete", onclick: () => remove(selected) }, "delete keyframe");
  root.append(plot, h("div", { style: { marginTop: "4px" } }, [del, readout]));

  const steps = () => model.get("steps");
  const range = () => model.get("value_range");
  const xOf = (s) => PAD.l + (steps() > 1 ? s / (steps() - 1) : 0.5) * (PLOT_W - PAD.l - PAD.r);
  const yOf = (v) => { const [lo, hi] = range(); return PLOT_H - PAD.b - (v - lo) / (hi - lo) * (PLOT_H - PAD.t - PAD.b); };
  function fromPoint(e) {
    const [x, y] = localPoint(plot, e, PLOT_W, PLOT_H);
    const [lo, hi] = range(), n = steps();
    const s = Math.round((x - PAD.l) / (PLOT_W - PAD.l - PAD.r) * (n - 1));
    const v = lo + (PLOT_H - PAD.b - y) / (PLOT_H - PAD.t - PAD.b) * (hi - lo);
    return [Math.min(n - 1, Math.max(0, s)), Math.min(hi, Math.max(lo, v))];
  }

  function sync() {
    model.set("keyframes", keyframes.map(([s, v]) => [s, v]));
    model.save_changes();
  }

  function draw() {
    plot.replaceChildren();
    const [lo, hi] = range(), n = steps();
    for (let k = 0; k <= 4; k++) {
      const v = lo + (hi - lo) * k / 4, y = yOf(v);
      plot.append(el("line", { x1: PAD.l, x2: PLOT_W - PAD.r, y1: y, y2: y, stroke: "#eee" }),
                  el("text", { x: PAD.l - 4, y: y + 4, "text-anchor": "end", "font-size": 10, fill: "#666" }, +v.toFixed(2)));
    }
    const tick = Math.max(1, Math.ceil(n / 10));
    for (let s = 0; s < n; s += tick) {
      plot.append(el("text", { x: xOf(s), y: PLOT_H - PAD.b + 14, "text-anchor": "middle", "font-size": 10, fill: "#666" }, s));
    }
    plot.append(el("text", { x: PLOT_W - PAD.r, y: PLOT_H - 2, "text-anchor": "end", "font-size": 10, fill: "#666" }, "step"),
                el("text", { x: 4, y: 4, "font-size": 10, fill: "#666", "dominant-baseline": "hanging" }, model.get("label")),
                el("text", { x: PLOT_W - PAD.r, y: 4, "text-anchor": "end", "font-size": 10, fill: "#999",
                  "dominant-baseline": "hanging" }, "click: add · drag: move · double-click: delete"));
    const values = interpolate(keyframes, n);
    plot.append(el("polyline", { points: values.map((v, s) => `${xOf(s)},${yOf(v)}`).join(" "),
      fill: "none", stroke: "#1f77b4", "stroke-width": 2, "data-testid": "curve" }));
    values.forEach((v, s) => plot.append(el("circle", { cx: xOf(s), cy: yOf(v), r: 2, fill: "#1f77b4", "pointer-events": "none" })));
    keyframes.forEach(([s, v], i) => {
      const dot = el("circle", { cx: xOf(s), cy: yOf(v), r: 6, fill: i === selected ? "#d62728" : "#fff",
        stroke: "#d62728", "stroke-width": 2, "data-testid": `kf-${i}`, "data-step": s, "data-value": v });
      dot.style.cursor = "grab";
      dot.addEventListener("pointerdown", (e) => start(e, i));
      plot.append(dot);
    });
    const [s, v] = keyframes[selected] || [];
    readout.textContent = selected >= 0 ? `step ${s}: ${v.toFixed(3)}` : `${keyframes.length} keyframes`;
    del.disabled = selected < 0 || keyframes.length < 2;
  }

  // A second press on the same keyframe within DOUBLE_MS deletes it (the redraw after the first press
  // replaces the element, so the browser's own dblclick never reaches it).
  let lastPress = { index: -1, time: 0 };
  function start(e, index) {
    if (e.button !== 0) return;
    e.preventDefault(); e.stopPropagation();
    const now = performance.now();
    if (lastPress.index === index && now - lastPress.time < DOUBLE_MS) {
      lastPress = { index: -1, time: 0 };
      remove(index);
      return;
    }
    lastPress = { index, time: now };
    plot.setPointerCapture(e.pointerId);
    selected = index;
    drag = { moved: false };
    draw();
  }

  // The dragged keyframe replaces any other at the step it lands on.
  function place(step, value) {
    const others = keyframes.filter((_, i) => i !== selected && keyframes[i][0] !== step);
    const kf = [step, value];
    keyframes = [...others, kf].sort((a, b) => a[0] - b[0]);
    selected = keyframes.indexOf(kf);
  }

  function remove(index) {
    if (index < 0 || keyframes.length < 2) return;
    keyframes.splice(index, 1);
    selected = -1;
    lastPress = { index: -1, time: 0 };
    draw(); sync();
  }

  plot.addEventListener("pointerdown", (e) => {
    if (drag || e.button !== 0 || e.target !== plot && e.target.tagName !== "polyline" && e.target.tagName !== "line") return;
    selected = -1;
    place(...fromPoint(e));
    lastPress = { index: -1, time: 0 };
    start(e, selected);
    drag.moved = true;   // a click on empty space adds a keyframe: sync it even without movement
  });
  plot.addEventListener("pointermove", (e) => {
    if (!drag) return;
    e.preventDefault(); e.stopPropagation();
    drag.moved = true;
    place(...fromPoint(e));
    draw();
  });
  const end = (e) => {
    if (!drag) return;
    e.preventDefault(); e.stopPropagation();
    const moved = drag.moved;
    drag = null;
    draw();
    if (moved) sync();
  };
  plot.addEventListener("pointerup", end);
  plot.addEventListener("pointercancel", end);
  root.tabIndex = 0;
  root.addEventListener("keydown", (e) => {
    if (e.key === "Delete" || e.key === "Backspace") { e.preventDefault(); e.stopPropagation(); remove(selected); }
  });

  function fromModel() {
    if (drag) return;     // the drag in progress syncs its own result at the end
    keyframes = (model.get("keyframes") || []).map(([s, v]) => [s, v]);
    if (selected >= keyframes.length) selected = -1;
    draw();
  }
  for (const key of ["keyframes", "steps", "value_range", "label"]) model.on(`change:${key}`, fromModel);
  fromModel();
  markReady(root);
}

export default { render };
