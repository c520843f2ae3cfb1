// The worklist of `cxr serve`: received films in triage order with filters and paging; upload many films at once
// (a dropped folder is walked). Plain JS, no external libraries. common.js provides $, keys, apiHeaders, ...
"use strict";

const PAGE_SIZE = 25;
const IMAGE_SUFFIX = /\.(png|jpe?g|bmp|tiff?|dcm)$/i;
const view = { offset: 0, total: 0 };

function queryString(checkInput = false, offset = view.offset) {
  // two lists: the triage list (films the input guard passed, or with no verdict), and the "check the input" group
  const q = new URLSearchParams({ order: $("order").value, limit: PAGE_SIZE, offset, check_input: String(checkInput) });
  for (const name of ["unread", "flagged", "disagreement"]) if ($(name).checked) q.set(name, "true");
  // dates are the reader's local days: from midnight to the next midnight, sent as UTC instants
  if ($("from").value) q.set("received_from", new Date(`${$("from").value}T00:00`).toISOString());
  if ($("to").value) {
    const end = new Date(`${$("to").value}T00:00`);
    end.setDate(end.getDate() + 1);
    q.set("received_to", end.toISOString());
  }
  return q.toString();
}

async function loadModel() {
  const info = await fetchModel();
  if (!info) return false;
  $("model-line").textContent = `model ${info.model.id} · version ${info.model.version} · classes: ${info.classes.join(", ")}`;
  return true;
}

function cell(row, text, className = "") {
  const td = document.createElement("td");
  if (className) td.className = className;
  if (text !== null) td.textContent = text;
  row.append(td);
  return td;
}

function badge(parent, text, kind) {
  const b = document.createElement("span");
  b.className = `badge ${kind}`;
  b.textContent = text;
  parent.append(b);
}

function renderRow(study, checkInput = false) {
  const row = document.createElement("tr");
  row.dataset.id = study.id;
  row.dataset.guard = study.guard.verdict;
  row.dataset.score = String(study.positive_score);
  row.dataset.disagreement = String(study.disagreement);
  const name = cell(row, null);
  const link = document.createElement("a");
  link.href = `/?study=${encodeURIComponent(study.id)}`;
  const dicom = study.dicom || {};
  // a film from the PACS is named by its accession number, study date and view, never by a patient name
  link.textContent = dicom.accession ? `Accession ${dicom.accession}` : study.filename || study.id;
  name.append(link);
  if (study.source === "watch") badge(name, "watched folder", "unread");
  if (study.source === "dicom") badge(name, "PACS", "unread");
  if (dicom.accession && (dicom.study_date || dicom.view)) {
    const date = dicom.study_date ? dicom.study_date.replace(/^(\d{4})(\d{2})(\d{2})$/, "$1-$2-$3") : "";
    name.append(` ${[date, dicom.view].filter(Boolean).join(" · ")}`);
  }
  cell(row, new Date(study.received_at).toLocaleString());
  const model = cell(row, `${study.predicted} `, "predicted");
  if (checkInput) {
    // no triage score and no "positive" badge: the model's answer on an unlike film is not a ranking
    const guard = cell(row, null, "guard");
    badge(guard, "check the input", "check");
    guard.append(study.guard.reason || "unlike the training films");
    if (study.guard.score !== null) guard.title = `guard score ${study.guard.score.toFixed(2)} (over 1: unlike)`;
  } else {
    if (study.flagged) badge(model, "positive", "positive");
    renderScore(row, study);
  }
  const reads = cell(row, null, "reads");
  if (!study.reads.length) badge(reads, "unread", "unread");
  reads.append(study.reads.map((r) => `${r.reader}: ${r.label}`).join(", "));
  if (study.disagreement) badge(reads, "disagreement", "disagree");
  return row;
}

function renderScore(row, study) {
  const score = cell(row, null, "score");
  const bar = document.createElement("span");
  bar.className = "scorebar";
  const fill = document.createElement("span");
  fill.style.width = percent(study.positive_score);
  bar.append(fill);
  score.append(bar, percent(study.positive_score));
  if (study.guard.verdict === "unknown") score.title = "the input guard's verdict is not known for this film";
}

async function refreshCheckInput() {
  const response = await fetch(`/v1/studies?${queryString(true, 0)}`, { headers: apiHeaders() });
  if (!response.ok) return;
  const group = await response.json();
  $("check-studies").replaceChildren(...group.items.map((s) => renderRow(s, true)));
  $("check-input").hidden = group.total === 0;
  $("check-more").hidden = group.total <= group.items.length;
  $("check-more").textContent = `${group.items.length} of ${group.total} shown`;
  document.body.dataset.checkInput = String(group.total);
}

