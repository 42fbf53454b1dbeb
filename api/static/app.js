// LUGPI web page: classify a text, list the models, follow the training jobs.
// Plain browser JavaScript, no framework and no build step. Every value that
// comes from the server is inserted with textContent, never as HTML.
"use strict";

const KEY_STORAGE = "lugpi-api-key";
const JOBS_POLL_MS = 3000;
// Relative URLs, so the page also works behind a proxy that mounts the API under a prefix.
const api = (path) => new URL(path, document.baseURI).toString();

class HttpError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

function apiKey() {
  return sessionStorage.getItem(KEY_STORAGE) || "";
}

function showKeyField(message) {
  const section = document.getElementById("key-section");
  section.hidden = false;
  if (message) document.getElementById("key-hint").textContent = message;
}

async function request(method, path, body) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const key = apiKey();
  if (key) headers["X-API-Key"] = key;
  const response = await fetch(api(path), {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let payload = null;
  try {
    payload = await response.json();
  } catch (_) {
    payload = null;
  }
  if (!response.ok) {
    // 401: no key was sent. 403 on /classify: a wrong key (on job routes: not an admin key).
    if (response.status === 401) {
      showKeyField("This server asks for an API key. It is kept in this tab only.");
    } else if (response.status === 403 && path === "classify") {
      showKeyField("The server refused this key; check it.");
    }
    throw new HttpError(response.status, errorText(payload, response.statusText));
  }
  return payload;
}

// FastAPI errors: {"detail": "..."} or {"detail": [{"loc": [...], "msg": "..."}]}.
function errorText(payload, fallback) {
  const detail = payload && payload.detail;
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {
    return detail.map((d) => `${(d.loc || []).slice(1).join(".")}: ${d.msg}`).join("; ");
  }
  if (detail && typeof detail === "object" && detail.message) return detail.message;
  return fallback || "request failed";
}

function el(tag, attrs = {}, text) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  if (text !== undefined) node.textContent = String(text);
  return node;
}

const percent = (p) => `${(100 * p).toFixed(1)}%`;

// One prediction: the winning label, then one bar per label, highest first.
function renderPrediction(title, prediction, meta) {
  const card = el("article", { class: "prediction" });
  card.append(el("h3", {}, title));
  const head = el("p", { class: "winner" });
  head.append("Prediction: ", el("strong", { class: "predicted-label" }, prediction.label));
  head.append(` (${percent(prediction.score)})`);
  card.append(head);
  if (meta) card.append(el("p", { class: "muted" }, meta));
  const scores = Object.entries(prediction.scores || { [prediction.label]: prediction.score });
  scores.sort((a, b) => b[1] - a[1]);
  const list = el("ul", { class: "bars", "aria-label": `${title} scores per label` });
  for (const [label, p] of scores) {
    const item = el("li", { class: "score-row" });
    item.append(el("span", { class: "bar-label" }, label));
    const bar = el("span", {
      class: "score-bar", role: "meter", "aria-label": label,
      "aria-valuemin": "0", "aria-valuemax": "1", "aria-valuenow": String(p),
      "data-label": label,
    });
    const fill = el("span", { class: "bar-fill" });
    fill.style.width = percent(Math.max(0, Math.min(1, p)));
    if (label === prediction.label) fill.classList.add("winner-fill");
    bar.append(fill);
    item.append(bar, el("span", { class: "bar-value" }, percent(p)));
    list.append(item);
  }
  card.append(list);
  return card;
}

function modelMeta(response) {
  const parts = [];
  if (response.model) parts.push(`model ${response.model}`);
  if (response.version) parts.push(`version ${response.version}`);
  // The server truncates texts longer than the model's max_length tokens; say so.
  if ((response.truncated || []).length) parts.push("text truncated to the model's length");
  return parts.join(", ");
}

async function classify(event) {
  event.preventDefault();
  const status = document.getElementById("classify-status");
  const results = document.getElementById("results");
  const button = document.getElementById("classify-button");
  const text = document.getElementById("text").value.trim();
  const pair = document.getElementById("text-pair").value.trim();
  const model = document.getElementById("model").value;
  if (!text) {
    status.textContent = "Type a text first.";
    return;
  }
  const body = { texts: [text] };
  if (pair) body.text_pairs = [pair];
  if (model) body.model = model;
  button.disabled = true;
  status.textContent = "Classifying…";
  results.replaceChildren();
  try {
    const student = await request("POST", "classify", body);
    results.append(renderPrediction("Student", student.predictions[0], modelMeta(student)));
    status.textContent = "Done.";
    if (document.getElementById("use-teacher").checked) {
      status.textContent = "Student done; waiting for the teacher (image generation)…";
      await classifyWithTeacher(body, results, status);
    }
  } catch (err) {
    status.textContent = `Error${err.status ? ` ${err.status}` : ""}: ${err.message}`;
  } finally {
    button.disabled = false;
  }
}

// POST /classify/teacher: {"teacher": {name, predictions, prompts, images}, "timings_ms"}.
// 503: no GPU worker answers; 409: the model was not trained by a job on this server.
async function classifyWithTeacher(body, results, status) {
  try {
    const reply = await request("POST", "classify/teacher", { ...body, return_images: true });
    const teacher = reply.teacher;
    const timings = Object.entries(reply.timings_ms || {})
      .map(([k, v]) => `${k} ${(Number(v) / 1000).toFixed(2)} s`).join(", ");
    const card = renderPrediction(`Teacher (${teacher.name})`, teacher.predictions[0], timings);
    if (teacher.images && teacher.images[0]) {
      const figure = el("figure");
      figure.append(el("img", {
        src: `data:image/png;base64,${teacher.images[0]}`, class: "generated",
        alt: `Image generated for the teacher from the prompt: ${teacher.prompts[0]}`,
      }), el("figcaption", { class: "muted" }, `Prompt: ${teacher.prompts[0]}`));
      card.append(figure);
    }
    results.append(card);
    status.textContent = "Done.";
  } catch (err) {
    status.textContent = err.status === 503
      ? `The teacher is unavailable: ${err.message}`
      : `Teacher error${err.status ? ` ${err.status}` : ""}: ${err.message}`;
  }
}

