// The page of `cxr serve`: upload an X-ray, show the class probabilities and, when available, a Grad-CAM overlay.
// Plain JS with no external libraries (hospitals' machines often have no internet).
"use strict";

// common.js (loaded first) provides $, keys, apiHeaders, fetchModel, setStatus, errorText and percent.
const state = { file: null, overlayUrl: null, previewUrl: null, previewOk: true, study: null };

function headers() {
  return apiHeaders();
}

async function loadModel() {
  const info = await fetchModel();
  if (!info) return false;
  const m = info.model;
  $("model-line").textContent =
    `model ${m.id} · ${m.architecture} · version ${m.version} · ${info.classes.length} classes: ${info.classes.join(", ")}`;
  $("model-version").textContent = `${m.id} (${m.version})`;
  $("overlay-control").hidden = !info.explain;
  return true;
}

function renderBars(prediction) {
  // the input guard: a film unlike the training films gets its warning above the probabilities
  $("ood-warning").hidden = !prediction.warning;
  $("ood-warning").textContent = prediction.warning || "";
  const bars = $("bars");
  bars.replaceChildren();
  for (const [name, p] of Object.entries(prediction.probabilities)) {
    const row = document.createElement("div");
    row.className = "bar" + (name === prediction.predicted ? " top" : "");
    row.dataset.class = name;
    const label = document.createElement("span");
    label.className = "name";
    label.textContent = name;
    label.title = name;
    const track = document.createElement("span");
    track.className = "track";
    const fill = document.createElement("span");
    fill.className = "fill";
    fill.style.display = "block";
    fill.style.width = `${(100 * p).toFixed(1)}%`;
    track.append(fill);
    const value = document.createElement("span");
    value.className = "value";
    value.textContent = percent(p);
    row.append(label, track, value);
    bars.append(row);
  }
  $("predicted").textContent = prediction.predicted;
  $("decision-note").textContent = prediction.threshold === null
    ? "highest probability"
    : `positive when P(${Object.keys(prediction.probabilities)[1]}) ≥ ${prediction.threshold.toFixed(3)}`;
}

function showPreview(file) {
  if (state.previewUrl) URL.revokeObjectURL(state.previewUrl);
  state.previewUrl = URL.createObjectURL(file);
  state.previewOk = true;
  showImages();
  $("preview").onerror = () => { state.previewOk = false; showImages(); };  // e.g. DICOM: browsers cannot draw it
  $("preview").src = state.previewUrl;
}

async function postFile(path) {
  const form = new FormData();
  form.append("file", state.file, state.file.name);
  return fetch(path, { method: "POST", body: form, headers: headers() });
}

async function predict(file) {
  state.file = file;
  if (state.overlayUrl) URL.revokeObjectURL(state.overlayUrl);
  state.overlayUrl = null;
  $("overlay-toggle").checked = false;
  document.body.dataset.state = "busy";
  setStatus(`predicting ${file.name}…`);
  $("filename").textContent = file.name;
  showPreview(file);
  const response = await postFile("/v1/predict");
  if (!response.ok) {
    document.body.dataset.state = "error";
    $("result").hidden = true;
    if (response.status === 401) $("auth").hidden = false;
    const detail = await errorText(response);
    setStatus(detail.includes(file.name) ? detail : `${file.name}: ${detail}`, true);
    return;
  }
  const prediction = await response.json();
  renderBars(prediction);
  $("result").hidden = false;
  if (prediction.study_id) showStudyReads(prediction.study_id).catch((e) => setStatus(String(e), true));
  setStatus(`${file.name}: ${prediction.predicted} (${prediction.backend}, ${(1000 * prediction.seconds).toFixed(0)} ms)`);
  document.body.dataset.state = "ready";
}

async function toggleOverlay() {
  const on = $("overlay-toggle").checked;
  if (on && !state.overlayUrl && state.file) {
    setStatus("computing Grad-CAM…");
    const response = await postFile("/v1/explain");
    if (!response.ok) {
      $("overlay-toggle").checked = false;
      setStatus(`Grad-CAM: ${await errorText(response)}`, true);
      return;
    }
    state.overlayUrl = URL.createObjectURL(await response.blob());
    $("overlay").src = state.overlayUrl;
    setStatus("Grad-CAM: warmer colours mark the regions that drove the prediction");
  }
  showImages();
}

function showImages() {
  const on = $("overlay-toggle").checked;
  $("overlay").hidden = !on;
  $("preview").hidden = on || !state.previewOk;
  $("no-preview").hidden = on || state.previewOk;
}

function chooseFile(files) {
  if (files && files.length) predict(files[0]).catch((e) => setStatus(String(e), true));
}

document.addEventListener("DOMContentLoaded", () => {
  $("file").addEventListener("change", (e) => chooseFile(e.target.files));
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); chooseFile(e.dataTransfer.files); });
  drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); $("file").click(); } });
  $("overlay-toggle").addEventListener("change", () => toggleOverlay().catch((e) => setStatus(String(e), true)));
  const study = new URLSearchParams(location.search).get("study");
  $("api-key-save").addEventListener("click", () => {
    saveKey("api", $("api-key").value);
    checkReaderKey().catch((e) => setStatus(String(e), true));  // a reader's own key also opens the read form
    loadModel().then((ok) => {
      if (ok && state.file) return predict(state.file);
      if (ok && study) return openStudy(study);
    }).catch((e) => setStatus(String(e), true));
  });
  setUpReads();
  loadModel().then((ok) => { if (ok && study) return openStudy(study); }).catch((e) => setStatus(String(e), true));
});