async function refresh() {
  const response = await fetch(`/v1/studies?${queryString()}`, { headers: apiHeaders() });
  if (!response.ok) {
    if (response.status === 401) $("auth").hidden = false;
    setStatus(await errorText(response), true);
    return;
  }
  const page = await response.json();
  view.total = page.total;
  $("studies").replaceChildren(...page.items.map((s) => renderRow(s)));
  $("empty").hidden = page.items.length > 0;
  const last = Math.min(view.offset + page.items.length, page.total);
  $("page-info").textContent = page.total ? `${view.offset + 1}–${last} of ${page.total}` : "";
  $("prev").disabled = view.offset === 0;
  $("next").disabled = last >= page.total;
  await refreshCheckInput();
  document.body.dataset.listed = String(page.items.length);
}

async function refreshHealth() {
  const response = await fetch("/v1/health", { headers: apiHeaders() });
  if (!response.ok) return;
  const health = (await response.json()).details;
  const share = (x) => (x === null ? "–" : percent(x));
  $("health-rows").replaceChildren(...health.windows.map((w) => {
    const row = document.createElement("tr");
    row.dataset.alarms = w.alarms;
    cell(row, w.window);
    cell(row, String(w.films));
    cell(row, share(w.expected_accuracy));
    cell(row, w.reads ? `${share(w.agreement)} of ${w.reads}` : "no reads");
    cell(row, share(w.guard_flag_rate));
    cell(row, w.baseline ? "baseline" : w.alarms || "none");
    return row;
  }));
  $("health-alerts").textContent = health.alerts.join("; ");
  $("health").hidden = health.windows.length === 0;
  document.body.dataset.health = health.alerts.length ? "alert" : "ok";
}

async function filesFromDrop(dataTransfer) {
  // a dropped folder arrives as a directory entry: walk it (readEntries answers in batches until empty)
  const entries = [...dataTransfer.items].map((i) => i.webkitGetAsEntry && i.webkitGetAsEntry()).filter(Boolean);
  if (!entries.length) return [...dataTransfer.files];
  const files = [];
  async function walk(entry) {
    if (entry.isFile) {
      files.push(await new Promise((resolve, reject) => entry.file(resolve, reject)));
    } else if (entry.isDirectory) {
      const reader = entry.createReader();
      for (;;) {
        const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
        if (!batch.length) break;
        for (const child of batch) await walk(child);
      }
    }
  }
  for (const entry of entries) await walk(entry);
  return files;
}

async function upload(files) {
  // DICOM files often have no suffix: anything not hidden goes to the server, which refuses what it cannot read
  const chosen = [...files].filter((f) => !f.name.startsWith(".") && (IMAGE_SUFFIX.test(f.name) || !f.name.includes(".")));
  if (!chosen.length) return;
  document.body.dataset.state = "busy";
  const failed = [];
  for (const [i, file] of chosen.entries()) {
    setStatus(`predicting ${i + 1} of ${chosen.length}: ${file.name}…`);
    const form = new FormData();
    form.append("file", file, file.name);
    const response = await fetch("/v1/predict", { method: "POST", body: form, headers: apiHeaders() });
    if (!response.ok) failed.push(`${file.name}: ${await errorText(response)}`);
  }
  view.offset = 0;
  await refresh();
  await refreshHealth().catch(() => {});
  const done = chosen.length - failed.length;
  setStatus(`${done} film(s) added` + (failed.length ? `; ${failed.length} refused: ${failed.join("; ")}` : ""), failed.length > 0);
  document.body.dataset.state = failed.length ? "error" : "ready";
}

document.addEventListener("DOMContentLoaded", () => {
  const fail = (e) => setStatus(String(e), true);
  $("files").addEventListener("change", (e) => upload(e.target.files).catch(fail));
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    filesFromDrop(e.dataTransfer).then(upload).catch(fail);
  });
  drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); $("files").click(); } });
  $("filters").addEventListener("change", () => { view.offset = 0; refresh().catch(fail); });
  $("prev").addEventListener("click", () => { view.offset = Math.max(0, view.offset - PAGE_SIZE); refresh().catch(fail); });
  $("next").addEventListener("click", () => { view.offset += PAGE_SIZE; refresh().catch(fail); });
  $("api-key-save").addEventListener("click", () => {
    saveKey("api", $("api-key").value);
    loadModel().then((ok) => ok && refresh()).catch(fail);
  });
  // films from the watched folder or other workstations appear without a reload
  setInterval(() => { if (!document.hidden && document.body.dataset.state !== "busy") refresh().catch(fail); }, 10000);
  loadModel().then((ok) => ok && refresh().then(refreshHealth)).catch(fail);
});
