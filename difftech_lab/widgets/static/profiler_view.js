// ProfilerView: the op table sorts and filters here; the charts are SVG drawn from the synced report.

const SVG_NS = "http://www.w3.org/2000/svg";
const STAGE_COLORS = { encode_prompt: "#8e6bbf", encode_image: "#b279a2", model: "#4c78a8", guidance: "#f58518",
                       step: "#9ecae9", decode: "#54a24b" };
const STAGE_NAMES = { encode_prompt: "text encode", encode_image: "VAE encode", model: "model calls",
                      guidance: "guidance combine", step: "sampler (rest of step)", decode: "VAE decode" };
const COLUMNS = [
  ["name", "name", (v) => v],
  ["calls", "calls", (v) => String(v)],
  ["self_cpu_us", "self CPU ms", (v) => (v / 1e3).toFixed(3)],
  ["cpu_total_us", "CPU total ms", (v) => (v / 1e3).toFixed(3)],
  ["self_cpu_memory", "self CPU mem", bytes],
  ["cpu_memory", "CPU mem", bytes],
  ["self_device_us", "self device ms", (v) => (v / 1e3).toFixed(3)],
  ["device_total_us", "device total ms", (v) => (v / 1e3).toFixed(3)],
];

function bytes(v) {
  const a = Math.abs(v);
  if (a >= 2 ** 30) return `${(v / 2 ** 30).toFixed(2)} GB`;
  if (a >= 2 ** 20) return `${(v / 2 ** 20).toFixed(2)} MB`;
  if (a >= 2 ** 10) return `${(v / 2 ** 10).toFixed(1)} KB`;
  return `${v} B`;
}

function svg(tag, attrs = {}, text) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  if (text !== undefined) el.textContent = text;
  return el;
}

// Filtered, sorted rows, cut to the limit (what the table shows).
function visibleRows(model) {
  const needle = (model.get("filter") || "").toLowerCase(), key = model.get("sort_by");
  const sign = model.get("descending") ? -1 : 1;
  const rows = model.get("ops").filter((r) => r.name.toLowerCase().includes(needle));
  rows.sort((a, b) => sign * (a[key] < b[key] ? -1 : a[key] > b[key] ? 1 : 0));
  return [rows.slice(0, model.get("row_limit")), rows.length];
}

function timelineChart(rows) {
  const W = 560, H = 180, left = 44, bottom = 18, top = 8;
  const chart = svg("svg", { width: W, height: H, "data-testid": "timeline" });
  const totals = rows.map((r) => Object.values(r.stages).reduce((a, b) => a + b, 0));
  const max = Math.max(1e-9, ...totals);
  const slot = (W - left) / Math.max(1, rows.length), bar = Math.max(2, slot * 0.8);
  chart.append(svg("line", { x1: left, y1: top, x2: left, y2: H - bottom, stroke: "#999" }));
  chart.append(svg("text", { x: left - 4, y: top + 8, "text-anchor": "end", "font-size": 10 }, `${max.toFixed(1)}`));
  chart.append(svg("text", { x: left - 4, y: H - bottom, "text-anchor": "end", "font-size": 10 }, "0 ms"));
  rows.forEach((r, k) => {
    let y = H - bottom;
    const x = left + k * slot + (slot - bar) / 2;
    const g = svg("g", { "data-testid": "timeline-bar", "data-label": r.label });
    for (const stage of Object.keys(STAGE_COLORS)) {
      const ms = r.stages[stage] || 0;
      if (!ms) continue;
      const hgt = (ms / max) * (H - bottom - top);
      y -= hgt;
      const rect = svg("rect", { x, y, width: bar, height: Math.max(hgt, 0.5), fill: STAGE_COLORS[stage] });
      rect.append(svg("title", {}, `${r.label} · ${STAGE_NAMES[stage]}: ${ms.toFixed(3)} ms`));
      g.append(rect);
    }
    chart.append(g);
    if (rows.length <= 24 || k % Math.ceil(rows.length / 24) === 0) {
      const label = r.step === null ? r.label : String(r.step);
      chart.append(svg("text", { x: x + bar / 2, y: H - bottom + 12, "text-anchor": "middle", "font-size": 9 }, label));
    }
  });
  return chart;
}

