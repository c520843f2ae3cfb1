// Shared by the upload page (app.js) and the worklist (worklist.js): element lookup, keys, status and errors.
"use strict";

const $ = (id) => document.getElementById(id);
const keys = {
  api: sessionStorage.getItem("cxr-api-key") || "",
  reader: sessionStorage.getItem("cxr-reader-key") || "",
};

function saveKey(which, value) {
  keys[which] = value.trim();
  sessionStorage.setItem(which === "api" ? "cxr-api-key" : "cxr-reader-key", keys[which]);
}

function apiHeaders(extra = {}) {
  // both keys when both are known: the server takes the reader key as who is asking (the access log names them)
  const h = { ...extra };
  if (keys.api) h["X-API-Key"] = keys.api;
  if (keys.reader && !("X-Reader-Key" in h)) h["X-Reader-Key"] = keys.reader;
  return h;
}

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

async function errorText(response) {
  try {
    const body = await response.json();
    if (typeof body.detail === "string") return body.detail;
    return JSON.stringify(body.detail);
  } catch (_) {
    return `${response.status} ${response.statusText}`;
  }
}

// The key card, shown when the server answers 401 (both pages carry the same one): the API key or your reader key
(function addAuthCard() {
  const card = document.createElement("section");
  card.id = "auth";
  card.className = "card";
  card.hidden = true;
  card.innerHTML = '<label for="api-key">Key</label> ' +
    '<input id="api-key" type="password" autocomplete="off" placeholder="the API key, or your reader key"> ' +
    '<button id="api-key-save" type="button">Use key</button>';
  document.querySelector("main").prepend(card);
})();

// The server's warning while it runs without keys beyond this machine (--insecure-no-auth): on every page
(async function showServiceWarning() {
  const response = await fetch("/healthz");
  const health = response.ok ? await response.json() : {};
  if (!health.warning) return;
  const banner = document.createElement("p");
  banner.id = "insecure-warning";
  banner.className = "insecure-warning";
  banner.setAttribute("role", "alert");
  banner.textContent = health.warning;
  document.querySelector("main").prepend(banner);
})().catch(() => {});

async function fetchModel() {
  // the model's description, or null after showing why: the API key card on 401, the server's message otherwise
  const response = await fetch("/v1/model", { headers: apiHeaders() });
  if (response.status === 401) {
    $("auth").hidden = false;
    $("model-line").textContent = "this server requires a key";
    return null;
  }
  if (!response.ok) {
    setStatus(await errorText(response), true);
    return null;
  }
  $("auth").hidden = true;
  return response.json();
}

function percent(p) {
  return `${(100 * p).toFixed(1)}%`;
}
