// ProfilerView: the op table sorts and filters here; the charts are SVG drawn from the synced report.

const SVG_NS = "http://www.w3.org/2000/svg";
const STAGE_COLORS = { encode_prompt: "#8e6bbf", encode_image: "#b279a2", model: "#4c78a8", guidance: "#f58518",
                       step: "#9ecae9", decode: "#54a24b" };
const STAGE_NAMES = { encode_prompt: "text encode", encode_image: "VAE encode", model: "model calls",
                      guidance: "guidance combine", step: "sampler (rest of step)", decode: "VAE decode" };
const COLUMNS = [
  ["name", "name", (v) => v, "the op, or a difftech/<stage> range the Session marks"],
  ["calls", "calls", (v) => String(v), "how many times it ran"],
  ["self_cpu_us", "self CPU ms", (v) => (v / 1e3).toFixed(3), "CPU time in the op itself, summed over its calls"],
  ["cpu_total_us", "CPU total ms", (v) => (v / 1e3).toFixed(3), "CPU time with the ops it called, summed over calls"],
  ["self_cpu_memory", "self CPU mem", bytes, "bytes the op allocated minus bytes it freed, summed over its " +
   "calls; negative: it freed more than it allocated (e.g. it released tensors made elsewhere)"],
  ["cpu_memory", "CPU mem", bytes, "as self CPU mem, with the ops it called included"],
  ["self_device_us", "self device ms", (v) => (v / 1e3).toFixed(3), "device (GPU) time in the op's own kernels"],
  ["device_total_us", "device total ms", (v) => (v / 1e3).toFixed(3), "device time with the ops it called"],
];
const PAGE = 40;           // rows the "more" button adds
const MIN_SLICE_PX = 2;    // a stage slice is never drawn thinner than this, so short stages stay visible
const INK = "var(--jp-ui-font-color1, #222)", MUTED = "var(--jp-ui-font-color2, #666)";
const GRID = "var(--jp-border-color2, #e0e0e0)", AXIS = "var(--jp-border-color1, #999)";

// Round tick values from 0 to at least `max`: steps of 1, 2 or 5 times a power of ten, about `count` of them.
function niceTicks(max, count = 4) {
  const raw = Math.max(max, 1e-12) / count, mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((v) => v >= raw * (1 - 1e-9));
  const n = Math.max(1, Math.ceil(max / step - 1e-9));
  return Array.from({ length: n + 1 }, (_, k) => Number((k * step).toPrecision(12)));
}

// Byte ticks in one unit (KB, MB or GB by the maximum), with round values in that unit.
function byteTicks(max) {
  const unit = [[2 ** 30, "GB"], [2 ** 20, "MB"], [2 ** 10, "KB"], [1, "B"]].find(([u]) => max >= u) || [1, "B"];
  return niceTicks(max / unit[0]).map((v) => [v * unit[0], v === 0 ? "0" : `${+v.toFixed(2)} ${unit[1]}`]);
}

function bytes(v) {
  const a = Math.abs(v);
  if (a >= 2 ** 30) return `${(v / 2 ** 30).toFixed(2)} GB`;
  if (a >= 2 ** 20) return `${(v / 2 ** 20).toFixed(2)} MB`;
  if (a >= 2 ** 10) return `${(v / 2 ** 10).toFixed(1)} KB`;
  return `${v} B`;
}

// SVG presentation attributes do not resolve var(), so colours taken from the theme go in `style`.
function svg(tag, attrs = {}, text, style = {}) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  Object.assign(el.style, style);
  if (text !== undefined) el.textContent = text;
  return el;
}

// A y axis with a labelled gridline per tick; `ticks` are [value, label] pairs, `y` maps a value to pixels.
function yAxis(chart, ticks, y, { left, right, testid }) {
  for (const [value, label] of ticks) {
    const at = y(value);
    chart.append(svg("line", { x1: left, y1: at, x2: right, y2: at }, undefined, { stroke: value ? GRID : AXIS }));
    chart.append(svg("text", { x: left - 4, y: at + 3, "text-anchor": "end", "font-size": 10,
      "data-testid": testid, "data-value": value }, label, { fill: MUTED }));
  }
  chart.append(svg("line", { x1: left, y1: y(ticks[ticks.length - 1][0]), x2: left, y2: y(0) }, undefined,
    { stroke: AXIS }));
}

