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

// What the page knows of the models, for the form: name -> its default version.
const known = { models: new Map(), defaultModel: null };
// Admin rights are learned from the jobs routes (admin only): pin and rollback buttons
// show only to a key that may use them.
let isAdmin = false;

// The text-pair field only for a pair model, the teacher box only where a teacher exists
// (a bundle trained by a job here names its teachers; an imported model has none).
function updateForm() {
  const chosen = document.getElementById("model").value || known.defaultModel;
  const v = known.models.get(chosen);
  const pairField = document.getElementById("pair-field");
  const teacherField = document.getElementById("teacher-field");
  const pair = v ? Boolean(v.text_pair) : true;
  const teachers = v ? ((v.provenance || {}).teachers || []) : [];
  pairField.hidden = !pair;
  if (!pair) document.getElementById("text-pair").value = "";
  teacherField.hidden = v ? teachers.length === 0 : false;
  if (teacherField.hidden) document.getElementById("use-teacher").checked = false;
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
    known.models.clear();
    known.defaultModel = fallback || (models[0] && models[0].name) || null;
    select.replaceChildren(el("option", { value: "" }, fallback ? `default (${fallback})` : "default"));
    for (const model of models) {
      const v = defaultVersion(model);
      const labels = v.labels || model.labels || [];
      const acc = v.metrics && v.metrics.student && v.metrics.student.test
        ? v.metrics.student.test.accuracy : null;
      const row = el("tr", { "data-model": model.name });
      const details = el("button", { type: "button", class: "small details" }, "Versions");
      details.addEventListener("click", () => showModel(model.name));
      const actions = el("td");
      actions.append(details);
      row.append(el("td", {}, model.name), el("td", {}, v.version || ""),
        el("td", {}, labels.join(", ")), el("td", {}, acc === null ? "—" : acc.toFixed(3)),
        el("td", {}, (v.text_pair ?? model.text_pair) ? "text pair" : "text"), actions);
      rows.append(row);
      known.models.set(model.name, v);
      select.append(el("option", { value: model.name }, model.name));
    }
    select.value = [...select.options].some((o) => o.value === chosen) ? chosen : "";
    updateForm();
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
      const row = el("tr", { "data-job": id, class: "clickable" });
      const open = el("button", { type: "button", class: "small details" }, "Details");
      open.addEventListener("click", () => showJob(id));
      actions.append(open);
      row.append(el("td", { class: "mono" }, id.slice(0, 12)), el("td", {}, statusText),
        el("td", {}, stage), cell, el("td", {}, created), actions);
      rows.append(row);
      if (id === openJob) renderJob(job);
    }
    setAdmin(true);
    table.hidden = jobs.length === 0;
    status.textContent = jobs.length ? "" : "No training job yet.";
  } catch (err) {
    table.hidden = true;
    setAdmin(err.status !== 401 && err.status !== 403);
    if (err.status === 404) status.textContent = "This server runs no training jobs.";
    else if (err.status === 401 || err.status === 403) {
      status.textContent = "Training jobs are visible with an admin key.";
    } else status.textContent = `Cannot list jobs: ${err.message}`;
  }
}

function setAdmin(admin) {
  if (admin === isAdmin) return;
  isAdmin = admin;
  if (openModel) showModel(openModel);  // redraw with (or without) the admin buttons
}

// ---- One model's versions -------------------------------------------------------------

let openModel = null;
const fmt = (x) => (typeof x === "number" ? (Number.isInteger(x) ? String(x) : x.toFixed(4)) : String(x));

function metricsTable(metrics) {
  const table = el("table", { class: "compact metrics" });
  const head = el("tr");
  for (const h of ["Model", "Split", "Accuracy", "Macro-F1", "n"]) head.append(el("th", { scope: "col" }, h));
  const thead = el("thead");
  thead.append(head);
  table.append(thead);
  const body = el("tbody");
  for (const [model, splits] of Object.entries(metrics || {})) {
    for (const [split, m] of Object.entries(splits || {})) {
      const row = el("tr", { "data-metric": `${model}/${split}` });
      row.append(el("td", {}, model), el("td", {}, split), el("td", {}, fmt(m.accuracy)),
        el("td", {}, fmt(m.macro_f1)), el("td", {}, fmt(m.n)));
      body.append(row);
    }
  }
  table.append(body);
  return table;
}