// GET /models: {"default_model", "models": [{name, is_default, default_version,
// versions: [{version, status, labels, text_pair, metrics}] (newest first)}]}.
function modelsOf(payload) {
  if (Array.isArray(payload)) return payload;
  return (payload && (payload.models || payload.items)) || [];
}

function defaultVersion(model) {
  const versions = model.versions || [];
  const wanted = model.default_version || model.default;
  return versions.find((v) => v.version === wanted) || versions[0] || model;
}

async function loadModels() {
  const status = document.getElementById("models-status");
  const table = document.getElementById("models-table");
  const select = document.getElementById("model");
  try {
    const payload = await request("GET", "models");
    const models = modelsOf(payload);
    const rows = table.querySelector("tbody");
    rows.replaceChildren();
    const chosen = select.value;
    const fallback = payload && payload.default_model;
    select.replaceChildren(el("option", { value: "" }, fallback ? `default (${fallback})` : "default"));
    for (const model of models) {
      const v = defaultVersion(model);
      const labels = v.labels || model.labels || [];
      const acc = v.metrics && v.metrics.student && v.metrics.student.test
        ? v.metrics.student.test.accuracy : null;
      const row = el("tr");
      row.append(el("td", {}, model.name), el("td", {}, v.version || ""),
        el("td", {}, labels.join(", ")), el("td", {}, acc === null ? "—" : acc.toFixed(3)),
        el("td", {}, (v.text_pair ?? model.text_pair) ? "text pair" : "text"));
      rows.append(row);
      select.append(el("option", { value: model.name }, model.name));
    }
    select.value = [...select.options].some((o) => o.value === chosen) ? chosen : "";
    table.hidden = models.length === 0;
    status.textContent = models.length ? "" : "No model is published yet. Train one (make demo).";
  } catch (err) {
    table.hidden = true;
    status.textContent = `Cannot list models: ${err.message}`;
  }
}

// GET /jobs: {"jobs": [{job_id, state, progress: {stage, done, total, fraction, message},
// created_at, error, published_model, published_version}], "total", "offset", "limit"}.
function jobsOf(payload) {
  if (Array.isArray(payload)) return payload;
  return (payload && (payload.jobs || payload.items)) || [];
}

const ACTIVE = new Set(["queued", "running"]);

async function cancelJob(jobId) {
  try {
    await request("POST", `jobs/${encodeURIComponent(jobId)}/cancel`);
  } catch (err) {
    document.getElementById("jobs-status").textContent = `Cannot cancel: ${err.message}`;
  }
  loadJobs();
}

async function loadJobs() {
  const status = document.getElementById("jobs-status");
  const table = document.getElementById("jobs-table");
  try {
    const jobs = jobsOf(await request("GET", "jobs"));
    const rows = table.querySelector("tbody");
    rows.replaceChildren();
    for (const job of jobs) {
      const id = job.job_id;
      const state = job.state;
      const p = job.progress || {};
      // A finished job shows 100% even if its last progress write was earlier.
      const progress = state === "succeeded" ? 1 : Number(p.fraction || 0);
      const bar = el("progress", { max: "1", value: String(progress),
        "aria-label": `job ${id} progress` });
      const cell = el("td");
      cell.append(bar, ` ${percent(progress)}`);
      const created = job.created_at ? new Date(job.created_at).toLocaleString() : "";
      const actions = el("td");
      if (ACTIVE.has(state)) {
        const button = el("button", { type: "button", class: "small" }, "Cancel");
        button.addEventListener("click", () => cancelJob(id));
        actions.append(button);
      }
      let statusText = job.error ? `${state}: ${job.error}` : state;
      if (job.published_model) {
        statusText += ` (published ${job.published_model} ${job.published_version || ""})`;
      }
      const stage = p.stage ? `${p.stage}${p.total ? ` ${p.done}/${p.total}` : ""}` : "";
      const row = el("tr", { "data-job": id });
      row.append(el("td", { class: "mono" }, id.slice(0, 12)), el("td", {}, statusText),
        el("td", {}, stage), cell, el("td", {}, created), actions);
      rows.append(row);
    }
    table.hidden = jobs.length === 0;
    status.textContent = jobs.length ? "" : "No training job yet.";
  } catch (err) {
    table.hidden = true;
    if (err.status === 404) status.textContent = "This server runs no training jobs.";
    else if (err.status === 401 || err.status === 403) {
      status.textContent = "Training jobs are visible with an admin key.";
    } else status.textContent = `Cannot list jobs: ${err.message}`;
  }
}

function start() {
  document.getElementById("classify-form").addEventListener("submit", classify);
  document.getElementById("models-refresh").addEventListener("click", loadModels);
  document.getElementById("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY_STORAGE, document.getElementById("api-key").value.trim());
    document.getElementById("key-hint").textContent = "Key set for this tab.";
    loadModels();
    loadJobs();
  });
  if (apiKey()) showKeyField("Key set for this tab.");
  loadModels();
  loadJobs();
  // Poll only while the page is visible: a background tab costs the server nothing.
  setInterval(() => {
    if (document.visibilityState === "visible") loadJobs();
  }, JOBS_POLL_MS);
}

document.addEventListener("DOMContentLoaded", start);
