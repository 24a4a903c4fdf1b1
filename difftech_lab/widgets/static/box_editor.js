// BoxEditor: boxes live here while dragging, in [0, 1] coordinates; they sync at drag end.

const MIN_SIZE = 0.01;    // a click without a drag draws nothing
const NUDGE = 1;          // arrow keys move the selected box by this many image pixels (Shift: ten times)
const SVG = "http://www.w3.org/2000/svg";

// A box's colour comes from its label, never from its place in the list, so it cannot contradict the label:
// a colour the label names (the first one, as a whole word), else a stable hash of the label into the
// chromatic colours.
const NAMED_COLORS = {
  red: "#e53935", green: "#43a047", blue: "#1e88e5", yellow: "#fdd835", cyan: "#00acc1", magenta: "#d81b60",
  purple: "#8e24aa", violet: "#8e24aa", orange: "#fb8c00", pink: "#f06292", brown: "#8d6e63", white: "#ffffff",
  black: "#000000", gray: "#9e9e9e", grey: "#9e9e9e",
};
const HASHED_COLORS = ["red", "green", "blue", "yellow", "cyan", "magenta", "orange", "purple"]
  .map((name) => NAMED_COLORS[name]);
const COLOR_WORD = new RegExp(`\\b(${Object.keys(NAMED_COLORS).join("|")})\\b`, "i");

// FNV-1a over the label's normalised text: the same label gets the same colour in every session.
function labelHash(label) {
  let hash = 0x811c9dc5;
  for (const ch of label.trim().toLowerCase().replace(/\s+/g, " ")) {
    hash ^= ch.codePointAt(0);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash;
}

function labelColor(label) {
  const named = COLOR_WORD.exec(label);
  return named ? NAMED_COLORS[named[1].toLowerCase()] : HASHED_COLORS[labelHash(label) % HASHED_COLORS.length];
}

// Black or white, whichever reads better on `hex` (for label outlines and handles).
function contrast(hex) {
  const [r, g, b] = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
  return 0.299 * r + 0.587 * g + 0.114 * b > 150 ? "#000" : "#fff";
}

function svg(tag, attrs = {}) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  return el;
}

const clamp01 = (v) => Math.min(1, Math.max(0, v));
const ordered = ([x0, y0, x1, y1]) => [Math.min(x0, x1), Math.min(y0, y1), Math.max(x0, x1), Math.max(y0, y1)];

// The box after dragging `corner` ("nw", "ne", "sw", "se") to (u, v).
function resized([x0, y0, x1, y1], corner, u, v) {
  if (corner.includes("w")) x0 = u; else x1 = u;
  if (corner.includes("n")) y0 = v; else y1 = v;
  return ordered([x0, y0, x1, y1]);
}

// The box translated by (du, dv), kept whole inside the image.
function moved([x0, y0, x1, y1], du, dv) {
  du = Math.min(1 - x1, Math.max(-x0, du));
  dv = Math.min(1 - y1, Math.max(-y0, dv));
  return [x0 + du, y0 + dv, x1 + du, y1 + dv];
}