// The score temperature (bundle.json "score_temperature": {temperature, fitted_on,
// before/after: {model: {split: {ece, nll, brier, n}}}}) and, from any other source, ECE,
// NLL or Brier figures beside a split's metrics. [label, text] pairs; none: not recorded.
function calibrationOf(version) {
  const found = [];
  const st = version.score_temperature;
  if (st && typeof st === "object" && typeof st.temperature === "number") {
    found.push(["score temperature", `${fmt(st.temperature)} (fitted on ${st.fitted_on || "dev"})`]);
    const after = st.after || {};
    for (const [model, splits] of Object.entries(st.before || {})) {
      for (const [split, q] of Object.entries(splits || {})) {
        const a = (after[model] || {})[split];
        const pair = (k) => (a ? `${fmt(q[k])} → ${fmt(a[k])}` : fmt(q[k]));
        found.push([`${model} ${split}`, `ECE ${pair("ece")}, NLL ${pair("nll")}, Brier ${pair("brier")}`]);
      }
    }
  } else if (typeof st === "number") {
    found.push(["score temperature", fmt(st)]);
  }
  for (const [model, splits] of Object.entries(version.metrics || {})) {
    for (const [split, m] of Object.entries(splits || {})) {
      for (const [k, val] of Object.entries(m || {})) {
        if (typeof val === "number" && /^(ece|nll|brier)$/i.test(k)) found.push([`${model} ${split} ${k}`, fmt(val)]);
      }
    }
  }
  return found;
}

function calibrationBlock(version) {
  const found = calibrationOf(version);
  const block = el("div", { class: "calibration" });
  block.append(el("h5", {}, "Calibration"));
  if (!found.length) {
    block.append(el("p", { class: "muted" }, "No score temperature or calibration error recorded in this bundle."));
    return block;
  }
  const list = el("ul");
  for (const [k, text] of found) list.append(el("li", {}, `${k}: ${text}`));
  block.append(list);
  return block;
}

// The test-split confusion matrix of the served student (rows: true, columns: predicted).
function confusionBlock(version) {
  const metrics = version.metrics || {};
  const labels = version.labels || [];
  for (const model of ["student", "student-int8", ...Object.keys(metrics)]) {
    const m = (metrics[model] || {}).test;
    if (!m || !Array.isArray(m.confusion)) continue;
    const block = el("div", { class: "confusion-block" });
    block.append(el("h5", {}, `Confusion matrix (${model}, test; rows: true, columns: predicted)`));
    const table = el("table", { class: "compact confusion", "data-model": model });
    const head = el("tr");
    head.append(el("th", {}, ""));
    for (const label of labels) head.append(el("th", { scope: "col" }, label));
    table.append(head);
    m.confusion.forEach((counts, i) => {
      const row = el("tr");
      row.append(el("th", { scope: "row" }, labels[i] ?? String(i)));
      counts.forEach((c, j) => row.append(el("td", i === j ? { class: "diagonal" } : {}, c)));
      table.append(row);
    });
    block.append(table);
    return block;
  }
  return el("p", { class: "muted" }, "No confusion matrix (the bundle was exported without labelled test texts).");
}

