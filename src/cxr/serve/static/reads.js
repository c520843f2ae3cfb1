// The single-film view of a recorded study (/?study=ID, linked from the worklist): the stored film with the model's
// call and Grad-CAM (app.js), the reads history, and a form for the reader's own read (X-Reader-Key).
"use strict";

const INDETERMINATE = "indeterminate";

async function openStudy(id) {
  document.body.dataset.state = "busy";
  setStatus("loading study…");
  const response = await fetch(`/v1/studies/${encodeURIComponent(id)}`, { headers: apiHeaders() });
  if (!response.ok) {
    document.body.dataset.state = "error";
    setStatus(`study ${id}: ${await errorText(response)}`, true);
    return;
  }
  const study = await response.json();
  renderBars(study);
  $("filename").textContent = study.filename || study.id;
  $("result").hidden = false;
  renderReads(study);
  if (study.image_stored) {
    const image = await fetch(`/v1/studies/${encodeURIComponent(id)}/image`, { headers: apiHeaders() });
    if (image.ok) {
      state.file = new File([await image.blob()], study.filename || `${study.id}.dcm`);
      showPreview(state.file);
    }
  } else {
    $("overlay-control").hidden = true;
    state.previewOk = false;
    showImages();
    $("no-preview").textContent = "The image of this study was not stored (the server runs with --no-store-images).";
  }
  setStatus(`study received ${new Date(study.received_at).toLocaleString()} · model ${study.model.id} (${study.model.version})`);
  document.body.dataset.state = "ready";
}

async function showStudyReads(id) {
  const response = await fetch(`/v1/studies/${encodeURIComponent(id)}`, { headers: apiHeaders() });
  if (response.ok) renderReads(await response.json());
}

function renderReads(study) {
  state.study = study;
  $("read-card").hidden = false;
  $("study-link").href = `/?study=${encodeURIComponent(study.id)}`;
  const select = $("read-label");
  const previous = select.value;
  select.replaceChildren();
  for (const name of [...Object.keys(study.probabilities), INDETERMINATE]) {
    const option = document.createElement("option");
    option.value = option.textContent = name;
    select.append(option);
  }
  if (previous && [...select.options].some((o) => o.value === previous)) select.value = previous;
  const history = $("read-history");
  history.replaceChildren();
  for (const read of [...study.history || study.reads].reverse()) {
    const item = document.createElement("li");
    item.dataset.reader = read.reader;
    item.dataset.label = read.label;
    const current = study.reads.some((r) => r.id === read.id);
    item.className = current ? "current" : "superseded";
    item.textContent = `${read.reader}: ${read.label} (version ${read.version}, ${new Date(read.created_at).toLocaleString()})` +
      (read.note ? ` · ${read.note}` : "") + (current ? "" : " · replaced");
    history.append(item);
  }
  $("no-reads").hidden = study.reads.length > 0;
  $("disagreement-note").hidden = !study.disagreement;
  $("disagreement-note").textContent = study.disagreement
    ? `${study.disagreeing_readers.join(", ")} disagree${study.disagreeing_readers.length === 1 ? "s" : ""} with the model`
    : "";
}

async function checkReaderKey() {
  // a reader key entered here, or the key of the key card when it is a reader's own
  if (!keys.reader && !keys.api) {
    $("reader-auth").hidden = false;
    $("read-form").hidden = true;
    return;
  }
  const response = await fetch("/v1/reader", { headers: apiHeaders() });
  const ok = response.ok;
  $("reader-auth").hidden = ok;
  $("read-form").hidden = !ok;
  $("reader-name").textContent = ok ? `reading as ${(await response.json()).name}` : "";
  if (!ok && keys.reader) {
    saveKey("reader", "");  // a wrong reader key is sent with every request: forget it, or nothing else loads
    setStatus("that reader key is not valid (or was revoked)", true);
  }
}

async function submitRead(event) {
  event.preventDefault();
  const study = state.study;
  const body = { label: $("read-label").value, note: $("read-note").value.trim() || null };
  const response = await fetch(`/v1/studies/${encodeURIComponent(study.id)}/reads`, {
    method: "POST",
    headers: apiHeaders({ "Content-Type": "application/json" }),
    body: JSON.stringify(body),
  });
  if (!response.ok) {
    if (response.status === 401) checkReaderKey();
    setStatus(`read not recorded: ${await errorText(response)}`, true);
    return;
  }
  const read = await response.json();
  $("read-note").value = "";
  await showStudyReads(study.id);
  setStatus(`recorded ${read.reader}'s read: ${read.label}`);
  document.body.dataset.read = String(read.id);
}

function setUpReads() {
  $("read-form").addEventListener("submit", (e) => submitRead(e).catch((err) => setStatus(String(err), true)));
  $("reader-key-save").addEventListener("click", () => {
    saveKey("reader", $("reader-key").value);
    checkReaderKey().catch((e) => setStatus(String(e), true));
  });
  checkReaderKey().catch((e) => setStatus(String(e), true));
}