function render({ model, el }) {
  const root = widgetRoot(el, model, "box-editor");
  let boxes = [];          // [[phrase, [x0, y0, x1, y1]], …]
  let selected = -1;
  let drag = null;

  const bg = h("img", { "data-testid": "image", draggable: "false",
    style: { position: "absolute", left: 0, top: 0, width: "100%", height: "100%", pointerEvents: "none" } });
  const overlay = svg("svg", { "data-testid": "overlay", viewBox: "0 0 1 1", preserveAspectRatio: "none" });
  Object.assign(overlay.style, { position: "absolute", left: 0, top: 0, width: "100%", height: "100%", cursor: "crosshair" });
  // Focusable, so Delete and the arrow keys reach it; capturePointer keeps clicks from focusing it on their own.
  const stage = h("div", { "data-testid": "stage", class: "dtl-stage", tabindex: "0",
    "aria-label": "boxes: Delete or Backspace removes the selected box, arrows move it, Escape deselects",
    style: { position: "relative" } }, [bg, overlay]);
  capturePointer(overlay);
  const list = h("div", { "data-testid": "list", style: { marginTop: "4px" } });
  const phraseInput = h("input", { "data-testid": "new-phrase", style: { width: "140px", marginLeft: "4px" } });
  onCommit(phraseInput, () => { model.set("new_phrase", phraseInput.value); model.save_changes(); });
  const toolbar = h("div", { class: "dtl-toolbar" }, [h("label", {}, ["new box label", phraseInput])]);
  root.append(toolbar, stage, list);

  const point = (e) => localPoint(overlay, e, 1, 1).map(clamp01);

  function sync() {
    model.set("boxes", boxes.map(([p, b]) => [p, b.slice()]));
    model.save_changes();
  }
  function remove(i) {
    boxes.splice(i, 1);
    selected = -1;
    redraw(); sync();
  }

  // Drawn in screen pixels (viewBox = the stage's CSS size) so labels and handles keep their shape.
  function drawBoxes() {
    overlay.replaceChildren();
    const [sw, sh] = stageSize();
    overlay.setAttribute("viewBox", `0 0 ${sw} ${sh}`);
    boxes.forEach(([phrase, [x0, y0, x1, y1]], i) => {
      const color = labelColor(phrase), ink = contrast(color);
      const rect = svg("rect", { x: x0 * sw, y: y0 * sh, width: (x1 - x0) * sw, height: (y1 - y0) * sh, fill: color,
        "fill-opacity": i === selected ? 0.25 : 0.12, stroke: color, "stroke-width": i === selected ? 3 : 2,
        "data-testid": `box-${i}`, "data-phrase": phrase, "data-selected": String(i === selected) });
      rect.style.cursor = "move";
      rect.addEventListener("pointerdown", (e) => start(e, { kind: "move", index: i }));
      const label = svg("text", { x: x0 * sw + 4, y: y0 * sh + 14, fill: color, "font-weight": "bold",
        "pointer-events": "none", stroke: ink, "stroke-width": 3, "paint-order": "stroke" });
      label.style.fontFamily = "var(--dtl-font)";
      label.style.fontSize = "var(--dtl-size-m)";
      label.textContent = phrase;
      overlay.append(rect, label);
      for (const corner of ["nw", "ne", "sw", "se"]) {
        const cx = (corner.includes("w") ? x0 : x1) * sw, cy = (corner.includes("n") ? y0 : y1) * sh;
        const handle = svg("rect", { x: cx - 4, y: cy - 4, width: 8, height: 8, fill: color, stroke: ink,
          "stroke-width": 1.5, "data-testid": `handle-${i}-${corner}` });
        handle.style.cursor = `${corner}-resize`;
        handle.addEventListener("pointerdown", (e) => start(e, { kind: "resize", index: i, corner }));
        overlay.append(handle);
      }
    });
  }

  function drawList() {
    list.replaceChildren(...boxes.map(([phrase], i) => {
      const swatch = h("span", { "data-testid": `swatch-${i}`, style: { display: "inline-block", width: "10px",
        height: "10px", marginRight: "6px", background: labelColor(phrase), border: "1px solid var(--dtl-border)" } });
      const input = h("input", { "data-testid": `phrase-${i}`, value: phrase, style: { width: "160px" } });
      // the swatch is recoloured in place: rebuilding the list would take the focus away from the input
      onCommit(input, () => { boxes[i][0] = input.value; swatch.style.background = labelColor(input.value);
                              drawBoxes(); sync(); });
      input.addEventListener("focus", () => { selected = i; drawBoxes(); });
      const del = h("button", { "data-testid": `delete-${i}`, title: "delete box", "aria-label": `delete ${phrase}`,
        style: { marginLeft: "4px" }, onclick: () => remove(i) }, "×");
      const coords = h("span", { class: "dtl-small dtl-muted dtl-mono", style: { marginLeft: "6px" } },
        boxes[i][1].map((c) => c.toFixed(2)).join(" "));
      return h("div", { style: { margin: "2px 0" } }, [swatch, input, del, coords]);
    }));
  }

  function redraw() { drawBoxes(); drawList(); }

  function start(e, action) {
    if (e.button !== 0) return;
    e.preventDefault(); e.stopPropagation();
    stage.focus({ preventScroll: true });
    overlay.setPointerCapture(e.pointerId);
    const [u, v] = point(e);
    if (action.kind === "draw") {
      boxes.push([model.get("new_phrase"), [u, v, u, v]]);
      action.index = boxes.length - 1;
    }
    selected = action.index;
    drag = { ...action, from: [u, v], orig: boxes[action.index][1].slice() };
    drawBoxes();
  }

  overlay.addEventListener("pointerdown", (e) => {
    if (drag || e.target !== overlay) return;
    start(e, { kind: "draw" });
  });
  overlay.addEventListener("pointermove", (e) => {
    if (!drag) return;
    e.preventDefault(); e.stopPropagation();
    const [u, v] = point(e);
    const box = boxes[drag.index];
    if (drag.kind === "move") box[1] = moved(drag.orig, u - drag.from[0], v - drag.from[1]);
    else if (drag.kind === "resize") box[1] = resized(drag.orig, drag.corner, u, v);
    else box[1] = ordered([drag.from[0], drag.from[1], u, v]);
    drawBoxes();
  });
  const end = (e) => {
    if (!drag) return;
    e.preventDefault(); e.stopPropagation();
    const [x0, y0, x1, y1] = boxes[drag.index][1];
    if (drag.kind === "draw" && (x1 - x0 < MIN_SIZE || y1 - y0 < MIN_SIZE)) { boxes.pop(); selected = -1; }
    drag = null;
    redraw();
    sync();
  };
  overlay.addEventListener("pointerup", end);
  overlay.addEventListener("pointercancel", end);

  const ARROWS = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };
  stage.addEventListener("keydown", (e) => {
    if (drag) return;
    if ((e.key === "Delete" || e.key === "Backspace") && selected >= 0) remove(selected);
    else if (e.key === "Escape" && selected >= 0) { selected = -1; drawBoxes(); }
    else if (ARROWS[e.key] && selected >= 0) {
      const [dx, dy] = ARROWS[e.key], step = NUDGE * (e.shiftKey ? 10 : 1);
      boxes[selected][1] = moved(boxes[selected][1], dx * step / model.get("width"), dy * step / model.get("height"));
      redraw(); sync();
    } else return;
    e.preventDefault(); e.stopPropagation();
  });

  function fromModel() {
    if (drag) return;       // the drag in progress syncs its own result at the end
    boxes = (model.get("boxes") || []).map(([p, b]) => [p, Array.from(b)]);
    if (selected >= boxes.length) selected = -1;
    redraw();
  }
  function stageSize() {
    const W = model.get("width"), H = model.get("height"), s = model.get("display_size") / Math.max(W, H);
    return [Math.round(W * s), Math.round(H * s)];
  }
  function layout() {
    const [sw, sh] = stageSize();
    stage.style.width = `${sw}px`;
    stage.style.height = `${sh}px`;
    drawBoxes();
  }

  model.on("change:boxes", fromModel);
  model.on("change:new_phrase", () => { phraseInput.value = model.get("new_phrase"); });
  for (const key of ["width", "height", "display_size"]) model.on(`change:${key}`, layout);
  phraseInput.value = model.get("new_phrase");
  bindImage(bg, model);
  layout(); fromModel();
  markReady(root);
}

export default { render };