// A line chart as an SVG polyline; points are [x, y].
function lineChart(title, points) {
  const figure = el("figure", { class: "curve-figure" });
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 100 40");
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("class", "curve");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", title);
  const xs = points.map((p) => p[0]);
  const ys = points.map((p) => p[1]);
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const sx = (x) => (x1 > x0 ? ((x - x0) / (x1 - x0)) * 98 + 1 : 50);
  const sy = (y) => (y1 > y0 ? 39 - ((y - y0) / (y1 - y0)) * 38 : 20);
  const line = document.createElementNS(ns, "polyline");
  line.setAttribute("points", points.map((p) => `${sx(p[0]).toFixed(2)},${sy(p[1]).toFixed(2)}`).join(" "));
  line.setAttribute("vector-effect", "non-scaling-stroke");
  svg.append(line);
  figure.append(svg, el("figcaption", { class: "muted" },
    `${title}: ${fmt(ys[0])} → ${fmt(ys[ys.length - 1])} (min ${fmt(y0)}, max ${fmt(y1)})`));
  return figure;
}

function curvesBlock(version) {
  const curves = (version.provenance || {}).training_curves;
  const block = el("div", { class: "curves" });
  block.append(el("h5", {}, "Training curves"));
  const drawn = [["loss", "training loss per step"], ["dev_accuracy", "dev accuracy per epoch"],
    ["dev_macro_f1", "dev macro-F1 per epoch"]].filter(([k]) => curves && (curves[k] || []).length);
  if (!drawn.length) {
    block.append(el("p", { class: "muted" }, "No training curves in this bundle (not trained by a run here)."));
    return block;
  }
  for (const [k, title] of drawn) block.append(lineChart(title, curves[k]));
  return block;
}

async function changeVersions(method, path, body, what) {
  const status = document.getElementById("model-details-status");
  try {
    await request(method, path, body);
    status.textContent = `${what}: done.`;
  } catch (err) {
    status.textContent = `${what} refused${err.status ? ` (${err.status})` : ""}: ${err.message}`;
    return;
  }
  await showModel(openModel, false);
  await loadModels();
}

function renderVersion(name, v) {
  const article = el("article", { class: "version", "data-version": v.version });
  const title = el("h4");
  const tags = [v.status];
  if (v.is_default) tags.push("default");
  if (v.pinned) tags.push("pinned");
  // Held back by the publish gate: listed, served only by name or once an admin pins it.
  if (v.held) tags.push(`held: ${v.held}`);
  title.append(`${v.version} (${tags.join(", ")})`);
  // A version on disk but not in memory (loaded on its first request) can be pinned too.
  if (isAdmin && v.status !== "failed" && !v.is_default) {
    const pin = el("button", { type: "button", class: "small pin" }, "Make default");
    pin.addEventListener("click", () => changeVersions(
      "PUT", `models/${encodeURIComponent(name)}/default`, { version: v.version },
      `Pin ${v.version}`));
    title.append(pin);
  }
  article.append(title);
  if (v.error) article.append(el("p", { class: "status" }, `Cannot load: ${v.error}`));
  if (v.status !== "loaded") return article;
  const meta = [`labels: ${(v.labels || []).join(", ")}`, v.text_pair ? "text pairs" : "single texts"];
  if (v.created_at) meta.push(`created ${new Date(v.created_at).toLocaleString()}`);
  article.append(el("p", { class: "muted" }, meta.join(" · ")));
  article.append(el("h5", {}, "Metrics"), metricsTable(v.metrics), calibrationBlock(v),
    confusionBlock(v), curvesBlock(v));
  return article;
}

async function showModel(name, scroll = true) {
  openModel = name;
  const box = document.getElementById("model-details");
  const status = document.getElementById("model-details-status");
  const versions = document.getElementById("versions");
  const actions = document.getElementById("model-actions");
  box.hidden = false;
  document.getElementById("model-details-heading").textContent = `Model ${name}`;
  try {
    const info = await request("GET", `models/${encodeURIComponent(name)}`);
    versions.replaceChildren(...(info.versions || []).map((v) =>
      renderVersion(name, { ...v, pinned: v.version === info.pinned_version })));
    actions.replaceChildren();
    if (isAdmin) {
      const back = el("button", { type: "button", class: "small rollback" }, "Roll back");
      back.addEventListener("click", () => changeVersions(
        "POST", `models/${encodeURIComponent(name)}/rollback`, undefined, "Rollback"));
      actions.append(back);
      if (info.pinned_version) {
        const unpin = el("button", { type: "button", class: "small unpin" },
          `Unpin ${info.pinned_version}`);
        unpin.addEventListener("click", () => changeVersions(
          "DELETE", `models/${encodeURIComponent(name)}/default`, undefined, "Unpin"));
        actions.append(unpin);
      }
    }
    if (scroll) box.scrollIntoView({ block: "nearest" });
  } catch (err) {
    versions.replaceChildren();
    status.textContent = `Cannot describe ${name}: ${err.message}`;
  }
}

