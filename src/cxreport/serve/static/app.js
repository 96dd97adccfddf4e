// cxreport web page: upload a study, show the report, finding bars and Grad-CAM overlays.
// Server text is always inserted with textContent, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

function setStatus(text, isError) {
  const s = $("status");
  s.textContent = text;
  s.className = isError ? "error" : "";
}

function renderFileList() {
  const list = $("file-list");
  list.replaceChildren();
  const files = Array.from($("files").files);
  files.forEach((file, i) => {
    const row = el("div", "file-row");
    const img = el("img");
    img.alt = "";
    if (/\.(png|jpe?g)$/i.test(file.name)) img.src = URL.createObjectURL(file);
    const select = el("select");
    select.className = "view";
    select.setAttribute("aria-label", "view of " + file.name);
    for (const [value, label] of [["", i === 0 ? "frontal (auto)" : i === 1 ? "lateral (auto)" : "auto"],
                                  ["frontal", "frontal"], ["lateral", "lateral"], ["unknown", "unknown"]]) {
      const opt = el("option", null, label);
      opt.value = value;
      select.appendChild(opt);
    }
    row.append(img, el("span", "name", file.name), select);
    list.appendChild(row);
  });
  $("submit").disabled = files.length === 0;
}

function renderFindings(findings) {
  const box = $("findings");
  box.replaceChildren();
  const all = Object.entries(findings);
  const rows = all.filter(([, f]) => f.state !== "not_assessed")
    .sort((a, b) => b[1].probability - a[1].probability);
  for (const [name, f] of rows) {
    const pos = f.state === "positive" ? " positive" : f.state === "uncertain" ? " uncertain" : "";
    const track = el("div", "track");
    const bar = el("div", "bar" + pos);
    bar.style.width = (100 * f.probability).toFixed(1) + "%";
    const tick = el("div", "tick");
    tick.style.left = (100 * f.threshold).toFixed(1) + "%";
    tick.title = "threshold " + f.threshold.toFixed(2);
    track.append(bar, tick);
    const mark = f.state === "positive" ? "● " : f.state === "uncertain" ? "? " : "";
    box.append(el("span", "name" + pos, mark + name), track,
               el("span", "value", f.probability.toFixed(2)));
  }
  // Findings the model cannot judge get no bar: a number there would look like a reading.
  const skipped = all.filter(([, f]) => f.state === "not_assessed").map(([name]) => name);
  if (skipped.length) {
    const note = el("p", "note not-assessed", "Not assessed: " + skipped.join(", ") +
                    " (too few training examples, or no film the model reads).");
    note.style.gridColumn = "1 / -1";
    box.append(note);
  }
}

function renderHeatmaps(maps) {
  const box = $("heatmap-list");
  box.replaceChildren();
  if (!maps || maps.length === 0) {
    box.appendChild(el("p", "note", "No heatmaps for this study."));
    return;
  }
  for (const h of maps) {
    const fig = el("figure");
    const img = el("img");
    img.src = "data:image/png;base64," + h.png_base64;
    img.alt = "heatmap for " + h.finding + " on the " + h.view + " view";
    const note = h.has_signal ? "" : " (no region raised it)";
    fig.append(img, el("figcaption", null, `${h.finding} (${h.probability.toFixed(2)}), ${h.view} view${note}`));
    box.appendChild(fig);
  }
}

async function submit(event) {
  event.preventDefault();
  const files = Array.from($("files").files);
  if (files.length === 0) return;
  const form = new FormData();
  const views = Array.from(document.querySelectorAll("#file-list select.view"));
  files.forEach((file, i) => {
    form.append("images", file, file.name);
    form.append("views", views[i] ? views[i].value : "");
  });
  form.append("beam", $("beam").value || "1");
  if ($("threshold").value) form.append("threshold", $("threshold").value);
  form.append("heatmaps", $("heatmaps").checked ? "true" : "false");
  const headers = {};
  const key = $("api-key").value.trim();
  if (key) headers["X-API-Key"] = key;
  $("submit").disabled = true;
  setStatus("Writing the report…");
  const started = performance.now();
  try {
    const resp = await fetch("/v1/reports", { method: "POST", body: form, headers });
    let body;
    try { body = await resp.json(); } catch (e) { body = { error: "HTTP " + resp.status }; }
    if (!resp.ok) {
      $("result-panel").hidden = true;  // never leave an earlier study's report beside this error
      setStatus(`Error ${resp.status}: ${body.error || "request failed"}`, true);
      return;
    }
    $("result-panel").hidden = false;
    $("report").textContent = body.report || "(empty report)";
    $("warnings").textContent = (body.warnings || []).map((w) => "Warning: " + w).join(" ");
    const views = body.views.map((v) => v.view).join(" + ");
    $("meta").textContent = `model ${body.model} · ${views} · ${Math.round(body.timing_ms.total)} ms on the server`;
    renderFindings(body.findings);
    renderHeatmaps(body.heatmaps);
    setStatus(`Done in ${((performance.now() - started) / 1000).toFixed(1)} s.`);
    document.body.dataset.state = "done";
  } catch (err) {
    setStatus("Could not reach the server: " + err.message, true);
  } finally {
    $("submit").disabled = $("files").files.length === 0;
  }
}

async function showModel() {
  try {
    const resp = await fetch("/healthz");
    if (resp.ok) $("model-name").textContent = "Model: " + (await resp.json()).model + ".";
  } catch (e) { /* the page still works; the first request will report the problem */ }
}

document.addEventListener("DOMContentLoaded", () => {
  $("files").addEventListener("change", renderFileList);
  $("form").addEventListener("submit", submit);
  showModel();
});
