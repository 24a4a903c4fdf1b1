// StepPreview: live thumbnails while a run goes, then a scrubber that shows any step without asking the kernel.

function render({ model, el }) {
  const root = widgetRoot(el, model, "step-preview");
  let x0URLs = [], xtURLs = [], liveURLs = ["", ""], originalURL = "";
  let shown = model.get("step");

  const thumb = (id, caption) => {
    const img = h("img", { "data-testid": id, draggable: "false", class: "dtl-stage",
      style: { imageRendering: "pixelated", display: "block" } });
    const text = h("figcaption", { class: "dtl-small dtl-muted", style: { textAlign: "center" } }, caption);
    const box = h("figure", { style: { margin: "0 8px 0 0" } }, [img, text]);
    return { img, box, text };
  };
  const x0 = thumb("x0", "x̂0 (denoised)"), xt = thumb("xt", "x_t (noisy)");
  // A/B: the final x̂0 of the run a branch came from, beside the branch's own final x̂0
  const original = thumb("original", "A · original, final"), branched = thumb("branched", "B · branch, final");
  const compare = h("div", { "data-testid": "compare", style: { display: "none", marginTop: "6px" } }, [
    h("div", { class: "dtl-small dtl-muted" }, "compare the final images"),
    h("div", { style: { display: "flex" } }, [original.box, branched.box])]);
  const scrubber = h("input", { "data-testid": "scrubber", type: "range", min: "0", max: "0", step: "1", value: "0",
    "aria-label": "step: ←/→ one step, Home/End first/last", style: { width: "100%", margin: "4px 0" } });
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
  scrubber.addEventListener("keydown", (e) => { if (e.key !== "Escape") e.stopPropagation(); });  // arrows: the scrubber's

  const label = h("div", { "data-testid": "step-label", class: "dtl-mono", style: { margin: "2px 0" } });
  const status = h("div", { "data-testid": "status", class: "dtl-muted", style: { minHeight: "1.4em" } });
  const button = (id, text, onclick) => h("button", { "data-testid": id, onclick }, text);
  const bump = (key) => { model.set(key, model.get(key) + 1); model.save_changes(); };
  const stop = button("stop", "■ stop", () => bump("stop_request"));
  stop.title = "stop the run at its next step, keeping the frames made so far (Escape)";
  const branch = button("branch", "", () => bump("branch_request"));
  const cfg = h("input", { "data-testid": "branch-cfg", type: "number", step: "0.5", min: "0", style: { width: "5em" } });
  onCommit(cfg, () => {
    const v = parseFloat(cfg.value);
    if (Number.isFinite(v)) { model.set("branch_cfg", v); model.save_changes(); }
  });
  const prompt = h("input", { "data-testid": "branch-prompt", type: "text", placeholder: "same prompt",
    style: { width: "14em" } });
  onCommit(prompt, () => { model.set("branch_prompt", prompt.value); model.save_changes(); });
  const xtToggle = h("input", { "data-testid": "show-xt", type: "checkbox" });
  xtToggle.addEventListener("change", () => { model.set("show_xt", xtToggle.checked); model.save_changes(); });

  root.append(
    h("div", { style: { display: "flex" } }, [x0.box, xt.box]),
    scrubber, label, status,
    h("div", { class: "dtl-toolbar" }, [
      stop, branch, h("label", {}, ["cfg ", cfg]), h("label", {}, ["prompt ", prompt]),
      h("label", {}, [xtToggle, " x_t"])]),
    compare,
  );
  root.tabIndex = 0;
  root.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && model.get("running")) { e.preventDefault(); e.stopPropagation(); bump("stop_request"); }
  });

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
      // a stopped run made fewer frames than its step count: say of how many
      text = `step ${shown + 1}/${Math.max(steps, x0URLs.length)} · σ ${(sigmas[shown] ?? 0).toFixed(3)}`;
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
  function showCompare() {
    if (originalURL) URL.revokeObjectURL(originalURL);
    originalURL = pngURL(model.get("original_x0"));
    if (originalURL) original.img.src = originalURL;
    controls();
  }
  function controls() {
    const running = model.get("running"), k = model.get("branched_from"), stoppedAt = model.get("stopped_at");
    const stopped = stoppedAt >= 0;
    scrubber.disabled = running;
    stop.disabled = !running;
    branch.disabled = running || !x0URLs.length || stopped;
    branch.textContent = `branch from step ${shown + 1}`;
    branch.title = stopped ? "a stopped run has no result to branch from: run it to the end"
                           : "re-run from this step with the cfg and prompt beside";
    if (document.activeElement !== cfg) cfg.value = String(+model.get("branch_cfg").toFixed(4));
    if (document.activeElement !== prompt) prompt.value = model.get("branch_prompt");
    xtToggle.checked = model.get("show_xt");
    xt.box.style.display = model.get("show_xt") ? "block" : "none";
    const steps = model.get("steps"), from = k >= 0 ? `branched from step ${k + 1}` : "";
    status.textContent = running ? "running…"
      : stopped ? `stopped at step ${stoppedAt + 1}/${steps}: the frames made so far are kept`
      : from;
    const comparing = !running && k >= 0 && Boolean(originalURL) && x0URLs.length > 0;
    compare.style.display = comparing ? "block" : "none";
    if (comparing) {
      branched.img.src = x0URLs[x0URLs.length - 1];
      branched.text.textContent = stopped ? `B · branch, stopped at step ${stoppedAt + 1}`
                                          : `B · branch from step ${k + 1}, final`;
    }
    root.setAttribute("data-running", running ? "1" : "0");
    root.setAttribute("data-stopped", stopped ? String(stoppedAt) : "");
  }
  function layout() {
    const size = `${model.get("display_size")}px`;
    for (const img of [x0.img, xt.img, original.img, branched.img]) { img.style.width = size; img.style.height = size; }
  }
  function fromModelStep() {
    if (scrubbing) return;
    shown = model.get("step");
    showFrame(); controls();
  }

  // New frames are a run that just ended: show its last step, whatever step the scrubber showed before
  model.on("change:x0_frames", () => { loadFrames(); shown = Math.max(0, x0URLs.length - 1); showFrame(); controls(); });
  model.on("change:live_x0", showLive);
  model.on("change:live_step", showFrame);
  model.on("change:step", fromModelStep);
  model.on("change:display_size", layout);
  model.on("change:original_x0", showCompare);
  for (const key of ["running", "branched_from", "stopped_at", "branch_cfg", "branch_prompt", "show_xt"]) {
    model.on(`change:${key}`, () => { showFrame(); controls(); });
  }
  layout(); showLive(); loadFrames(); showCompare();
  markReady(root);
  return () => { revoke(x0URLs); revoke(xtURLs); revoke(liveURLs); revoke([originalURL]); };
}

export default { render };
