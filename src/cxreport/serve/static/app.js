// cxreport web page: upload a study, show the report, finding bars and Grad-CAM overlays;
// edit a finding's state and the report is rewritten from the edited plan.
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

// The finding plan the report is written from; a radiologist may set any finding's state, and
// the report is rewritten from the edited plan (sent as the "findings" form field).
const STATES = ["positive", "negative", "uncertain", "not_assessed"];
const overrides = {};

function stateOf(f) {
  return f.state || (f.positive ? "positive" : "negative");
}

function stateSelect(name, f) {
  const select = el("select", "state");
  select.dataset.finding = name;
  select.setAttribute("aria-label", "state of " + name);
  const model = el("option", null, f.set_by === "user" ? "model's" : "model: " + stateOf(f).replace("_", " "));
  model.value = "";
  select.appendChild(model);
  for (const s of STATES) {
    const opt = el("option", null, s.replace("_", " "));
    opt.value = s;
    select.appendChild(opt);
  }
  select.value = overrides[name] || "";
  select.addEventListener("change", () => {
    if (select.value) overrides[name] = select.value; else delete overrides[name];
    submit();
  });
  return select;
}

function renderFindings(findings) {
  const box = $("findings");
  box.replaceChildren();
  const prob = (f) => (f.probability === null || f.probability === undefined ? -1 : f.probability);
  const rows = Object.entries(findings).sort((a, b) => prob(b[1]) - prob(a[1]));
  for (const [name, f] of rows) {
    const state = stateOf(f);
    const pos = state === "positive" ? " positive" : "";
    const user = f.set_by === "user" ? " user" : "";
    const track = el("div", "track");
    const bar = el("div", "bar" + pos);
    bar.style.width = (100 * Math.max(0, prob(f))).toFixed(1) + "%";
    track.appendChild(bar);
    if (typeof f.threshold === "number") {
      const tick = el("div", "tick");
      tick.style.left = (100 * f.threshold).toFixed(1) + "%";
      tick.title = "threshold " + f.threshold.toFixed(2);
      track.appendChild(tick);
    }
    const label = (pos ? "● " : "") + name + (user ? " (set by you)" : "");
    box.append(el("span", "name" + pos + user, label), track,
               el("span", "value", prob(f) < 0 ? "–" : f.probability.toFixed(2)), stateSelect(name, f));
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
  if (event) event.preventDefault();
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
  if (Object.keys(overrides).length) form.append("findings", JSON.stringify(overrides));
  const headers = {};
  const key = $("api-key").value.trim();
  if (key) headers["X-API-Key"] = key;
  $("submit").disabled = true;
  setStatus("Writing the report…");
  document.body.dataset.state = "busy";
  const started = performance.now();
  try {
    const resp = await fetch("/v1/reports", { method: "POST", body: form, headers });
    let body;
    try { body = await resp.json(); } catch (e) { body = { error: "HTTP " + resp.status }; }
    if (!resp.ok) {
      setStatus(`Error ${resp.status}: ${body.error || "request failed"}`, true);
      return;
    }
    $("result-panel").hidden = false;
    $("report").textContent = body.report || "(empty report)";
    const views = body.views.map((v) => v.view).join(" + ");
    $("meta").textContent = `model ${body.model} · ${views} · ${Math.round(body.timing_ms.total)} ms on the server`;
    renderFindings(body.findings);
    renderHeatmaps(body.heatmaps);
    setStatus(`Done in ${((performance.now() - started) / 1000).toFixed(1)} s.`);
    document.body.dataset.state = "done";
    document.body.dataset.reports = String(Number(document.body.dataset.reports || 0) + 1);
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
  $("files").addEventListener("change", () => {
    for (const k of Object.keys(overrides)) delete overrides[k];  // a new study starts from the model's plan
    renderFileList();
  });
  $("form").addEventListener("submit", submit);
  showModel();
});
