// LatentNavigator: the point moves here; it syncs to Python at most once per animation frame and at drag end.

const NUDGE = 0.02, NUDGE_BIG = 0.1, THUMB = 44, CAPTION = 130, CAPTION_H = 18;
const LETTERS = "ABCD";
const clamp01 = (v) => Math.min(1, Math.max(0, v));

function render({ model, el }) {
  const root = widgetRoot(el, model, "latent-navigator");
  let point = model.get("point").slice();
  let dragging = false, frame = 0, previewURL = "", previewVersion = 0;
  const thumbURLs = [];

  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  Object.assign(svg.style, { position: "absolute", left: 0, top: 0, width: "100%", height: "100%", pointerEvents: "none" });
  const marker = h("div", { "data-testid": "point", style: {
    position: "absolute", width: "14px", height: "14px", marginLeft: "-7px", marginTop: "-7px", borderRadius: "50%",
    background: "#e0245e", border: "2px solid white", boxShadow: "0 0 0 1px #333", pointerEvents: "none" } });
  const pad = h("div", { "data-testid": "pad", tabindex: "0", title: "drag, or use the arrow keys (shift: bigger steps)",
    style: { position: "relative", border: "1px solid var(--jp-border-color1, #999)", cursor: "crosshair",
             outline: "none", flex: "none",
             // the midlines; a background's colour goes in its last layer, or the whole declaration is dropped
             background: "linear-gradient(#0000 calc(50% - .5px), var(--jp-border-color2, #ddd) 0 calc(50% + .5px), #0000 0)," +
                         " linear-gradient(90deg, #0000 calc(50% - .5px), var(--jp-border-color2, #ddd) 0 calc(50% + .5px)," +
                         " #0000 0), var(--jp-layout-color1, #f7f7f7)" } },
    [svg]);
  capturePointer(pad);
  const anchorEls = model.get("anchor_positions").map((_, k) => {
    const img = h("img", { draggable: "false", style: { width: "100%", height: "100%", imageRendering: "pixelated",
      display: "block", background: "var(--jp-layout-color2, #ccc)" } });
    const tag = h("span", { style: { position: "absolute", left: "2px", top: "0", color: "white", fontWeight: "bold",
      textShadow: "0 0 2px black" } }, LETTERS[k]);
    // under the thumbnail, so the anchors can be told apart without matching letters against the legend
    const caption = h("div", { "data-testid": `anchor-label-${k}`, style: { position: "absolute", top: "100%",
      marginTop: "2px", maxWidth: `${CAPTION}px`, overflow: "hidden", textOverflow: "ellipsis", whiteSpace: "nowrap",
      fontSize: "var(--jp-ui-font-size0, 11px)", lineHeight: "14px", padding: "0 3px", borderRadius: "2px",
      color: "var(--jp-ui-font-color1, #222)", background: "var(--jp-layout-color1, #fff)",
      border: "1px solid var(--jp-border-color2, #ddd)" } });
    const box = h("div", { "data-testid": `anchor-${k}`, style: { position: "absolute", width: `${THUMB}px`,
      height: `${THUMB}px`, marginLeft: `${-THUMB / 2}px`, marginTop: `${-THUMB / 2}px`,
      border: "2px solid var(--jp-ui-font-color1, #333)", pointerEvents: "none" } }, [img, tag, caption]);
    pad.append(box);
    return { box, img, caption };
  });
  pad.append(marker);

  const preview = h("img", { "data-testid": "preview", draggable: "false", "data-version": "0",
    style: { imageRendering: "pixelated", border: "1px solid var(--jp-border-color1, #999)", display: "block",
             background: "var(--jp-layout-color2, #eee)" } });
  const norm = h("div", { "data-testid": "norm", style: { fontFamily: "monospace", marginTop: "4px" } });
  const weights = h("div", { "data-testid": "weights", style: { fontFamily: "monospace", color: "var(--jp-ui-font-color2, #555)" } });
  const status = h("div", { "data-testid": "status", style: { color: "var(--jp-ui-font-color2, #888)", height: "1.2em" } });
  const select = (id, key) => {
    const s = h("select", { "data-testid": id }, ["slerp", "linear"].map((v) => h("option", { value: v }, v)));
    s.addEventListener("change", () => { model.set(key, s.value); model.save_changes(); });
    return s;
  };
  const noiseBlend = select("noise-blend", "noise_blend"), embeddingBlend = select("embedding-blend", "embedding_blend");
  const legend = h("div", { "data-testid": "legend", style: { color: "var(--jp-ui-font-color2, #555)",
    marginTop: `${THUMB / 2 + 4 + CAPTION_H}px` } });
  const side = h("div", { style: { marginTop: `${THUMB / 2 + 4}px`, marginLeft: "8px" } }, [preview, norm, weights, status,
    h("label", {}, ["noise ", noiseBlend]), h("label", { style: { marginLeft: "8px" } }, ["prompt ", embeddingBlend])]);
  // the padding (and the legend's margin) leaves room for the thumbnails that overhang the pad's corners
  const padFrame = h("div", { style: { padding: `${THUMB / 2 + 4}px` } }, [pad, legend]);
  root.append(h("div", { style: { display: "flex", alignItems: "flex-start" } }, [padFrame, side]));

  function layout() {
    const size = model.get("display_size");
    for (const e of [pad, preview]) { e.style.width = `${size}px`; e.style.height = `${size}px`; }
    legend.style.maxWidth = `${size}px`;  // wraps under the pad rather than pushing the preview aside
    const pos = model.get("anchor_positions");
    const labels = model.get("anchor_labels");
    pos.forEach(([x, y], k) => {
      const { box, caption } = anchorEls[k];
      box.style.left = `${x * 100}%`;
      box.style.top = `${y * 100}%`;
      caption.textContent = labels[k] || "";
      caption.title = labels[k] || "";
      // a caption grows away from the pad's nearer side edge, so it stays within the frame's padding
      Object.assign(caption.style, x < 0.4 ? { left: "-2px", right: "", transform: "" }
        : x > 0.6 ? { left: "", right: "-2px", transform: "" } : { left: "50%", right: "", transform: "translateX(-50%)" });
    });
    svg.setAttribute("viewBox", "0 0 1 1");
    svg.setAttribute("preserveAspectRatio", "none");
    const c = pos.reduce(([a, b], [x, y]) => [a + x / pos.length, b + y / pos.length], [0, 0]);
    const ring = pos.slice().sort((p, q) => Math.atan2(p[1] - c[1], p[0] - c[0]) - Math.atan2(q[1] - c[1], q[0] - c[0]));
    svg.innerHTML = `<polygon points="${ring.map((p) => p.join(",")).join(" ")}" fill="rgba(80,120,200,0.08)"` +
      ` stroke="#7a9cd6" stroke-width="0.006" />`;
    legend.textContent = model.get("anchor_labels").map((l, k) => `${LETTERS[k]}: ${l}`).join(" · ");
  }
  function drawPoint() {
    marker.style.left = `${point[0] * 100}%`;
    marker.style.top = `${point[1] * 100}%`;
    root.setAttribute("data-point", point.map((v) => v.toFixed(4)).join(","));
  }
  function sync() {
    if (frame) { cancelAnimationFrame(frame); frame = 0; }
    model.set("point", point.slice());
    model.save_changes();
  }
  const requestSync = () => { if (!frame) frame = requestAnimationFrame(() => { frame = 0; sync(); }); };
  function moveTo(e) {
    const size = model.get("display_size");
    const [x, y] = localPoint(pad, e, size, size);
    point = [clamp01(x / size), clamp01(y / size)];
    drawPoint();
  }

  pad.addEventListener("pointerdown", (e) => {
    if (e.button !== 0) return;
    pad.focus();
    pad.setPointerCapture(e.pointerId);
    dragging = true;
    moveTo(e);
    requestSync();
  });
  pad.addEventListener("pointermove", (e) => {
    if (!dragging) return;
    e.preventDefault(); e.stopPropagation();
    moveTo(e);
    requestSync();
  });
  const end = (e) => {
    if (!dragging) return;
    e.preventDefault(); e.stopPropagation();
    dragging = false;
    moveTo(e);
    sync();
  };
  pad.addEventListener("pointerup", end);
  pad.addEventListener("pointercancel", end);
  pad.addEventListener("keydown", (e) => {
    const step = e.shiftKey ? NUDGE_BIG : NUDGE;
    const delta = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step] }[e.key];
    if (!delta) return;
    // JupyterLab moves between cells on arrow keys in command mode: keep them here
    e.preventDefault(); e.stopPropagation();
    point = [clamp01(point[0] + delta[0]), clamp01(point[1] + delta[1])];
    drawPoint();
    sync();
  });

  function fromModel() {
    if (dragging) return;
    point = model.get("point").slice();
    drawPoint();
  }
  function showPreview() {
    if (previewURL) URL.revokeObjectURL(previewURL);
    previewURL = pngURL(model.get("preview"));
    if (previewURL) preview.src = previewURL;
    preview.setAttribute("data-version", String(++previewVersion));
  }
  function showThumbnails() {
    (model.get("thumbnails") || []).forEach((dv, k) => {
      if (!anchorEls[k]) return;
      if (thumbURLs[k]) URL.revokeObjectURL(thumbURLs[k]);
      thumbURLs[k] = pngURL(dv);
      anchorEls[k].img.src = thumbURLs[k];
    });
  }
  function readouts() {
    const n = model.get("norm"), d = model.get("typical_norm");
    norm.textContent = d ? `‖z‖ ${n.toFixed(2)} · √d ${d.toFixed(2)} · ratio ${(n / d).toFixed(3)}` : "";
    norm.style.color = d && Math.abs(n / d - 1) > 0.05 ? "var(--jp-error-color1, #b00020)" : "var(--jp-ui-font-color1, #222)";
    weights.textContent = "w " + (model.get("weights") || []).map((w, k) => `${LETTERS[k]}=${w.toFixed(2)}`).join(" ");
    status.textContent = model.get("busy") ? "rendering…" : "";
    noiseBlend.value = model.get("noise_blend");
    embeddingBlend.value = model.get("embedding_blend");
  }

  model.on("change:point", fromModel);
  model.on("change:preview", showPreview);
  model.on("change:thumbnails", showThumbnails);
  model.on("change:display_size", layout);
  model.on("change:anchor_positions", layout);
  model.on("change:anchor_labels", layout);
  for (const key of ["norm", "typical_norm", "weights", "busy", "noise_blend", "embedding_blend"]) {
    model.on(`change:${key}`, readouts);
  }
  layout(); drawPoint(); showPreview(); showThumbnails(); readouts();
  markReady(root);
  return () => { if (frame) cancelAnimationFrame(frame); };
}

export default { render };