function stageLegend() {
  return h("div", { "data-testid": "legend", style: { display: "flex", flexWrap: "wrap", gap: "4px 12px",
    fontSize: "11px", maxWidth: "560px" } }, Object.entries(STAGE_COLORS).map(([stage, color]) =>
    h("span", {}, [h("span", { style: { display: "inline-block", width: "10px", height: "10px", background: color,
      marginRight: "4px", verticalAlign: "middle" } }), STAGE_NAMES[stage]])));
}

function memoryChart(samples) {
  const W = 560, H = 160, left = 60, bottom = 20, top = 8;
  const chart = svg("svg", { width: W, height: H, "data-testid": "memory" });
  if (!samples.length) {
    chart.append(svg("text", { x: left, y: H / 2, "font-size": 12, fill: "#888" }, "no memory samples"));
    return chart;
  }
  const t1 = Math.max(1e-9, samples[samples.length - 1].t_ms), m1 = Math.max(1, ...samples.map((s) => s.allocated));
  const sx = (t) => left + (t / t1) * (W - left - 8), sy = (m) => H - bottom - (m / m1) * (H - bottom - top);
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
  chart.append(svg("line", { x1: left, y1: top, x2: left, y2: H - bottom, stroke: "#999" }));
  chart.append(svg("text", { x: left - 4, y: top + 8, "text-anchor": "end", "font-size": 10 }, bytes(m1)));
  chart.append(svg("text", { x: left - 4, y: H - bottom, "text-anchor": "end", "font-size": 10 }, "0"));
  chart.append(svg("text", { x: W - 8, y: H - 4, "text-anchor": "end", "font-size": 10 }, `${t1.toFixed(1)} ms`));
  return chart;
}

function render({ model, el }) {
  const root = widgetRoot(el, model, "profiler-view");
  let pendingDownload = false;

  const filter = h("input", { "data-testid": "filter", type: "search", placeholder: "filter ops…",
    style: { width: "16em" } });
  filter.addEventListener("input", () => { model.set("filter", filter.value); model.save_changes(); });
  filter.addEventListener("keydown", (e) => e.stopPropagation());   // typing must not trigger notebook shortcuts
  const count = h("span", { "data-testid": "row-count", style: { color: "#555", marginLeft: "8px" } });
  const download = h("button", { "data-testid": "download", style: { marginLeft: "12px" } }, "⬇ trace for Perfetto");
  download.addEventListener("click", () => {
    pendingDownload = true;
    if (model.get("trace") && model.get("trace").byteLength) saveTrace();
    else { model.set("download_request", model.get("download_request") + 1); model.save_changes(); }
  });
  const table = h("table", { "data-testid": "op-table",
    style: { borderCollapse: "collapse", fontFamily: "monospace", fontSize: "12px", marginTop: "4px" } });
  const tableBox = h("div", { style: { maxHeight: "320px", overflowY: "auto", border: "1px solid #ddd" } }, [table]);
  const summary = h("div", { "data-testid": "summary", style: { color: "#333", margin: "4px 0" } });
  const timelineBox = h("div", {}), memoryBox = h("div", {});
  const heading = (text) => h("div", { style: { fontWeight: "bold", marginTop: "8px" } }, text);
  root.append(summary, h("div", {}, [filter, count, download]), tableBox,
    heading("per-step time by stage (ms)"), timelineBox, stageLegend(), heading("memory allocated over time"),
    memoryBox);

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
    const head = h("tr", {}, columns.map(([k, title]) => h("th", { "data-testid": `th-${k}`,
      style: { cursor: "pointer", textAlign: k === "name" ? "left" : "right", padding: "2px 8px",
               background: "#f0f0f0", position: "sticky", top: "0" },
      onclick: () => sortBy(k) }, title + (k === key ? arrow : ""))));
    const [rows, matched] = visibleRows(model);
    const body = rows.map((r) => h("tr", { "data-testid": "op-row", "data-name": r.name },
      columns.map(([k, , fmt]) => h("td", { style: { textAlign: k === "name" ? "left" : "right", padding: "1px 8px",
        whiteSpace: "nowrap", color: r.name.startsWith("difftech/") ? "#1a5fb4" : "#222" } }, fmt(r[k])))));
    table.replaceChildren(head, ...body);
    count.textContent = `${rows.length} of ${matched} matching (${ops.length} ops)`;
    if (document.activeElement !== filter) filter.value = model.get("filter");
  }
  function drawCharts() {
    timelineBox.replaceChildren(timelineChart(model.get("timeline")));
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
