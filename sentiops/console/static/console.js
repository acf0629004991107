// SentiOps console: plain JavaScript over the console's JSON API (/api/*), uPlot for charts.
// Every value from the API is put in the page as text (never as HTML).
"use strict";

const REFRESH_MS = 10000;
const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#4b5563",
  "#db2777", "#65a30d", "#7c3aed", "#0d9488", "#ca8a04"];
const state = { config: null, charts: {}, ready: { status: false, charts: 0 } };
window.sentiops = state;  // for people poking around (and the browser test)

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined) continue;
    if (k === "class") node.className = v; else node.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}
const fmt = (x, d = 3) => (x === null || x === undefined || Number.isNaN(x)) ? "–" :
  (typeof x === "number" ? x.toFixed(d) : String(x));
const pct = (x) => (x === null || x === undefined) ? "–" : `${(100 * x).toFixed(0)}%`;
const when = (iso) => iso ? el("td", { class: "nowrap", title: iso },
  iso.replace("T", " ").slice(0, 16) + " UTC") : "–";
const badge = (text, cls) => el("span", { class: `badge ${cls || text}` }, text);

async function api(path, options) {
  const resp = await fetch(path, options);
  let body = null;
  try { body = await resp.json(); } catch (e) { body = { error: `HTTP ${resp.status}` }; }
  if (!resp.ok) {
    const err = new Error(body.error || `HTTP ${resp.status}`);
    err.hint = body.hint; err.status = resp.status;
    throw err;
  }
  return body;
}

function table(headers, rows) {
  return el("table", {},
    el("thead", {}, el("tr", {}, headers.map((h) => el("th", {}, h)))),
    el("tbody", {}, rows.map((r) => el("tr", {}, r.map((c) =>
      (c instanceof Node && c.tagName === "TD") ? c : el("td", {}, c))))));
}
const num = (x, d) => el("td", { class: "num" }, fmt(x, d));

function fill(id, ...nodes) {
  const body = document.querySelector(`#${id} .body`);
  body.replaceChildren(...nodes.flat());
}

function unavailable(section) {
  return el("div", { class: "unavailable" }, section.error);
}

// ------------------------------------------------------------------ links
function mlflowLink(path, text) {
  const base = state.config && state.config.mlflow_url;
  return base ? el("a", { href: `${base}/#/${path}`, target: "_blank", rel: "noopener" }, text) : text;
}

function renderLinks(cfg) {
  const nav = document.getElementById("links");
  const items = [];
  if (cfg.mlflow_url) items.push(el("a", { href: `${cfg.mlflow_url}/#/models/${cfg.registered_model}`,
    target: "_blank", rel: "noopener", id: "mlflow-link" }, "MLflow UI"));
  else items.push(el("span", { class: "muted", title: `mlflow ui --backend-store-uri ${cfg.tracking_uri}` },
    "MLflow UI: not configured (--mlflow-url)"));
  if (cfg.prometheus_url) items.push(el("a", { href: cfg.prometheus_url, target: "_blank", rel: "noopener" }, "Prometheus"));
  if (cfg.predictor_url) items.push(el("a", { href: `${cfg.predictor_url}/v2/models/${cfg.model_name}`,
    target: "_blank", rel: "noopener" }, "predictor"));
  if (cfg.labelstudio_url) items.push(el("a", { href: `${cfg.labelstudio_url}/projects`, target: "_blank",
    rel: "noopener", id: "labelstudio-link" }, "Label Studio"), el("span", { id: "agreement", class: "muted" }));
  nav.replaceChildren(...items);
}

// annotators' agreement (Krippendorff's alpha per project) beside the Label Studio link
async function refreshAgreement() {
  const span = document.getElementById("agreement");
  if (!span) return;
  try {
    const s = await api("/api/labelling");
    span.textContent = s.ok && s.data.length ? "agreement α " + s.data.map((r) =>
      `${r.project} ${fmt(r.alpha, 2)}${r.held_for_review ? ` (${r.held_for_review} held)` : ""}`).join(" · ") : "";
  } catch (e) { span.textContent = ""; }
}

// ------------------------------------------------------------------ try a text
// labels (and predictions, when the predictor closes reads) need the person's token: typed
// once, kept only in this tab's session (sessionStorage), sent on to the predictor
function withToken() {
  const input = document.getElementById("token");
  const token = input.value.trim() || sessionStorage.getItem("sentiops-token") || "";
  if (input.value.trim()) sessionStorage.setItem("sentiops-token", token);
  input.value = "";
  const headers = { "content-type": "application/json" };
  if (token) headers.authorization = `Bearer ${token}`;
  return headers;
}