// Filtered, sorted rows, cut to the limit (what the table shows).
function visibleRows(model) {
  const needle = (model.get("filter") || "").toLowerCase(), key = model.get("sort_by");
  const sign = model.get("descending") ? -1 : 1;
  const rows = model.get("ops").filter((r) => r.name.toLowerCase().includes(needle));
  rows.sort((a, b) => sign * (a[key] < b[key] ? -1 : a[key] > b[key] ? 1 : 0));
  return [rows.slice(0, model.get("row_limit")), rows.length];
}

// Stacked bars of each phase's exclusive time per stage. Short stages (guidance, the sampler's own work) can
// be a thousandth of the model calls: every slice gets at least MIN_SLICE_PX, and its title gives the exact time.
function timelineChart(rows) {
  const W = 600, H = 200, left = 48, right = W - 8, bottom = 18, top = 10;
  const chart = svg("svg", { width: W, height: H, "data-testid": "timeline" });
  const totals = rows.map((r) => Object.values(r.stages).reduce((a, b) => a + b, 0));
  const ticks = niceTicks(Math.max(1e-9, ...totals));
  const ymax = ticks[ticks.length - 1], plot = H - bottom - top;
  const y = (ms) => H - bottom - (ms / ymax) * plot;
  yAxis(chart, ticks.map((v) => [v, `${v} ms`]), y, { left, right, testid: "timeline-tick" });
  const slot = (right - left) / Math.max(1, rows.length), bar = Math.max(2, slot * 0.8);
  rows.forEach((r, k) => {
    let base = H - bottom;
    const x = left + k * slot + (slot - bar) / 2;
    const g = svg("g", { "data-testid": "timeline-bar", "data-label": r.label });
    for (const stage of Object.keys(STAGE_COLORS)) {
      const ms = r.stages[stage] || 0;
      if (!ms) continue;
      const hgt = Math.max((ms / ymax) * plot, MIN_SLICE_PX);
      base -= hgt;
      const rect = svg("rect", { x, y: base, width: bar, height: hgt, fill: STAGE_COLORS[stage], "data-stage": stage,
        "data-ms": ms });
      rect.append(svg("title", {}, `${r.label} · ${STAGE_NAMES[stage]}: ${ms.toFixed(3)} ms`));
      g.append(rect);
    }
    chart.append(g);
    if (rows.length <= 24 || k % Math.ceil(rows.length / 24) === 0) {
      const label = r.step === null ? r.label : String(r.step);
      chart.append(svg("text", { x: x + bar / 2, y: H - bottom + 12, "text-anchor": "middle", "font-size": 9 }, label,
        { fill: MUTED }));
    }
  });
  return chart;
}

// One entry per stage present, with its total over the run and its share, so a stage too short to see in the
// bars is still read off exactly.
function stageLegend(rows) {
  const totals = {};
  for (const r of rows) for (const [stage, ms] of Object.entries(r.stages)) totals[stage] = (totals[stage] || 0) + ms;
  const all = Object.values(totals).reduce((a, b) => a + b, 0) || 1;
  return h("div", { "data-testid": "legend", style: { display: "flex", flexWrap: "wrap", gap: "2px 14px",
    fontSize: "var(--jp-ui-font-size0, 11px)", maxWidth: "600px", margin: "2px 0 0 48px" } },
  Object.keys(STAGE_COLORS).filter((stage) => stage in totals).map((stage) =>
    h("span", { "data-testid": "legend-item", "data-stage": stage }, [
      h("span", { style: { display: "inline-block", width: "10px", height: "10px", background: STAGE_COLORS[stage],
        marginRight: "4px", verticalAlign: "middle" } }),
      `${STAGE_NAMES[stage]} ${totals[stage].toFixed(totals[stage] < 10 ? 2 : 1)} ms ` +
      `(${share(totals[stage] / all)})`])));
}

function share(fraction) {
  const pct = 100 * fraction;
  return pct >= 1 ? `${pct.toFixed(1)}%` : pct >= 0.01 ? `${pct.toFixed(2)}%` : "<0.01%";
}

