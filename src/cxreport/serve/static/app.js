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

// The model's own call: after an edit the state shown is the edited plan's, this is the model's.
function modelStateOf(f) {
  return f.model_state || stateOf(f);
}

const words = (state) => state.replace("_", " ");

function stateSelect(name, f) {
  const select = el("select", "state");
  select.dataset.finding = name;
  select.setAttribute("aria-label", "state of " + name);
  const model = el("option", null, "model: " + words(modelStateOf(f)));
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
    const pos = state === "positive" ? " positive" : state === "uncertain" ? " uncertain" : "";
    const user = f.set_by === "user" ? " user" : f.set_by === "edit" ? " edit" : "";
    // A finding the model did not assess gets no bar: a number there would look like a reading.
    const judged = f.assessed !== false && f.probability !== null && f.probability !== undefined;
    const track = el("div", "track" + (judged ? "" : " not-assessed"));
    if (!judged) track.textContent = "not assessed by the model";
    if (judged && prob(f) >= 0) {
      // The bar is the model's: its colour follows the model's call, whatever the user set.
      const own = modelStateOf(f);
      const bar = el("div", "bar" + (own === "positive" ? " positive" : own === "uncertain" ? " uncertain" : ""));
      bar.style.width = (100 * Math.max(0, prob(f))).toFixed(1) + "%";
      track.appendChild(bar);
    }
    if (judged && typeof f.threshold === "number") {
      const tick = el("div", "tick");
      tick.style.left = (100 * f.threshold).toFixed(1) + "%";
      tick.title = "threshold " + f.threshold.toFixed(2);
      track.appendChild(tick);
    }
    const mark = state === "positive" ? "● " : state === "uncertain" ? "? " : "";
    const nameCell = el("span", "name" + pos + user, mark + name);
    if (user) {
      // The model's own call stays beside the user's: an edit never relabels what the model said.
      const who = f.set_by === "user" ? "set by you" : "follows your edits";
      nameCell.appendChild(el("span", "model-call", ` ${who} · model: ${words(modelStateOf(f))}`));
    }
    const value = !judged ? "–" : f.probability.toFixed(2);
    box.append(nameCell, track, el("span", "value", value), stateSelect(name, f));
  }
}

// Heatmaps follow the plan the report was written from: the model's own, or the one the user
// edited. The note above them says which, and each caption gives both calls when they differ.
function renderHeatmaps(maps, findings, requested) {
  const box = $("heatmap-list");
  box.replaceChildren();
  const edited = Object.values(findings).some((f) => f.set_by === "user");
  $("heatmap-plan").textContent = !requested ? "Heatmaps are off (Options)." : edited
    ? "Grad-CAM overlays for the positive findings of your edited plan, the one this report was written from " +
      "(or its most probable finding when none is positive)."
    : "Grad-CAM overlays for the positive findings of the model's own plan (or its most probable finding when " +
      "none is positive).";
  $("heatmap-plan").dataset.plan = !requested ? "" : edited ? "edited" : "model";
  if (!requested) return;
  if (!maps || maps.length === 0) {
    box.appendChild(el("p", "note", "No heatmaps for this study."));
    return;
  }
  for (const h of maps) {
    const fig = el("figure");
    const img = el("img");
    img.src = "data:image/png;base64," + h.png_base64;
    img.alt = "heatmap for " + h.finding + " on the " + h.view + " view";
    const state = h.state || "positive";
    const own = h.model_state || state;
    const who = h.set_by === "user" ? `${words(state)} (set by you; model: ${words(own)})`
      : h.set_by === "edit" ? `${words(state)} after your edits (model: ${words(own)})` : `model: ${words(own)}`;
    fig.append(img, el("figcaption", null, `${h.finding} (p ${h.probability.toFixed(2)}), ${h.view} view`),
               el("figcaption", "note", who));
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
  // Left empty, beam and threshold are the model's own settings: the page sends what the API,
  // the command line and Python send when nothing is set, so all four write the same report.
  if ($("beam").value) form.append("beam", $("beam").value);
  if ($("threshold").value) form.append("threshold", $("threshold").value);
  form.append("heatmaps", $("heatmaps").checked ? "true" : "false");
  if ($("skip-gate").checked) form.append("skip_gate", "true");
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
      $("result-panel").hidden = true;  // never leave an earlier study's report beside this error
      const hint = resp.status === 422 && /radiograph|noise|blank|colour/.test(body.error || "")
        ? ". On this page: if it is a chest film, tick \u201cread even if the input check refuses it\u201d under Options." : "";
      setStatus(`Error ${resp.status}: ${body.error || "request failed"}${hint}`, true);
      return;
    }
    $("result-panel").hidden = false;
    $("report").textContent = body.report || "(empty report)";
    const warnings = $("warnings");
    warnings.replaceChildren(...(body.warnings || []).map((w) => el("span", "warning-line", "Warning: " + w)));
    const views = body.views.map((v) => v.view).join(" + ");
    const population = body.population ? ` · ${body.population} calibration` : "";
    $("meta").textContent = `model ${body.model}${population} · ${views} · ` +
      `${Math.round(body.timing_ms.total)} ms on the server`;
    renderFindings(body.findings);
    renderHeatmaps(body.heatmaps, body.findings, $("heatmaps").checked);
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
  try {  // the model's own decoding settings, as placeholders (needs the API key when one is set)
    const key = $("api-key").value.trim();
    const resp = await fetch("/v1/models", { headers: key ? { "X-API-Key": key } : {} });
    if (resp.ok) {
      const decoding = (await resp.json()).models[0].decoding;
      if (decoding) $("beam").placeholder = `model default (${decoding.beam})`;
    }
  } catch (e) { /* placeholders stay generic */ }
}

document.addEventListener("DOMContentLoaded", () => {
  $("files").addEventListener("change", () => {
    for (const k of Object.keys(overrides)) delete overrides[k];  // a new study starts from the model's plan
    renderFileList();
  });
  $("form").addEventListener("submit", submit);
  showModel();
});
