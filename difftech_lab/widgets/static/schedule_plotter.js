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

// SVG text in the theme's muted colour (presentation attributes do not resolve var())
function muted(attrs, text) {
  const n = node("text", { "font-size": 10, ...attrs }, text);
  n.style.fill = "var(--dtl-fg-muted, #666)";
  return n;
}

const fmt = (v) => (Math.abs(v) >= 100 || (Math.abs(v) < 0.01 && v !== 0) ? v.toExponential(1) : +v.toPrecision(3));
// What a control shows: 4 significant digits, so σ_min reads 0.02917, not 0.029167… cut off by the box
const compact = (v) => String(+Number(v).toPrecision(4));

// One panel: series of [x, y] points (y null = not drawable, e.g. σ = 0 on a log axis). The "used" series is
// drawn twice: a faint connector under the schedules, so its order (restart jumps) shows without hiding the
// line it follows, and hollow markers over them, through which that line stays visible.
function panel(title, series, { logY, selected, xLabel, fraction, xMax }) {
  const svg = node("svg", { width: PANEL_W, height: PANEL_H, viewBox: `0 0 ${PANEL_W} ${PANEL_H}`, class: "dtl-stage" });
  svg.style.background = "var(--dtl-bg, #fff)";
  const tf = logY ? Math.log10 : (v) => v;
  const drawable = (s) => s.points.filter(([, y]) => y !== null && (!logY || y > 0));
  const pts = series.flatMap(drawable);
  if (!pts.length) return svg;
  const xs = pts.map(([x]) => x), ys = pts.map(([, y]) => tf(y));
  // the axis spans the whole run even where its last point (σ = 0, log-SNR = ∞) cannot be drawn
  let [x0, x1, y0, y1] = [0, Math.max(xMax, ...xs) || 1, Math.min(...ys), Math.max(...ys)];
  if (y1 - y0 < 1e-9) { y0 -= 1; y1 += 1; }
  const X = (x) => PAD.l + (x - x0) / (x1 - x0) * (PANEL_W - PAD.l - PAD.r);
  const Y = (y) => PANEL_H - PAD.b - (tf(y) - y0) / (y1 - y0) * (PANEL_H - PAD.t - PAD.b);
  const heading = node("text", { x: PAD.l, y: 14, "font-size": 12, "font-weight": "bold", "data-testid": "panel-title" }, title);
  heading.style.fill = "var(--dtl-fg, #333)";
  svg.append(heading);
  for (let k = 0; k <= 4; k++) {
    const t = y0 + (y1 - y0) * k / 4, y = PANEL_H - PAD.b - k / 4 * (PANEL_H - PAD.t - PAD.b);
    const grid = node("line", { x1: PAD.l, x2: PANEL_W - PAD.r, y1: y, y2: y });
    grid.style.stroke = "var(--dtl-border-soft, #eee)";
    svg.append(grid, muted({ x: PAD.l - 4, y: y + 4, "text-anchor": "end", "data-testid": "y-tick" }, fmt(logY ? 10 ** t : t)));
  }
  const ticks = fraction ? [0, 0.25, 0.5, 0.75, 1] : [];
  if (!fraction) for (let x = 0, tick = Math.max(1, Math.ceil(x1 / 8)); x <= x1; x += tick) ticks.push(x);
  for (const x of ticks) {
    svg.append(muted({ x: X(x), y: PANEL_H - PAD.b + 14, "text-anchor": "middle", "data-testid": "x-tick" }, x));
  }
  svg.append(muted({ x: PANEL_W - PAD.r, y: PANEL_H - 3, "text-anchor": "end", "data-testid": "x-label" }, xLabel));
  const line = (s, attrs) => node("polyline", { points: drawable(s).map(([x, y]) => `${X(x)},${Y(y)}`).join(" "),
    fill: "none", stroke: s.color, "data-testid": `line-${s.name}`, ...attrs });
  const used = series.find((s) => s.name === "used");
  if (used) svg.append(line(used, { "stroke-width": 1, "stroke-opacity": 0.35, "stroke-dasharray": "2 3" }));
  for (const s of series) if (s !== used) svg.append(line(s, { "stroke-width": s.name === selected ? 3 : 1.5 }));
  if (used) {
    const marks = node("g", { "data-testid": "marks-used" });
    for (const [x, y] of drawable(used)) {
      const m = node("circle", { cx: X(x), cy: Y(y), r: 3, fill: "none", "stroke-width": 1.2 });
      m.style.stroke = "var(--dtl-fg, #000)";
      marks.append(m);
    }
    svg.append(marks);
  }
  return svg;
}

