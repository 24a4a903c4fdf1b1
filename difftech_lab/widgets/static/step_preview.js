// StepPreview: live thumbnails while a run goes, then a scrubber that shows any step without asking the kernel.

function render({ model, el }) {
  const root = widgetRoot(el, model, "step-preview");
  let x0URLs = [], xtURLs = [], liveURLs = ["", ""];
  let shown = model.get("step");

  const thumb = (id, caption) => {
    const img = h("img", { "data-testid": id, draggable: "false",
      style: { imageRendering: "pixelated", border: "1px solid #999", display: "block", background: "#eee" } });
    const box = h("figure", { style: { margin: "0 8px 0 0" } },
      [img, h("figcaption", { style: { textAlign: "center", color: "#555" } }, caption)]);
    return { img, box };
  };
  const x0 = thumb("x0", "x̂0 (denoised)"), xt = thumb("xt", "x_t (noisy)");
  const scrubber = h("input", { "data-testid": "scrubber", type: "range", min: "0", max: "0", step: "1", value: "0",
    style: { width: "100%" } });
  capturePointer(scrubber);
  // capturePointer stops the default drag of a range input too: restore it by moving the value ourselves
  const scrubTo = (e) => {
    const r = scrubber.getBoundingClientRect(), n = Number(scrubber.max);
    const v = Math.round(Math.min(1, Math.max(0, (e.clientX - r.left) / r.width)) * n);
    if (v !== shown) { shown = v; scrubber.value = String(v); showFrame(); controls(); }
  };
  let scrubbing = false;
  scrubber.addEventListener("pointerdown", (e) => { scrubbing = true; scrubber.setPointerCapture(e.pointerId); scrubTo(e); });
  scrubber.addEventListener("pointermove", (e) => { if (scrubbing) scrubTo(e); });
  const release = () => { if (!scrubbing) return; scrubbing = false; syncStep(); };
  scrubber.addEventListener("pointerup", release);
  scrubber.addEventListener("pointercancel", release);
  scrubber.addEventListener("input", () => { shown = Number(scrubber.value); showFrame(); controls(); syncStep(); });
  scrubber.addEventListener("keydown", (e) => e.stopPropagation());   // arrows step the scrubber, not the cells

  const label = h("div", { "data-testid": "step-label", style: { fontFamily: "monospace", margin: "2px 0" } });
  const status = h("div", { "data-testid": "status", style: { color: "#555", minHeight: "1.2em" } });
  const button = (id, text, onclick) => h("button", { "data-testid": id, onclick, style: { marginRight: "6px" } }, text);
  const bump = (key) => { model.set(key, model.get(key) + 1); model.save_changes(); };
  const stop = button("stop", "■ stop", () => bump("stop_request"));
  const branch = button("branch", "", () => bump("branch_request"));
  const cfg = h("input", { "data-testid": "branch-cfg", type: "number", step: "0.5", style: { width: "4em" } });
  onCommit(cfg, () => { model.set("branch_cfg", parseFloat(cfg.value)); model.save_changes(); });
  const prompt = h("input", { "data-testid": "branch-prompt", type: "text", placeholder: "same prompt",
    style: { width: "14em" } });
  onCommit(prompt, () => { model.set("branch_prompt", prompt.value); model.save_changes(); });
  const xtToggle = h("input", { "data-testid": "show-xt", type: "checkbox" });
  xtToggle.addEventListener("change", () => { model.set("show_xt", xtToggle.checked); model.save_changes(); });

  root.append(
    h("div", { style: { display: "flex" } }, [x0.box, xt.box]),
    scrubber, label, status,
    h("div", { style: { display: "flex", alignItems: "center", gap: "4px", flexWrap: "wrap" } }, [
      stop, branch, h("label", {}, ["cfg ", cfg]), h("label", {}, [" prompt ", prompt]),
      h("label", {}, [xtToggle, "x_t"])]),
  );

  function syncStep() {
    if (model.get("step") === shown) return;
    model.set("step", shown);
    model.save_changes();
  }
  const revoke = (urls) => urls.forEach((u) => u && URL.revokeObjectURL(u));
  function loadFrames() {
    revoke(x0URLs); revoke(xtURLs);
    x0URLs = (model.get("x0_frames") || []).map(pngURL);
    xtURLs = (model.get("xt_frames") || []).map(pngURL);
    scrubber.max = String(Math.max(0, x0URLs.length - 1));
    showFrame();
  }
  function showFrame() {
    const running = model.get("running"), sigmas = model.get("sigmas") || [];
    const steps = model.get("steps");
    let src0, srct, text;
    if (running || !x0URLs.length) {
      src0 = liveURLs[0]; srct = liveURLs[1];
      const i = model.get("live_step");
      text = i >= 0 ? `step ${i + 1}/${steps}` : "no run yet";
    } else {
      shown = Math.min(shown, x0URLs.length - 1);
      src0 = x0URLs[shown]; srct = xtURLs[shown];
      text = `step ${shown + 1}/${x0URLs.length} · σ ${(sigmas[shown] ?? 0).toFixed(3)}`;
    }
    if (src0) x0.img.src = src0;
    if (srct) xt.img.src = srct;
    scrubber.value = String(shown);
    label.textContent = text;
    root.setAttribute("data-step", String(running ? model.get("live_step") : shown));
  }
  function showLive() {
    revoke(liveURLs);
    liveURLs = [pngURL(model.get("live_x0")), pngURL(model.get("live_xt"))];
    showFrame();
  }
  function controls() {
    const running = model.get("running"), k = model.get("branched_from");
    scrubber.disabled = running;
    stop.disabled = !running;
    branch.disabled = running || !x0URLs.length;
    branch.textContent = `branch from step ${shown + 1}`;
    cfg.value = String(model.get("branch_cfg"));
    if (document.activeElement !== prompt) prompt.value = model.get("branch_prompt");
    xtToggle.checked = model.get("show_xt");
    xt.box.style.display = model.get("show_xt") ? "block" : "none";
    status.textContent = running ? "running…" : k >= 0 ? `branched from step ${k + 1}` : "";
    root.setAttribute("data-running", running ? "1" : "0");
  }
  function layout() {
    const size = `${model.get("display_size")}px`;
    for (const img of [x0.img, xt.img]) { img.style.width = size; img.style.height = size; }
  }
  function fromModelStep() {
    if (scrubbing) return;
    shown = model.get("step");
    showFrame(); controls();
  }

  model.on("change:x0_frames", () => { loadFrames(); controls(); });
  model.on("change:live_x0", showLive);
  model.on("change:live_step", showFrame);
  model.on("change:step", fromModelStep);
  model.on("change:display_size", layout);
  for (const key of ["running", "branched_from", "branch_cfg", "branch_prompt", "show_xt"]) {
    model.on(`change:${key}`, () => { showFrame(); controls(); });
  }
  layout(); showLive(); loadFrames(); controls();
  markReady(root);
  return () => { revoke(x0URLs); revoke(xtURLs); revoke(liveURLs); };
}

export default { render };
