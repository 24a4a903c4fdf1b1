// CurveEditor: keyframes move here while dragging; they sync at drag end.

const PLOT_W = 480, PLOT_H = 200, PAD = { l: 56, r: 12, t: 22, b: 28 };
// Keyframes at the ends of the range sit this far inside the axes, so their dots never cover a tick label
const INSET = 10;
const DOUBLE_MS = 400;
const NS = "http://www.w3.org/2000/svg";

function el(tag, attrs = {}, text) {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

// SVG text in the theme's muted colour (presentation attributes do not resolve var())
function label(attrs, text) {
  const node = el("text", { "font-size": 10, ...attrs }, text);
  node.style.fill = "var(--dtl-fg-muted, #666)";
  return node;
}

// The snap increment of a value range: the 1-2-5 step nearest above 1/150 of it (0.1 for 0–15, 0.01 for 0–1),
// fine enough to place a keyframe by mouse, coarse enough that values read as typed.
function snapStep(lo, hi) {
  const raw = (hi - lo) / 150, p = 10 ** Math.floor(Math.log10(raw));
  return [1, 2, 5, 10].map((m) => m * p).find((s) => s >= raw);
}

function snapValue(v, lo, hi) {
  const step = snapStep(lo, hi), digits = Math.max(0, -Math.floor(Math.log10(step)));
  const snapped = Math.min(hi, Math.max(lo, Math.round(v / step) * step));
  return +snapped.toFixed(digits);
}

const show2 = (v) => String(+v.toFixed(2));

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

  const plot = el("svg", { "data-testid": "plot", width: PLOT_W, height: PLOT_H, viewBox: `0 0 ${PLOT_W} ${PLOT_H}`,
    class: "dtl-stage" });
  plot.style.cursor = "crosshair";
  plot.style.background = "var(--dtl-bg, #fff)";
  capturePointer(plot);
  const readout = h("span", { "data-testid": "readout", class: "dtl-mono dtl-muted" });
  const del = h("button", { "data-testid": "delete", onclick: () => remove(selected), title: "Delete or Backspace" },
    "delete keyframe");
  const stepInput = h("input", { "data-testid": "kf-step", type: "number", step: "1", min: "0", style: { width: "4em" } });
  const valueInput = h("input", { "data-testid": "kf-value", type: "number", style: { width: "5.5em" } });
  const valueLabel = h("span");
  onCommit(stepInput, () => {
    const s = parseInt(stepInput.value, 10);
    if (selected < 0 || !Number.isFinite(s)) return;
    place(Math.min(steps() - 1, Math.max(0, s)), keyframes[selected][1]);
    draw(); sync();
  });
  onCommit(valueInput, () => {
    const v = parseFloat(valueInput.value);
    if (selected < 0 || !Number.isFinite(v)) return;
    const [lo, hi] = range();
    keyframes[selected] = [keyframes[selected][0], Math.min(hi, Math.max(lo, v))];   // typed values stay exact
    draw(); sync();
  });
  root.append(plot, h("div", { class: "dtl-toolbar" }, [
    h("label", {}, ["step ", stepInput]), h("label", {}, [valueLabel, " ", valueInput]), del, readout]));

  const steps = () => model.get("steps");
  const range = () => model.get("value_range");
  const xOf = (s) => PAD.l + INSET + (steps() > 1 ? s / (steps() - 1) : 0.5) * (PLOT_W - PAD.l - PAD.r - 2 * INSET);
  const yOf = (v) => {
    const [lo, hi] = range();
    return PLOT_H - PAD.b - INSET - (v - lo) / (hi - lo) * (PLOT_H - PAD.t - PAD.b - 2 * INSET);
  };
  function fromPoint(e) {
    const [x, y] = localPoint(plot, e, PLOT_W, PLOT_H);
    const [lo, hi] = range(), n = steps();
    const s = Math.round((x - PAD.l - INSET) / (PLOT_W - PAD.l - PAD.r - 2 * INSET) * (n - 1));
    const v = lo + (PLOT_H - PAD.b - INSET - y) / (PLOT_H - PAD.t - PAD.b - 2 * INSET) * (hi - lo);
    return [Math.min(n - 1, Math.max(0, s)), snapValue(v, lo, hi)];
  }

  function sync() {
    model.set("keyframes", keyframes.map(([s, v]) => [s, v]));
    model.save_changes();
  }

  function draw() {
    plot.replaceChildren();
    const [lo, hi] = range(), n = steps(), name = model.get("label");
    for (let k = 0; k <= 4; k++) {
      const v = lo + (hi - lo) * k / 4, y = yOf(v);
      const grid = el("line", { x1: PAD.l, x2: PLOT_W - PAD.r, y1: y, y2: y });
      grid.style.stroke = "var(--dtl-border-soft, #eee)";
      plot.append(grid, label({ x: PAD.l - 4, y: y + 4, "text-anchor": "end", "data-testid": "y-tick" }, show2(v)));
    }
    const tick = Math.max(1, Math.ceil(n / 10));
    for (let s = 0; s < n; s += tick) {
      plot.append(label({ x: xOf(s), y: PLOT_H - PAD.b + 14, "text-anchor": "middle", "data-testid": "x-tick" }, s));
    }
    const cy = (PAD.t + PLOT_H - PAD.b) / 2;
    plot.append(label({ x: PLOT_W - PAD.r, y: PLOT_H - 2, "text-anchor": "end" }, "step"),
                label({ x: 12, y: cy, "text-anchor": "middle", transform: `rotate(-90 12 ${cy})`, "font-size": 11,
                        "data-testid": "axis-label" }, name),
                label({ x: PLOT_W - PAD.r, y: 4, "text-anchor": "end", "dominant-baseline": "hanging" },
                      "click: add · drag: move · double-click or Delete: remove · arrows: nudge"));
    const values = interpolate(keyframes, n);
    plot.append(el("polyline", { points: values.map((v, s) => `${xOf(s)},${yOf(v)}`).join(" "),
      fill: "none", stroke: "#1f77b4", "stroke-width": 2, "data-testid": "curve" }));
    values.forEach((v, s) => plot.append(el("circle", { cx: xOf(s), cy: yOf(v), r: 2, fill: "#1f77b4", "pointer-events": "none" })));
    keyframes.forEach(([s, v], i) => {
      const dot = el("circle", { cx: xOf(s), cy: yOf(v), r: 6, fill: i === selected ? "#d62728" : "#fff",
        stroke: "#d62728", "stroke-width": 2, "data-testid": `kf-${i}`, "data-step": s, "data-value": v });
      dot.style.cursor = "grab";
      dot.addEventListener("pointerdown", (e) => start(e, i));
      dot.append(el("title", {}, `step ${s}: ${name} ${show2(v)}`));
      plot.append(dot);
    });
    const [s, v] = keyframes[selected] || [];
    readout.textContent = selected >= 0 ? `${name} at step ${s}: ${show2(v)}` : `${keyframes.length} keyframes`;
    valueLabel.textContent = name;
    del.disabled = selected < 0 || keyframes.length < 2;
    stepInput.disabled = valueInput.disabled = selected < 0;
    stepInput.max = String(n - 1);
    valueInput.min = String(lo); valueInput.max = String(hi); valueInput.step = String(snapStep(lo, hi));
    if (document.activeElement !== stepInput) stepInput.value = selected >= 0 ? String(s) : "";
    if (document.activeElement !== valueInput) valueInput.value = selected >= 0 ? show2(v) : "";
  }

  // A second press on the same keyframe within DOUBLE_MS deletes it (the redraw after the first press
  // replaces the element, so the browser's own dblclick never reaches it).
  let lastPress = { index: -1, time: 0 };
  function start(e, index) {
    if (e.button !== 0) return;
    e.preventDefault(); e.stopPropagation();
    root.focus({ preventScroll: true });   // so Delete and the arrows reach the widget after a click
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

  // The moved keyframe replaces any other at the step it lands on.
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

  // Keys on the selected keyframe: ←/→ one step, ↑/↓ one snap increment (Shift: ten), Delete removes it,
  // Escape deselects. The inputs stop their own keys (onCommit), so typing there never moves a keyframe.
  root.tabIndex = 0;
  // the plot's frame, not a ring round the whole widget, shows that the keys reach it
  root.style.outline = "none";
  root.addEventListener("focus", () => { plot.style.borderColor = "var(--dtl-accent, #1976d2)"; });
  root.addEventListener("blur", () => { plot.style.borderColor = ""; });
  root.addEventListener("keydown", (e) => {
    const [lo, hi] = range(), big = e.shiftKey ? 10 : 1;
    const nudge = {
      ArrowLeft: ([s, v]) => [Math.max(0, s - 1), v],
      ArrowRight: ([s, v]) => [Math.min(steps() - 1, s + 1), v],
      ArrowUp: ([s, v]) => [s, snapValue(v + big * snapStep(lo, hi), lo, hi)],
      ArrowDown: ([s, v]) => [s, snapValue(v - big * snapStep(lo, hi), lo, hi)],
    }[e.key];
    if (e.key === "Delete" || e.key === "Backspace") remove(selected);
    else if (e.key === "Escape" && selected >= 0) { selected = -1; draw(); }
    else if (nudge && selected >= 0) {
      const [s, v] = nudge(keyframes[selected]);
      // an arrow never pushes a keyframe onto its neighbour (a drag does replace, on purpose)
      if (!keyframes.some(([k], i) => k === s && i !== selected)) { place(s, v); draw(); sync(); }
    } else return;
    e.preventDefault(); e.stopPropagation();
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