function render({ model, el }) {
  const root = widgetRoot(el, model, "schedule-plotter");
  const inputs = {}, labels = {};
  const shownValue = (key) => (key === "steps" ? String(model.get(key)) : compact(model.get(key)));
  const controls = h("div", { class: "dtl-toolbar" },
    CONTROLS.map(([key, label, step]) => {
      const input = h("input", { "data-testid": key, type: "number", step, class: "dtl-mono",
        style: { width: key === "steps" ? "4.5em" : "6.5em" } });
      onCommit(input, () => {
        const v = key === "steps" ? parseInt(input.value, 10) : parseFloat(input.value);
        if (Number.isFinite(v)) { model.set(key, v); model.save_changes(); }
      });
      // Escape abandons an edit: the box shows the current value again
      input.addEventListener("keydown", (e) => { if (e.key === "Escape") { input.value = shownValue(key); input.blur(); } });
      inputs[key] = input;
      labels[key] = h("label", {}, [`${label} `, input]);
      return labels[key];
    }));
  const legend = h("div", { "data-testid": "legend", class: "dtl-toolbar", role: "radiogroup",
    "aria-label": "schedule" });
  const plots = h("div", { "data-testid": "plots", style: { display: "flex", gap: "8px" } });
  const readout = h("div", { "data-testid": "readout", class: "dtl-mono dtl-small dtl-muted",
    style: { maxWidth: `${2 * PANEL_W + 8}px`, overflowWrap: "anywhere" } });
  root.append(controls, legend, plots, readout);

  function chip(c, selected) {
    const chosen = c.name === selected;
    const item = h("button", { "data-testid": `pick-${c.name}`, role: "radio", "aria-checked": String(chosen),
      title: `use ${c.name}: sets .schedule, and .sigmas follows`,
      style: { border: `2px solid ${c.color}`, borderRadius: "10px", padding: "1px 8px",
               background: chosen ? c.color : "var(--dtl-bg, #fff)", color: chosen ? "#fff" : "var(--dtl-fg, #222)" } },
      `${chosen ? "●" : "○"} ${c.name}`);
    item.addEventListener("click", () => { model.set("schedule", c.name); model.save_changes(); });
    return item;
  }

  function draw() {
    const curves = model.get("curves") || [], used = model.get("used") || {}, selected = model.get("schedule");
    const flow = model.get("flow"), steps = model.get("steps");
    const all = used.sigma ? [...curves, used] : curves;
    // A run of another step count (or with churn/restart evaluations) has another number of points: then every
    // series is spread over the run, step ÷ steps, so the same moment of the run lines up
    const fraction = all.some((c) => c.sigma.length !== steps + 1);
    const x = (i, n) => (fraction ? i / Math.max(1, n - 1) : i);
    const series = (key) => all.map((c) => ({ name: c.name, color: c.color,
      points: c[key].map((v, i) => [x(i, c[key].length), v]) }));
    const xLabel = fraction ? "run fraction (step ÷ steps)" : "step";
    plots.replaceChildren(
      panel(flow ? "σ = flow time t (0 = clean, 1 = noise)" : "σ (log scale)", series("sigma"),
            { logY: !flow, selected, xLabel, fraction, xMax: fraction ? 1 : steps }),
      panel(flow ? "log-SNR = 2 ln((1−σ)/σ)" : "log-SNR = −2 ln σ", series("log_snr"),
            { logY: false, selected, xLabel, fraction, xMax: fraction ? 1 : steps }));
    const hint = h("span", { "data-testid": "legend-hint", class: "dtl-small dtl-muted" }, "schedule (click to use):");
    const usedItem = used.sigma ? [h("span", { "data-testid": "legend-used", class: "dtl-small",
      title: "the σ's the run evaluated, in order (markers); shown, not selectable",
      style: { border: "1px dashed var(--dtl-border, #999)", borderRadius: "10px", padding: "1px 8px",
               cursor: "default", color: "var(--dtl-fg-muted, #666)" } }, "◌ used by the run")] : [];
    legend.replaceChildren(hint, ...curves.map((c) => chip(c, selected)), ...usedItem);
    const chosen = curves.find((c) => c.name === selected);
    readout.textContent = chosen ? `${selected}: ${chosen.sigma.map(fmt).join(", ")}` : "";
    for (const [key, label] of CONTROLS) {
      if (document.activeElement !== inputs[key]) inputs[key].value = shownValue(key);
      inputs[key].title = `${label}: ${model.get(key)}`;   // the exact value, on hover
    }
    const drawn = new Set(curves.map((c) => c.name));
    for (const [key, , , tunes] of CONTROLS) labels[key].style.display = !tunes || drawn.has(tunes) ? "" : "none";
    root.setAttribute("data-steps", steps);
    root.setAttribute("data-axis", fraction ? "fraction" : "step");
  }

  for (const key of ["curves", "used", "schedule", "flow", ...CONTROLS.map(([k]) => k)]) model.on(`change:${key}`, draw);
  draw();
  markReady(root);
}

export default { render };