// The allocator's live bytes after each of its events: what is held at that moment, so it peaks far below
// the table's memory columns, which add up every allocation an op made over all its calls.
function memoryChart(samples) {
  const W = 600, H = 180, left = 60, right = W - 8, bottom = 20, top = 20;  // room above for the peak's label
  const chart = svg("svg", { width: W, height: H, "data-testid": "memory" });
  if (!samples.length) {
    chart.append(svg("text", { x: left, y: H / 2, "font-size": 12 }, "no memory samples", { fill: MUTED }));
    return chart;
  }
  const t1 = Math.max(1e-9, samples[samples.length - 1].t_ms);
  const peak = samples.reduce((p, s) => (s.allocated > p.allocated ? s : p), samples[0]);
  const ticks = byteTicks(Math.max(1, peak.allocated));
  const m1 = ticks[ticks.length - 1][0];
  const sx = (t) => left + (t / t1) * (right - left), sy = (m) => H - bottom - (m / m1) * (H - bottom - top);
  yAxis(chart, ticks, sy, { left, right, testid: "memory-tick" });
  for (const t of niceTicks(t1, 5).filter((t) => t <= t1)) {
    chart.append(svg("text", { x: sx(t), y: H - 6, "text-anchor": "middle", "font-size": 10 }, `${t} ms`,
      { fill: MUTED }));
  }
  const byDevice = {};
  for (const s of samples) (byDevice[s.device] ||= []).push(s);
  const colors = ["#4c78a8", "#e45756", "#54a24b"];
  Object.entries(byDevice).forEach(([device, list], k) => {
    // a step line: the allocation holds until the next allocator event
    let d = `M${sx(list[0].t_ms)},${sy(list[0].allocated)}`;
    for (let i = 1; i < list.length; i++) d += `H${sx(list[i].t_ms)}V${sy(list[i].allocated)}`;
    chart.append(svg("path", { d, fill: "none", stroke: colors[k % colors.length], "stroke-width": 1.5,
      "data-device": device }));
  });
  const px = sx(peak.t_ms), py = sy(peak.allocated);
  chart.append(svg("circle", { cx: px, cy: py, r: 3, fill: "#e45756" }));
  chart.append(svg("text", { x: px, y: py - 7, "text-anchor": px > right - 120 ? "end" : px < left + 120 ? "start" : "middle",
    "font-size": 10, "data-testid": "memory-peak" },
    `peak ${bytes(peak.allocated)} at ${peak.t_ms.toFixed(1)} ms (${peak.device})`, { fill: INK }));
  return chart;
}