async function classify(event) {
  event.preventDefault();
  const text = document.getElementById("text").value;
  const button = document.getElementById("classify");
  const error = document.getElementById("try-error");
  button.disabled = true;
  error.hidden = true;
  try {
    const r = await api("/api/predict", { method: "POST", headers: withToken(),
      body: JSON.stringify({ text }) });
    renderPrediction(r);
  } catch (e) {
    if (e.status === 401 || e.status === 403) sessionStorage.removeItem("sentiops-token");
    document.getElementById("result").hidden = true;
    error.replaceChildren(e.message, e.hint ? el("div", { class: "muted small" }, e.hint) : null);
    error.hidden = false;
  } finally {
    button.disabled = false;
  }
}

function renderPrediction(r) {
  const label = document.getElementById("label");
  label.textContent = r.label;
  label.className = `label ${r.label}`;
  document.getElementById("score").textContent = `p = ${fmt(r.score)}`;
  document.getElementById("version").textContent =
    `model v${r.model_version || "?"} · request id ${r.request_id}`;
  const probs = Object.entries(r.probabilities).sort((a, b) => b[1] - a[1]);
  document.getElementById("probabilities").replaceChildren(...probs.map(([k, p], i) =>
    el("div", { class: "bar", "data-label": k }, el("span", {}, k),
      el("div", {}, el("div", { class: i === 0 ? "fill top" : "fill", style: `width:${(100 * p).toFixed(1)}%` })),
      el("span", { class: "num" }, fmt(p)))));
  const box = document.getElementById("attributions");
  const method = document.getElementById("attr-method");
  if (r.attributions && r.attributions.length) {
    const peak = Math.max(...r.attributions.map((a) => Math.abs(a.attribution)), 1e-9);
    box.replaceChildren(el("span", { class: "muted small" }, `why ${r.label}: `),
      ...r.attributions.map((a) => {
        const alpha = (0.15 + 0.6 * Math.abs(a.attribution) / peak).toFixed(2);
        const rgb = a.attribution >= 0 ? "22,163,74" : "220,38,38";
        return el("span", { class: "token", style: `background:rgba(${rgb},${alpha})`,
          title: `attribution ${a.attribution.toFixed(4)}` }, a.token);
      }));
    method.textContent = `${r.method}: green pushes towards ${r.label}, red away from it`;
  } else {
    box.replaceChildren();
    method.textContent = r.explain_error ? `no attributions: ${r.explain_error}` : "no attributions";
  }
  renderFeedback(r);
  document.getElementById("result").hidden = false;
}

function renderFeedback(r) {
  const out = document.getElementById("feedback-result");
  out.replaceChildren();
  const buttons = Object.keys(r.probabilities).sort().map((label) => {
    const b = el("button", { type: "button", "data-label": label }, label);
    b.addEventListener("click", async () => {
      for (const other of buttons) other.disabled = true;
      try {
        const f = await api("/api/feedback", { method: "POST", headers: withToken(),
          body: JSON.stringify({ id: r.request_id, label }) });
        b.classList.add("given");
        out.replaceChildren(el("span", { class: "ok", id: "feedback-ok" },
          `label "${label}" stored for request ${f.id}; live accuracy counts it`));
      } catch (e) {
        for (const other of buttons) other.disabled = false;
        if (e.status === 401 || e.status === 403) sessionStorage.removeItem("sentiops-token");
        out.replaceChildren(el("span", { class: "error", id: "feedback-error" }, e.message));
      }
    });
    return b;
  });
  document.getElementById("feedback-buttons").replaceChildren(...buttons);
}

// ------------------------------------------------------------------ status panels
function renderRegistry(s) {
  document.getElementById("registry-source").textContent = s.source;
  if (!s.ok) return fill("registry", unavailable(s));
  const d = s.data;
  const aliasRows = d.aliases.map((a) => [badge(a.alias), mlflowLink(`models/${d.model}/versions/${a.version}`, `v${a.version}`),
    a.gate ? badge(a.gate) : "–", num(a.gate_delta_macro_f1, 4), when(a.since), (a.reason || "").slice(0, 90)]);
  const versionRows = d.versions.map((v) => [mlflowLink(`models/${d.model}/versions/${v.version}`, `v${v.version}`),
    v.aliases.map((a) => badge(a)), v.stage ? badge(v.stage) : "–", v.gate ? badge(v.gate) : "–",
    num(v.gate_delta_macro_f1, 4), (v.gate_reasons || v.reason || "").slice(0, 90)]);
  fill("registry",
    aliasRows.length ? table(["alias", "version", "gate", "Δ macro-F1", "since", "reason"], aliasRows)
      : el("div", { class: "muted" }, s.notes.join("; ")),
    versionRows.length ? el("details", {}, el("summary", { class: "small" }, `all versions (${versionRows.length} newest)`),
      table(["version", "aliases", "stage", "gate", "Δ macro-F1", "reasons"], versionRows)) : null);
}