// ---- One job --------------------------------------------------------------------------

let openJob = null;

const seconds = (s) => (s >= 90 ? `${(s / 60).toFixed(1)} min` : `${Number(s).toFixed(0)} s`);

function renderJob(job) {
  const facts = document.getElementById("job-facts");
  const p = job.progress || {};
  const rows = [["State", job.error ? `${job.state}: ${job.error}` : job.state]];
  if (p.stage) rows.push(["Stage", `${p.stage}${p.total ? ` ${p.done}/${p.total}` : ""}${p.message ? ` — ${p.message}` : ""}`]);
  const fraction = job.state === "succeeded" ? 1 : Number(p.fraction || 0);
  rows.push(["Progress", percent(fraction)]);
  // Elapsed time and ETA where the server reports them.
  const elapsed = p.elapsed_s ?? job.elapsed_s;
  const eta = p.eta_s ?? job.eta_s;
  if (typeof elapsed === "number") rows.push(["Elapsed", seconds(elapsed)]);
  if (typeof eta === "number") rows.push(["Time left (estimate)", seconds(eta)]);
  const timings = Object.entries(job.stage_seconds || {}).map(([k, v]) => `${k} ${seconds(v)}`);
  if (timings.length) rows.push(["Stage times", timings.join(", ")]);
  if (job.published_model) rows.push(["Published", `${job.published_model} ${job.published_version || ""}`]);
  const metrics = Object.entries(job.metrics || {}).filter(([, v]) => typeof v === "number");
  if (metrics.length) rows.push(["Metrics", metrics.map(([k, v]) => `${k} ${fmt(v)}`).join(", ")]);
  if (job.created_at) rows.push(["Created", new Date(job.created_at).toLocaleString()]);
  facts.replaceChildren();
  for (const [k, v] of rows) facts.append(el("dt", {}, k), el("dd", {}, v));
}

async function loadJobLog(id) {
  const log = document.getElementById("job-log");
  try {
    const reply = await request("GET", `jobs/${encodeURIComponent(id)}/logs`);
    const text = typeof reply === "string" ? reply
      : (reply && (reply.log ?? reply.text ?? (reply.lines || []).join("\n"))) || "";
    log.textContent = text || "(the log is empty)";
  } catch (err) {
    log.textContent = err.status === 404
      ? `No log served for this job (${err.message}).`
      : `Cannot read the log: ${err.message}`;
  }
}

async function showJob(id) {
  openJob = id;
  const box = document.getElementById("job-detail");
  box.hidden = false;
  box.dataset.job = id;
  document.getElementById("job-detail-heading").textContent = `Job ${id}`;
  try {
    renderJob(await request("GET", `jobs/${encodeURIComponent(id)}`));
  } catch (err) {
    document.getElementById("job-facts").replaceChildren(el("dt", {}, "Error"), el("dd", {}, err.message));
  }
  await loadJobLog(id);
}

function start() {
  document.getElementById("classify-form").addEventListener("submit", classify);
  document.getElementById("models-refresh").addEventListener("click", loadModels);
  document.getElementById("model").addEventListener("change", updateForm);
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
    if (document.visibilityState === "visible") {
      loadJobs();
      if (openJob) loadJobLog(openJob);
    }
  }, JOBS_POLL_MS);
}

document.addEventListener("DOMContentLoaded", start);