function render({ model, el }) {
  const root = widgetRoot(el, model, "profiler-view");
  let pendingDownload = false;

  const filter = h("input", { "data-testid": "filter", type: "search", placeholder: "filter ops…",
    style: { width: "16em" } });
  filter.addEventListener("input", () => { model.set("filter", filter.value); model.save_changes(); });
  filter.addEventListener("keydown", (e) => e.stopPropagation());   // typing must not trigger notebook shortcuts
  const count = h("span", { "data-testid": "row-count", style: { color: MUTED, marginLeft: "8px" } });
  const download = h("button", { "data-testid": "download", style: { marginLeft: "12px" } }, "⬇ trace for Perfetto");
  download.addEventListener("click", () => {
    pendingDownload = true;
    if (model.get("trace") && model.get("trace").byteLength) saveTrace();
    else { model.set("download_request", model.get("download_request") + 1); model.save_changes(); }
  });
  const table = h("table", { "data-testid": "op-table",
    style: { borderCollapse: "collapse", fontFamily: "var(--jp-code-font-family, monospace)", fontSize: "12px",
             marginTop: "4px" } });
  const tableBox = h("div", { style: { maxHeight: "320px", overflowY: "auto",
    border: "1px solid var(--jp-border-color2, #ddd)" } }, [table]);
  // the row limit is a synced trait: Python sees how much of the table is on screen
  const setLimit = (n) => { model.set("row_limit", n); model.save_changes(); };
  const more = h("button", { "data-testid": "show-more" });
  const all = h("button", { "data-testid": "show-all", style: { marginLeft: "6px" } });
  const fewer = h("button", { "data-testid": "show-fewer", style: { marginLeft: "6px" } }, `top ${PAGE} only`);
  more.addEventListener("click", () => setLimit(model.get("row_limit") + PAGE));
  all.addEventListener("click", () => setLimit(model.get("ops").length));
  fewer.addEventListener("click", () => setLimit(PAGE));
  const pager = h("div", { "data-testid": "pager", style: { margin: "2px 0" } }, [more, all, fewer]);
  const note = (testid, text) => h("div", { "data-testid": testid, style: { color: MUTED, maxWidth: "600px",
    fontSize: "var(--jp-ui-font-size0, 11px)", margin: "2px 0" } }, text);
  const tableNote = note("table-note", "Times and memory are totals over all of an op's calls. Memory columns count " +
    "bytes allocated minus bytes freed inside the op: a negative value means the op freed more than it allocated " +
    "(it released tensors made by other ops). Hover a column's header for what it measures.");
  const summary = h("div", { "data-testid": "summary", style: { margin: "4px 0" } });
  const timelineBox = h("div", {}), legendBox = h("div", {}), memoryBox = h("div", {});
  const heading = (text) => h("div", { style: { fontWeight: "bold", marginTop: "8px" } }, text);
  root.append(summary, h("div", {}, [filter, count, download]), tableBox, pager, tableNote,
    heading("time per phase, by stage (ms)"), timelineBox, legendBox,
    note("timeline-note", `Each bar is one phase's exclusive time per stage; a stage is drawn at least ` +
      `${MIN_SLICE_PX} px tall so short ones stay visible (the legend and each slice's tooltip give exact times).`),
    heading("live memory over time"), memoryBox,
    note("memory-note", "Bytes held by the allocator just after each allocation or free: the memory in use at " +
      "that moment, whose peak is marked. The table's memory columns are different figures: each op's " +
      "allocations minus frees, added up over all its calls, so memory reused step after step is counted " +
      "again every time."));

  function saveTrace() {
    pendingDownload = false;
    const url = URL.createObjectURL(new Blob([model.get("trace")], { type: "application/json" }));
    const a = h("a", { href: url, download: model.get("trace_name") });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  }
  function sortBy(key) {
    if (model.get("sort_by") === key) model.set("descending", !model.get("descending"));
    else { model.set("sort_by", key); model.set("descending", key !== "name"); }
    model.save_changes();
  }
  function drawTable() {
    const ops = model.get("ops");
    const device = ops.some((r) => r.self_device_us > 0 || r.device_total_us > 0);
    const columns = COLUMNS.filter(([key]) => device || !key.includes("device"));
    const key = model.get("sort_by"), arrow = model.get("descending") ? " ▼" : " ▲";
    const head = h("tr", {}, columns.map(([k, title, , help]) => h("th", { "data-testid": `th-${k}`,
      title: `${help} (click to sort)`,
      style: { cursor: "pointer", textAlign: k === "name" ? "left" : "right", padding: "2px 8px",
               background: "var(--jp-layout-color2, #f0f0f0)", position: "sticky", top: "0" },
      onclick: () => sortBy(k) }, title + (k === key ? arrow : ""))));
    const [rows, matched] = visibleRows(model);
    const body = rows.map((r) => h("tr", { "data-testid": "op-row", "data-name": r.name },
      columns.map(([k, , fmt]) => h("td", { style: { textAlign: k === "name" ? "left" : "right", padding: "1px 8px",
        whiteSpace: "nowrap", color: r.name.startsWith("difftech/") ? "var(--jp-brand-color1, #1a5fb4)" : INK },
        ...(k.includes("memory") && r[k] < 0 ? { title: `freed ${bytes(-r[k])} more than it allocated` } : {}) },
        fmt(r[k])))));
    table.replaceChildren(head, ...body);
    count.textContent = `${rows.length} of ${matched} matching (${ops.length} ops)`;
    const hidden = matched - rows.length;
    more.textContent = `${Math.min(PAGE, hidden)} more`;
    all.textContent = `all ${matched}`;
    more.style.display = all.style.display = hidden > 0 ? "" : "none";
    fewer.style.display = hidden <= 0 && rows.length > PAGE ? "" : "none";
    if (document.activeElement !== filter) filter.value = model.get("filter");
  }
  function drawCharts() {
    timelineBox.replaceChildren(timelineChart(model.get("timeline")));
    legendBox.replaceChildren(stageLegend(model.get("timeline")));
    memoryBox.replaceChildren(memoryChart(model.get("memory")));
    const total = model.get("timeline").reduce((a, r) => a + Object.values(r.stages).reduce((x, y) => x + y, 0), 0);
    summary.textContent = `${model.get("steps")} denoising steps · ${total.toFixed(1)} ms in difftech ranges`;
  }

  for (const key of ["ops", "sort_by", "descending", "filter", "row_limit"]) model.on(`change:${key}`, drawTable);
  for (const key of ["timeline", "memory", "steps"]) model.on(`change:${key}`, drawCharts);
  model.on("change:trace", () => { if (pendingDownload && model.get("trace") && model.get("trace").byteLength) saveTrace(); });
  drawTable(); drawCharts();
  markReady(root);
}

export default { render };
