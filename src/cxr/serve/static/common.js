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
  const h = { ...extra };
  if (keys.api) h["X-API-Key"] = keys.api;
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

function percent(p) {
  return `${(100 * p).toFixed(1)}%`;
}
