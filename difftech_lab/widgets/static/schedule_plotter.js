// SchedulePlotter: draws the σ and log-SNR curves the kernel computed; the controls edit synced traits.
// Schedule names and colours come with the curves, so any schedule the kernel knows is drawn.

const PANEL_W = 360, PANEL_H = 240, PAD = { l: 46, r: 10, t: 22, b: 30 };
const SVGNS = "http://www.w3.org/2000/svg";
// [trait, label, step, the one schedule it tunes]: such a control is hidden while its schedule is not drawn
const CONTROLS = [["steps", "steps", 1], ["sigma_min", "σ min", "any"], ["sigma_max", "σ max", "any"],
                  ["rho", "ρ Karras", 0.5, "karras"], ["poly_rho", "ρ poly", 0.5, "polyexponential"],
                  ["shift", "flow shift", 0.5, "flow"]];

function node(tag, attrs = {}, text) {
  const n = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
  if (text !== undefined) n.textContent = text;
  return n;
}

const fmt = (v) => (Math.abs(v) >= 100 || (Math.abs(v) < 0.01 && v !== 0) ? v.toExponential(1) : +v.toPrecision(3));

// One panel: series of [x, y] points (y null = not drawable, e.g. σ = 0 on a log axis).
function panel(title, series, { logY, selected }) {
  const svg = node("svg", { width: PANEL_W, height: PANEL_H, viewBox: `0 0 ${PANEL_W} ${PANEL_H}` });
  svg.style.background = "#fff";
  svg.style.border = "1px solid #ccc";
  const tf = logY ? Math.log10 : (v) => v;
  const pts = series.flatMap((s) => s.points.filter(([, y]) => y !== null && (!logY || y > 0)));
  if (!pts.length) return svg;
  const xs = pts.map(([x]) => x), ys = pts.map(([, y]) => tf(y));
  let [x0, x1, y0, y1] = [0, Math.max(...xs) || 1, Math.min(...ys), Math.max(...ys)];
  if (y1 - y0 < 1e-9) { y0 -= 1; y1 += 1; }
  const X = (x) => PAD.l + (x - x0) / (x1 - x0) * (PANEL_W - PAD.l - PAD.r);
  const Y = (y) => PANEL_H - PAD.b - (tf(y) - y0) / (y1 - y0) * (PANEL_H - PAD.t - PAD.b);
  svg.append(node("text", { x: PAD.l, y: 14, "font-size": 12, "font-weight": "bold", fill: "#333" }, title));
  for (let k = 0; k <= 4; k++) {
    const t = y0 + (y1 - y0) * k / 4, y = PANEL_H - PAD.b - k / 4 * (PANEL_H - PAD.t - PAD.b);
    svg.append(node("line", { x1: PAD.l, x2: PANEL_W - PAD.r, y1: y, y2: y, stroke: "#eee" }),
               node("text", { x: PAD.l - 4, y: y + 4, "text-anchor": "end", "font-size": 10, fill: "#666" },
                    fmt(logY ? 10 ** t : t)));
  }
  const tick = Math.max(1, Math.ceil(x1 / 8));
  for (let x = 0; x <= x1; x += tick) {
    svg.append(node("text", { x: X(x), y: PANEL_H - PAD.b + 14, "text-anchor": "middle", "font-size": 10, fill: "#666" }, x));
  }
  svg.append(node("text", { x: PANEL_W - PAD.r, y: PANEL_H - 3, "text-anchor": "end", "font-size": 10, fill: "#666" }, "step"));
  for (const s of series) {
    const drawable = s.points.filter(([, y]) => y !== null && (!logY || y > 0));
    const used = s.name === "used";
    svg.append(node("polyline", { points: drawable.map(([x, y]) => `${X(x)},${Y(y)}`).join(" "), fill: "none",
      stroke: s.color, "stroke-width": s.name === selected ? 3 : 1.5,
      "stroke-dasharray": used ? "4 3" : "none", "data-testid": `line-${s.name}` }));
    if (used) drawable.forEach(([x, y]) => svg.append(node("circle", { cx: X(x), cy: Y(y), r: 2.5, fill: "#000" })));
  }
  return svg;
}

function render({ model, el }) {
  const root = widgetRoot(el, model, "schedule-plotter");
  const inputs = {}, labels = {};
  const controls = h("div", { style: { display: "flex", flexWrap: "wrap", gap: "10px", margin: "4px 0" } },
    CONTROLS.map(([key, label, step]) => {
      const input = h("input", { "data-testid": key, type: "number", step, style: { width: "72px" } });
      onCommit(input, () => {
        const v = key === "steps" ? parseInt(input.value, 10) : parseFloat(input.value);
        if (Number.isFinite(v)) { model.set(key, v); model.save_changes(); }
      });
      inputs[key] = input;
      labels[key] = h("label", {}, [`${label} `, input]);
      return labels[key];
    }));
  const legend = h("div", { "data-testid": "legend", style: { margin: "4px 0" } });
  const plots = h("div", { "data-testid": "plots", style: { display: "flex", gap: "8px" } });
  const readout = h("div", { "data-testid": "readout", style: { fontFamily: "monospace", fontSize: "11px", color: "#444",
    maxWidth: `${2 * PANEL_W + 8}px`, overflowWrap: "anywhere" } });
  root.append(controls, legend, plots, readout);

  function draw() {
    const curves = model.get("curves") || [], used = model.get("used") || {}, selected = model.get("schedule");
    const all = used.sigma ? [...curves, used] : curves;
    const sigmaSeries = all.map((c) => ({ name: c.name, color: c.color, points: c.sigma.map((s, i) => [i, s]) }));
    const snrSeries = all.map((c) => ({ name: c.name, color: c.color, points: c.log_snr.map((s, i) => [i, s]) }));
    plots.replaceChildren(panel("σ (log scale)", sigmaSeries, { logY: true, selected }),
                          panel("log-SNR = −2 ln σ", snrSeries, { logY: false, selected }));
    legend.replaceChildren(...all.map((c) => {
      const chosen = c.name === selected;
      const item = h("button", { "data-testid": `pick-${c.name}`, title: c.name === "used" ? "σ's the run used" : "use this schedule",
        style: { marginRight: "6px", border: `2px solid ${c.color}`, background: chosen ? c.color : "#fff",
                 color: chosen ? "#fff" : "#222", borderRadius: "10px", padding: "1px 8px", cursor: "pointer" } }, c.name);
      if (c.name !== "used") item.addEventListener("click", () => { model.set("schedule", c.name); model.save_changes(); });
      return item;
    }));
    const chosen = curves.find((c) => c.name === selected);
    readout.textContent = chosen ? `${selected}: ${chosen.sigma.map(fmt).join(", ")}` : "";
    for (const [key] of CONTROLS) if (document.activeElement !== inputs[key]) inputs[key].value = model.get(key);
    const drawn = new Set(curves.map((c) => c.name));
    for (const [key, , , tunes] of CONTROLS) labels[key].style.display = !tunes || drawn.has(tunes) ? "" : "none";
    root.setAttribute("data-steps", model.get("steps"));
  }

  for (const key of ["curves", "used", "schedule", ...CONTROLS.map(([k]) => k)]) model.on(`change:${key}`, draw);
  draw();
  markReady(root);
}

export default { render };