function stepsTable(steps) {
  return table(["step", "traffic", "verdict", "score", "failed checks"], steps.map((s, i) =>
    [String(i + 1), `${s.traffic}%`, badge(s.verdict, s.verdict === "rollback" ? "fail" : "pass"),
      num(s.score, 0), s.failed.join(", ") || "–"]));
}

function renderRollout(s) {
  if (!s.ok) return fill("rollout", unavailable(s));
  const nodes = [];
  const p = s.data.in_progress;
  if (p) {
    const last = p.steps[p.steps.length - 1];
    nodes.push(el("div", { id: "rollout-progress" }, el("strong", {}, "in progress: "),
      `canary v${p.canary_version} vs stable v${p.stable_version}, plan ${(p.plan || []).join("/")}%`,
      last ? ` — step ${p.steps.length} at ${last.traffic}%: ${last.verdict}` : " — first step running",
      el("span", { class: "muted small" }, ` (updated ${fmt(p.updated_seconds_ago, 0)} s ago)`)));
    if (p.steps.length) nodes.push(stepsTable(p.steps));
  }
  const d = s.data.last;
  if (d) {
    nodes.push(el("div", { id: "rollout-last" }, el("strong", {}, "last decision: "),
      badge(d.decision), ` canary v${d.canary_version} vs stable v${d.stable_version || "–"}, ended `,
      d.ended_at ? d.ended_at.replace("T", " ").slice(0, 16) + " UTC" : "–"));
    if (d.reasons && d.reasons.length) nodes.push(el("ul", { class: "small" }, d.reasons.map((r) => el("li", {}, r))));
    nodes.push(stepsTable(d.steps));
  }
  if (!nodes.length) nodes.push(el("div", { class: "muted" }, s.notes.join("; ")));
  fill("rollout", nodes);
}

function renderTraffic(s) {
  if (!s.ok) return fill("traffic", unavailable(s));
  const up = s.data.targets.filter((t) => t.up).length;
  fill("traffic",
    s.data.versions.length ? table(["model version", "predictions/s", "share", "errors/s"],
      s.data.versions.map((v) => [`v${v.model_version}`, num(v.predictions_per_s, 2), pct(v.share), num(v.errors_per_s, 2)]))
      : el("div", { class: "muted" }, s.notes.join("; ")),
    el("div", { class: "muted small" }, `scrape targets up: ${up}/${s.data.targets.length}`));
}

function renderDrift(s) {
  if (!s.ok) return fill("drift", unavailable(s));
  if (!s.data.length) return fill("drift", el("div", { class: "muted" }, s.notes.join("; ")));
  fill("drift", table(["version", "combined", "embedding", "label mix", "confidence", "flag"],
    s.data.map((r) => [`v${r.model_version}`, num(r.combined), num(r.embedding), num(r.label_mix), num(r.confidence),
      r.drift === null ? "–" : (r.drift ? badge(`drift ×${r.consecutive_windows || 1}`, "drift") : badge("ok", "pass"))])),
    el("div", { class: "muted small" }, "p-values of the last tested window (low = drift); drift ×N = N drifting windows in a row"));
}

function renderEstimate(s) {
  if (!s.ok) return fill("estimate", unavailable(s));
  if (!s.data.length) return fill("estimate", el("div", { class: "muted" }, s.notes.join("; ")));
  const band = (v, lo, hi) => el("td", { class: "num", title: `95 % ${fmt(lo)}–${fmt(hi)}` },
    `${fmt(v)} (${fmt(lo, 2)}–${fmt(hi, 2)})`);
  fill("estimate", table(["version", "estimated", "macro-F1", "validation", "realized", "error"],
    s.data.map((r) => [`v${r.model_version}`,
      band(r.estimated_accuracy, r.estimated_accuracy_low, r.estimated_accuracy_high),
      band(r.estimated_macro_f1, r.estimated_macro_f1_low, r.estimated_macro_f1_high),
      num(r.validation_accuracy), num(r.live_accuracy),
      r.estimate_error === null ? "–" : el("td", { class: "num" },
        `${r.estimate_error >= 0 ? "+" : ""}${fmt(r.estimate_error)} (n=${fmt(r.estimate_error_labels, 0)})`)])),
    el("div", { class: "muted small" }, "last window's accuracy estimated from the calibrated " +
      "probabilities (assumes p(label | text) unchanged: too high under a new domain); realized " +
      "= live accuracy of the random sample; error = estimated minus realized on the labelled rows"));
}

function renderAccuracy(s) {
  if (!s.ok) return fill("live_accuracy", unavailable(s));
  if (!s.data.length) return fill("live_accuracy", el("div", { class: "muted" }, s.notes.join("; ")));
  const ORDER = ["accuracy", "macro_f1", "labels"];
  const rank = (m) => (ORDER.indexOf(m) + 1 || ORDER.length + 1);
  const metrics = [...new Set(s.data.flatMap((r) => Object.keys(r).filter((k) => k !== "model_version")))]
    .sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
  fill("live_accuracy", table(["model version", ...metrics.map((m) => m.replace("_", "-"))],
    s.data.map((r) => [`v${r.model_version}`, ...metrics.map((m) => num(r[m], m === "labels" ? 0 : 3))])),
    el("div", { class: "muted small" }, "from people's labels for earlier predictions (feedback API)"));
}

async function refreshStatus() {
  try {
    const s = await api("/api/status");
    renderRegistry(s.registry); renderRollout(s.rollout); renderTraffic(s.traffic);
    renderDrift(s.drift); renderEstimate(s.estimate); renderAccuracy(s.live_accuracy);
    document.getElementById("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (e) {
    for (const id of ["registry", "rollout", "traffic", "drift", "estimate", "live_accuracy"])
      fill(id, el("div", { class: "error" }, `console API: ${e.message}`));
  }
  state.ready.status = true;
}

// ------------------------------------------------------------------ charts
async function refreshChart(box) {
  const kind = box.dataset.kind;
  const minutes = document.getElementById("minutes").value;
  const plot = box.querySelector(".plot");
  const note = box.querySelector(".note");
  box.querySelector("h3").textContent = state.config.series[kind];
  try {
    const d = await api(`/api/series?kind=${kind}&minutes=${minutes}`);
    const points = d.series.reduce((n, s) => n + s.values.filter((v) => v !== null).length, 0);
    box.dataset.points = String(points);
    note.textContent = points ? d.promql : `no data in the last ${minutes} min (${d.promql})`;
    const data = [d.t, ...d.series.map((s) => s.values)];
    // one colour per model version; drift's four tests of a version differ by dash
    const versions = [...new Set(d.series.map((s) => s.label.split(" ")[0]))];
    const DASH = { combined: undefined, embedding: [6, 3], label_mix: [2, 3], confidence: [8, 3, 2, 3],
      estimated: [6, 3], low: [2, 3], high: [2, 3], realized: undefined };
    const BOLD = [undefined, "combined", "estimated", "realized"];
    const opts = {
      width: Math.max(300, plot.clientWidth || box.clientWidth), height: 200,
      scales: { x: { time: true }, y: kind === "traffic" ? {} : { range: [0, 1] } },
      series: [{}, ...d.series.map((s) => {
        const [version, test] = s.label.split(" ");
        return { label: s.label, stroke: COLORS[versions.indexOf(version) % COLORS.length],
          width: BOLD.includes(test) ? 2 : 1, dash: test ? DASH[test] : undefined,
          spanGaps: false };
      })],
      axes: [{}, { size: 45 }],
      legend: { live: false },
    };
    const old = state.charts[kind];
    if (old && old.series.length === opts.series.length) {
      old.setData(data);
    } else {
      if (old) old.destroy();
      plot.replaceChildren();
      state.charts[kind] = new uPlot(opts, data, plot);
    }
  } catch (e) {
    box.dataset.points = "0";
    if (state.charts[kind]) { state.charts[kind].destroy(); delete state.charts[kind]; }
    plot.replaceChildren(el("div", { class: "unavailable" }, e.message));
    note.textContent = e.hint || "";
  }
}

async function refreshCharts() {
  await Promise.all([...document.querySelectorAll(".chart")].map(refreshChart));
  state.ready.charts += 1;
}

async function main() {
  document.getElementById("try-form").addEventListener("submit", classify);
  document.getElementById("minutes").addEventListener("change", refreshCharts);
  state.config = await api("/api/config");
  renderLinks(state.config);
  document.getElementById("text").maxLength = state.config.max_chars;
  await Promise.all([refreshStatus(), refreshCharts(), refreshAgreement()]);
  state.readyAt = performance.now();
  setInterval(() => { refreshStatus(); refreshCharts(); refreshAgreement(); }, REFRESH_MS);
}

main();
