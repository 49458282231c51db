// berth console: the operators' pages over berth's own REST API, in the browser, with no
// library and no build step. Every call carries the tab's bearer token; the API decides what
// a role may do, and this page only hides the controls a role could not use.
"use strict";

const ROLES = { viewer: 0, operator: 1, admin: 2 };
const FINAL_TASK = ["completed", "failed", "cancelled", "interrupted"];
const COLORS = ["#1f5fbf", "#c2410c", "#15803d", "#7e22ce", "#b91c1c", "#0e7490"];
const TOKEN_KEY = "berth.token";

let session = loadSession();
let timer = null;

// ---- Session: the token lives in this tab's sessionStorage, never in a cookie. ----

function loadSession() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (!token) return null;
  try {
    const claims = JSON.parse(atob(token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
    if (!(claims.role in ROLES) || claims.exp * 1000 < Date.now()) throw new Error("expired");
    return { token, role: claims.role, sub: claims.sub };
  } catch (_) {
    sessionStorage.removeItem(TOKEN_KEY);
    return null;
  }
}

function can(role) {
  return session !== null && ROLES[session.role] >= ROLES[role];
}

function logout(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  session = null;
  render(message);
}

class ApiError extends Error {
  constructor(status, body) {
    const detail = body && body.error ? body.error : {};
    super(detail.message || (body && body.error_description) || `the service answered ${status}`);
    this.status = status;
    this.field = detail.field || null;
  }
}

// Calls the API as the logged-in user; a 401 (an expired token, a restarted service with a new
// key) ends the session and asks for the password again, then returns to the same page.
async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (session) headers.Authorization = `Bearer ${session.token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(`/api/v1${path}`, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (_) {
    throw new ApiError(0, { error: { message: "the service does not answer; retrying" } });
  }
  if (response.status === 401 && session) {
    logout("Your session ended; log in again.");
    throw new ApiError(401, null);
  }
  const type = response.headers.get("content-type") || "";
  const payload = type.includes("json") ? await response.json() : await response.text();
  if (!response.ok) throw new ApiError(response.status, typeof payload === "object" ? payload : null);
  return payload;
}

// ---- Building the page: elements only, text only through textContent. ----

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    // Through the CSSOM: the page's policy refuses inline style attributes.
    else if (key === "style") node.style.cssText = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const svgNs = "http://www.w3.org/2000/svg";
function svg(tag, attrs, ...children) {
  const node = document.createElementNS(svgNs, tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function notice(text) {
  const line = document.getElementById("notice");
  line.textContent = text || "";
  if (text) setTimeout(() => { if (line.textContent === text) line.textContent = ""; }, 6000);
}

function fmt(value, digits = 2) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  return Number(value).toLocaleString("en", { maximumFractionDigits: digits });
}

function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "–";
}

function statusCell(status) {
  return el("span", { class: `status status-${status}` }, status.replace("_", " "));
}

// A control a role below `role` does not see; the API refuses it to them anyway.
function gated(role, node) {
  if (!can(role)) return null;
  node.dataset.needs = role;
  return node;
}

function table(headers, rows, attrs) {
  return el("div", { class: "scroll" }, el("table", attrs || {},
    el("thead", {}, el("tr", {}, headers.map((h) => el("th", { scope: "col", class: h.num ? "num" : null }, h.label || h)))),
    el("tbody", {}, rows)));
}

async function download(path, filename) {
  const response = await fetch(`/api/v1${path}`, { headers: { Authorization: `Bearer ${session.token}` } });
  if (response.status === 401) return logout("Your session ended; log in again.");
  if (!response.ok) return notice(`download failed: ${response.status}`);
  const url = URL.createObjectURL(await response.blob());
  const link = el("a", { href: url, download: filename });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

// ---- A line chart as SVG: series of [x, y] points, and dashed reference levels. ----

function lineChart(id, title, series, references, xLabel) {
  const width = 720, height = 260, left = 64, right = 12, top = 14, bottom = 36;
  const all = series.flatMap((s) => s.points);
  const ys = all.map((p) => p[1]).concat((references || []).map((r) => r.value));
  if (all.length === 0) return el("p", { class: "muted", id }, `${title}: no points yet.`);
  let [x0, x1] = [Math.min(...all.map((p) => p[0])), Math.max(...all.map((p) => p[0]))];
  let [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  if (x1 === x0) x1 = x0 + 1;
  if (y1 === y0) { y0 -= 1; y1 += 1; }
  const pad = (y1 - y0) * 0.05;
  y0 -= pad; y1 += pad;
  const sx = (x) => left + ((x - x0) / (x1 - x0)) * (width - left - right);
  const sy = (y) => top + (1 - (y - y0) / (y1 - y0)) * (height - top - bottom);
  const chart = svg("svg", { id, class: "chart", viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": title },
    svg("title", {}, title),
    svg("line", { class: "axis", x1: left, y1: height - bottom, x2: width - right, y2: height - bottom }),
    svg("line", { class: "axis", x1: left, y1: top, x2: left, y2: height - bottom }),
    [y0 + pad, (y0 + y1) / 2, y1 - pad].map((y) =>
      svg("text", { x: left - 6, y: sy(y) + 4, "text-anchor": "end" }, fmt(y, 3))),
    [x0, (x0 + x1) / 2, x1].map((x) =>
      svg("text", { x: sx(x), y: height - bottom + 16, "text-anchor": "middle" }, fmt(x, 0))),
    svg("text", { x: (left + width) / 2, y: height - 4, "text-anchor": "middle" }, xLabel));
  (references || []).forEach((r, i) => {
    chart.append(svg("path", {
      class: "reference", "data-series": r.name, stroke: COLORS[(series.length + i) % COLORS.length],
      d: `M${sx(x0)},${sy(r.value)}H${sx(x1)}`,
    }));
  });
  series.forEach((s, i) => {
    const d = s.points.map((p, j) => `${j ? "L" : "M"}${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join("");
    chart.append(svg("path", { class: "series", "data-series": s.name, stroke: COLORS[i % COLORS.length], d }));
  });
  const legend = el("div", { class: "legend" },
    series.map((s, i) => el("span", {}, el("span", { class: "swatch", style: `background:${COLORS[i % COLORS.length]}` }), s.name)),
    (references || []).map((r, i) => el("span", {},
      el("span", { class: "swatch", style: `background:${COLORS[(series.length + i) % COLORS.length]}` }),
      `${r.name} (${fmt(r.value, 3)})`)));
  return el("figure", { class: "card" }, el("figcaption", {}, title), chart, legend);
}

// ---- Pages ----

const pages = [
  { pattern: /^#\/training\/([0-9a-f]{24})$/, page: taskPage },
  { pattern: /^#\/training$/, page: trainingPage },
  { pattern: /^#\/models$/, page: modelsPage },
  { pattern: /^#\/cluster$/, page: clusterPage },
  { pattern: /^#\/deployments(?:\?model=[0-9a-f]{24})?$/, page: deploymentsPage },
];

function render(message) {
  clearInterval(timer);
  timer = null;
  const main = document.getElementById("main");
  main.replaceChildren();
  const loggedIn = session !== null;
  document.getElementById("nav").hidden = !loggedIn;
  document.getElementById("logout").hidden = !loggedIn;
  const who = document.getElementById("who");
  who.hidden = !loggedIn;
  who.textContent = loggedIn ? `${session.sub} (${session.role})` : "";
  if (!loggedIn) return loginPage(main, message);
  const route = pages.find((p) => p.pattern.test(location.hash));
  if (!route) {
    location.replace("#/training");
    return;
  }
  const section = location.hash.split(/[/?]/)[1];
  for (const link of document.querySelectorAll("#nav a")) {
    if (link.getAttribute("href") === `#/${section}`) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  route.page(main, ...location.hash.match(route.pattern).slice(1));
  if (message) notice(message);
}

// Runs `refresh` now and every `ms` while the page stays open; errors go to the notice line.
function every(ms, refresh) {
  const run = () => refresh().catch((e) => { if (e.status !== 401) notice(e.message); });
  run();
  timer = setInterval(run, ms);
}

function loginPage(main, message) {
  const error = el("p", { class: "error", id: "login-error", role: "alert" }, message || "");
  const user = el("input", { id: "username", name: "username", autocomplete: "username", required: true });
  const password = el("input", { id: "password", name: "password", type: "password", autocomplete: "current-password", required: true });
  const form = el("form", { class: "card login", id: "login-form", "aria-labelledby": "login-title" },
    el("h1", { id: "login-title" }, "Log in to berth"),
    el("div", { class: "field" }, el("label", { for: "username" }, "User"), user),
    el("div", { class: "field" }, el("label", { for: "password" }, "Password"), password),
    error,
    el("div", { class: "actions" }, el("button", { type: "submit" }, "Log in")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    const body = new URLSearchParams({ grant_type: "password", username: user.value, password: password.value });
    const response = await fetch("/api/v1/auth/token", { method: "POST", body }).catch(() => null);
    const answer = response ? await response.json().catch(() => ({})) : {};
    if (!response || !response.ok) {
      error.textContent = answer.error_description || "the service does not answer";
      return;
    }
    sessionStorage.setItem(TOKEN_KEY, answer.access_token);
    session = loadSession();
    render();
  });
  main.append(form);
  user.focus();
}

// -- Training: the task list with live progress, and the form that starts one. --

const TASK_FIELDS = ["agent", "scenario", "steps", "seed", "device", "hyperparameters"];

// The agents and shipped scenarios a task may name, as the API's own document lists them.
async function taskChoices() {
  const schemas = (await api("GET", "/openapi.json")).components.schemas;
  return { agents: schemas.Agent.enum, scenarios: schemas.CreateTask.properties.scenario.oneOf[0].enum };
}

function taskForm(choices) {
  const field = (name, label, control, wide) => el("div", { class: wide ? "field wide" : "field" },
    el("label", { for: `task-${name}` }, label), control,
    el("p", { class: "error", id: `task-${name}-error`, role: "alert" }));
  const options = (values) => values.map((v) => el("option", { value: v }, v));
  const form = el("form", { class: "card", id: "new-task", "aria-labelledby": "new-task-title", novalidate: true },
    el("h2", { id: "new-task-title" }, "Start a training task"),
    el("div", { class: "fields" },
      field("agent", "Agent", el("select", { id: "task-agent" }, options(choices.agents))),
      field("scenario", "Scenario", el("select", { id: "task-scenario" }, options(choices.scenarios))),
      field("steps", "Steps (empty: the agent's budget)", el("input", { id: "task-steps", inputmode: "numeric" })),
      field("seed", "Seed (empty: the scenario's)", el("input", { id: "task-seed", inputmode: "numeric" })),
      field("device", "Device", el("select", { id: "task-device" }, options(["cpu", "cuda"]))),
      field("hyperparameters", "Hyperparameters (JSON object; empty: the defaults)",
        el("textarea", { id: "task-hyperparameters", spellcheck: "false" }), true)),
    el("p", { class: "error", id: "task-form-error", role: "alert" }),
    el("div", { class: "actions" }, el("button", { type: "submit" }, "Start training")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    for (const name of TASK_FIELDS) {
      document.getElementById(`task-${name}-error`).textContent = "";
      document.getElementById(`task-${name}`).removeAttribute("aria-invalid");
    }
    const formError = document.getElementById("task-form-error");
    formError.textContent = "";
    const value = (name) => document.getElementById(`task-${name}`).value.trim();
    const body = { agent: value("agent"), scenario: value("scenario"), device: value("device") };
    // Numbers go as typed: the API names a field it refuses, and the form shows it there.
    for (const name of ["steps", "seed"]) {
      if (value(name) !== "") body[name] = /^-?\d+$/.test(value(name)) ? Number(value(name)) : value(name);
    }
    if (value("hyperparameters") !== "") {
      try {
        body.hyperparameters = JSON.parse(value("hyperparameters"));
      } catch (e) {
        return showFieldError("hyperparameters", `not JSON: ${e.message}`);
      }
    }
    try {
      const task = await api("POST", "/training", body);
      notice(`task ${task.id} queued`);
      location.hash = `#/training/${task.id}`;
    } catch (e) {
      if (e.status === 401) return;
      const field = (e.field || "").split(/[.[]/)[0];
      if (TASK_FIELDS.includes(field)) showFieldError(field, e.message);
      else formError.textContent = e.message;
    }
  });
  return form;
}

function showFieldError(name, message) {
  document.getElementById(`task-${name}-error`).textContent = message;
  const control = document.getElementById(`task-${name}`);
  control.setAttribute("aria-invalid", "true");
  control.setAttribute("aria-describedby", `task-${name}-error`);
  control.focus();
}

function cancelButton(task) {
  if (FINAL_TASK.includes(task.status)) return null;
  return gated("operator", el("button", {
    type: "button", class: "quiet", "aria-label": `Cancel task ${task.id}`,
    onclick: async () => {
      try {
        await api("POST", `/training/${task.id}/cancel`);
        notice(`task ${task.id}: cancel asked`);
      } catch (e) { notice(e.message); }
    },
  }, "Cancel"));
}

function progressCell(task) {
  if (!task.progress) return "–";
  const percent = Math.round(task.progress.fraction * 100);
  return el("span", {}, el("progress", { max: 100, value: percent, "aria-label": `task ${task.id} progress` }), ` ${percent}%`);
}

function trainingPage(main) {
  const list = el("div", { id: "tasks-list" });
  const form = el("div", { id: "new-task-slot" });
  main.append(el("h1", {}, "Training"), form, el("h2", {}, "Tasks"), list);
  if (can("operator")) taskChoices().then((choices) => form.replaceChildren(taskForm(choices))).catch((e) => notice(e.message));
  every(2000, async () => {
    const page = await api("GET", "/training?limit=50");
    const rows = page.items.map((t) => el("tr", { "data-task": t.id },
      el("td", {}, el("a", { href: `#/training/${t.id}` }, t.id.slice(-8))),
      el("td", {}, t.agent), el("td", {}, t.scenario.name), el("td", {}, statusCell(t.status)),
      el("td", {}, progressCell(t)),
      el("td", { class: "num" }, fmt(t.latest_metrics && t.latest_metrics.episodic_return, 3)),
      el("td", {}, t.created_by), el("td", {}, when(t.created_at)), el("td", {}, cancelButton(t))));
    list.replaceChildren(rows.length
      ? table(["Task", "Agent", "Scenario", "Status", "Progress", { label: "Return", num: true }, "By", "Queued", ""], rows, { id: "tasks" })
      : el("p", { class: "muted" }, "No tasks yet."));
  });
}

// -- One task: its curve while it trains, then its full log with the baselines' levels. --

function parseCsv(text) {
  const [head, ...lines] = text.trim().split("\n");
  const names = head.split(",");
  return lines.map((line) => {
    const cells = line.split(",");
    return Object.fromEntries(names.map((n, i) => [n, cells[i] === "" ? null : Number(cells[i])]));
  });
}

// The [x, y] points of one column of rows, where it has a number.
function column(rows, name, x = "global_step") {
  return rows.filter((r) => Number.isFinite(r[name])).map((r) => [r[x], r[name]]);
}

const LOSSES = ["td_loss", "policy_loss", "value_loss", "entropy"];

// The losses chart of rows (log rows, or curve points with `x` = "step"), if any has one.
function lossChart(rows, x, title) {
  const series = LOSSES.map((name) => ({ name, points: column(rows, name, x) })).filter((s) => s.points.length > 0);
  return series.length ? lineChart("losses", title, series, [], "step") : null;
}

function taskPage(main, id) {
  const head = el("div", { id: "task-head" });
  const charts = el("div", { id: "task-charts" });
  main.append(el("h1", {}, `Task ${id}`), head, charts);
  let finished = false;
  every(1000, async () => {
    if (finished) return;
    const task = await api("GET", `/training/${id}`);
    head.replaceChildren(el("section", { class: "card" },
      el("div", { class: "figures" },
        el("div", { class: "figure" }, "Status", el("b", { id: "task-status" }, statusCell(task.status))),
        el("div", { class: "figure" }, "Progress", el("b", {}, progressCell(task))),
        el("div", { class: "figure" }, "Agent", el("b", {}, task.agent)),
        el("div", { class: "figure" }, "Scenario", el("b", {}, task.scenario.name)),
        el("div", { class: "figure" }, "Seed", el("b", {}, task.seed)),
        el("div", { class: "figure" }, "Steps/s", el("b", {}, fmt(task.latest_metrics && task.latest_metrics.sps, 0)))),
      task.error ? el("p", { class: "error" }, task.error) : null,
      task.note ? el("p", { class: "muted" }, task.note) : null,
      el("h2", {}, "Hyperparameters"),
      el("pre", {}, JSON.stringify(task.hyperparameters || {}, null, 2)),
      el("div", { class: "actions" }, cancelButton(task),
        task.status === "completed" ? el("button", {
          type: "button", class: "quiet", onclick: () => download(`/training/${id}/log`, `task-${id}.csv`),
        }, "Download log (CSV)") : null,
        task.model_id ? el("a", { href: "#/models" }, `model ${task.model_id}`) : null)));
    if (task.status !== "completed") {
      const curve = task.curve || [];
      charts.replaceChildren(...[
        lineChart("curve", "Episodic return while training",
          [{ name: "episodic_return", points: column(curve, "episodic_return", "step") }], [], "step"),
        lossChart(curve, "step", "Losses of the latest update while training"),
      ].filter(Boolean));
    } else {
      finished = true;
      charts.replaceChildren(...(await finalCharts(task)));
    }
    if (FINAL_TASK.includes(task.status)) finished = true;
  });
}

async function finalCharts(task) {
  const rows = parseCsv(await api("GET", `/training/${task.id}/log`));
  const references = [];
  if (task.model_id) {
    const model = await api("GET", `/models/${task.model_id}`).catch(() => null);
    for (const row of (model && model.evaluation) || []) {
      if (["greedy", "spread", "oracle"].includes(row.policy)) references.push({ name: row.policy, value: row.reward });
    }
  }
  return [
    lineChart("curve", "Episodic return (full log); dashed: the baselines' mean return on the evaluation days",
      [{ name: "episodic_return", points: column(rows, "episodic_return") }], references, "step"),
    lossChart(rows, "global_step", "Losses (full log)"),
  ].filter(Boolean);
}

// -- Models: each with its evaluation against the baselines; download, plan, delete. --

function evaluationTable(rows) {
  return table(["Policy", { label: "Mean ms", num: true }, { label: "p95 ms", num: true }, { label: "SLO miss", num: true },
    { label: "Moves", num: true }, { label: "Reward", num: true }, { label: "Gap to oracle", num: true }],
  rows.map((r) => el("tr", {}, el("td", {}, r.policy), el("td", { class: "num" }, fmt(r.mean_latency_ms)),
    el("td", { class: "num" }, fmt(r.p95_latency_ms)), el("td", { class: "num" }, fmt(r.slo_miss, 4)),
    el("td", { class: "num" }, fmt(r.moves, 1)), el("td", { class: "num" }, fmt(r.reward, 3)),
    el("td", { class: "num" }, r.gap_to_oracle === null || r.gap_to_oracle === undefined ? "–" : `${fmt(r.gap_to_oracle * 100, 1)}%`))));
}

function modelsPage(main) {
  const list = el("div", { id: "models-list" });
  main.append(el("h1", {}, "Models"), list);
  const refresh = async () => {
    const page = await api("GET", "/models?limit=50");
    list.replaceChildren(...(page.items.length ? page.items.map((m) => el("section", { class: "card", "data-model": m.id },
      el("h2", {}, `${m.agent} on ${m.scenario.name}`, el("span", { class: "muted" }, ` · ${m.id}`)),
      el("p", { class: "muted" }, `${fmt(m.trained_steps, 0)} steps, seed ${m.seed}, ${fmt(m.weights_bytes / 1024, 0)} KiB, ${when(m.created_at)}`),
      evaluationTable(m.evaluation || []),
      el("div", { class: "actions" },
        el("button", { type: "button", class: "quiet", onclick: () => download(`/models/${m.id}/weights`, `model-${m.id}.berth`) }, "Download"),
        gated("admin", el("button", { type: "button", class: "quiet", onclick: () => { location.hash = `#/deployments?model=${m.id}`; } }, "Plan a deploy")),
        gated("admin", el("button", {
          type: "button", class: "danger", "aria-label": `Delete model ${m.id}`,
          onclick: async () => {
            if (!confirm(`Delete model ${m.id} and its weights?`)) return;
            try { await api("DELETE", `/models/${m.id}`); notice(`model ${m.id} deleted`); refresh(); } catch (e) { notice(e.message); }
          },
        }, "Delete"))))) : [el("p", { class: "muted" }, "No models yet: a completed training task stores one.")]));
  };
  refresh().catch((e) => notice(e.message));
}

// -- Cluster: replicas node by node and zone by zone, and latency over time. --

function meter(label, used, total) {
  const share = total > 0 ? Math.min(1, used / total) : 0;
  return el("div", {}, el("span", { class: "muted" }, `${label} ${fmt(used, 0)} / ${fmt(total, 0)}`),
    el("div", { class: "meter", role: "meter", "aria-label": label, "aria-valuemin": 0, "aria-valuemax": total, "aria-valuenow": used },
      el("span", { style: `width:${(share * 100).toFixed(1)}%` })));
}

function clusterPage(main) {
  const now = el("div", { id: "cluster-now" });
  const history = el("div", { id: "cluster-history" });
  main.append(el("h1", {}, "Cluster"), now, el("h2", {}, "Latency over the last hour"), history);
  let shown = null;
  every(3000, async () => {
    const snap = await api("GET", "/metrics");
    // A large cluster's map is redrawn only when the cluster moved on.
    const stamp = `${snap.timestamp}/${snap.tick}`;
    if (stamp === shown) return;
    shown = stamp;
    const byNode = {};
    for (const r of snap.replicas) (byNode[r.node] = byNode[r.node] || []).push(r);
    const zones = [...new Set(snap.nodes.map((n) => n.zone))].sort();
    now.replaceChildren(
      el("section", { class: "card figures" },
        el("div", { class: "figure" }, "Mean latency", el("b", { id: "latency-mean" }, `${fmt(snap.latency.mean_ms, 1)} ms`)),
        el("div", { class: "figure" }, "p95", el("b", {}, `${fmt(snap.latency.p95_ms, 1)} ms`)),
        el("div", { class: "figure" }, "SLO miss", el("b", {}, `${fmt(snap.latency.slo_miss * 100, 2)}%`)),
        el("div", { class: "figure" }, "Offered", el("b", {}, `${fmt(snap.latency.offered_rps, 0)} req/s`)),
        el("div", { class: "figure" }, "Source", el("b", {}, `${snap.source} · ${snap.scenario}`))),
      el("div", { class: "zones" }, zones.map((zone) => el("section", { "data-zone": zone },
        el("h2", {}, `Zone ${zone}`),
        el("div", { class: "nodes" }, snap.nodes.filter((n) => n.zone === zone).map((n) =>
          el("article", { class: n.ready ? "node" : "node down", "data-node": n.name },
            el("h3", {}, n.name, " ", el("span", { class: n.ready ? "ready-yes" : "ready-no" }, n.ready ? "Ready" : "Not ready")),
            n.gpus > 0 ? meter(`GPU ${n.gpu_model || ""}`, n.gpus_requested, n.gpus) : null,
            meter("CPU m", n.cpu_requested_millicores, n.cpu_allocatable_millicores),
            meter("Memory MiB", n.memory_requested_mib, n.memory_allocatable_mib),
            el("div", { class: "chips" }, (byNode[n.name] || []).map((r) =>
              el("span", { class: "chip", "data-replica": `${r.service}/${r.replica}` }, `${r.service} #${r.replica}`))))))))));
    const past = await api("GET", "/metrics/history?limit=500");
    const t0 = past.items.length ? Date.parse(past.items[0].timestamp) : 0;
    const minutes = (s) => (Date.parse(s.timestamp) - t0) / 60000;
    history.replaceChildren(lineChart("latency-history", "Latency (ms) against minutes since the first snapshot shown", [
      { name: "mean_ms", points: past.items.map((s) => [minutes(s), s.latency.mean_ms]) },
      { name: "p95_ms", points: past.items.map((s) => [minutes(s), s.latency.p95_ms]) },
    ], [], "minutes"));
  });
}

// -- Deployments: plan (dry run), deploy, follow the moves, roll back, stop. --

function deployForm(models, chosen, refreshList) {
  const model = el("select", { id: "deploy-model" }, models.map((m) =>
    el("option", { value: m.id, selected: m.id === chosen }, `${m.agent} on ${m.scenario.name} · ${m.id.slice(-8)}`)));
  const moves = el("input", { id: "deploy-max-moves", inputmode: "numeric", value: "10" });
  const shield = el("input", { id: "deploy-shield", type: "checkbox", checked: true });
  const continuous = el("input", { id: "deploy-continuous", type: "checkbox" });
  const interval = el("input", { id: "deploy-interval", inputmode: "decimal", value: "60" });
  const number = (input) => (/^\d+(\.\d+)?$/.test(input.value) ? Number(input.value) : input.value);
  const error = el("p", { class: "error", id: "deploy-error", role: "alert" });
  const send = (dryRun) => async () => {
    error.textContent = "";
    try {
      // Values go as typed: the API names the field it refuses.
      const body = { dry_run: dryRun, shield: shield.checked, max_moves: number(moves) };
      if (!dryRun && continuous.checked) Object.assign(body, { continuous: true, interval_s: number(interval) });
      const deployment = await api("POST", `/models/${model.value}/deploy`, body);
      notice(dryRun ? `planned ${deployment.plan.length} moves` : `deploy ${deployment.id} started`);
      await refreshList();
    } catch (e) { if (e.status !== 401) error.textContent = e.field ? `${e.field}: ${e.message}` : e.message; }
  };
  return gated("admin", el("form", { class: "card", id: "deploy-form", "aria-labelledby": "deploy-title", onsubmit: (e) => e.preventDefault() },
    el("h2", { id: "deploy-title" }, "Plan or deploy a model"),
    el("div", { class: "fields" },
      el("div", { class: "field" }, el("label", { for: "deploy-model" }, "Model"), model),
      el("div", { class: "field" }, el("label", { for: "deploy-max-moves" }, "Most moves"), moves),
      el("div", { class: "field" }, el("label", { for: "deploy-interval" }, "Re-plan every (s), when continuous"), interval),
      el("div", { class: "field check" }, continuous, el("label", { for: "deploy-continuous" },
        "Continuous: a deploy re-plans and applies every interval until stopped")),
      el("div", { class: "field check" }, shield, el("label", { for: "deploy-shield" },
        "Shield: apply the model's plan only where the simulator scores it no worse than greedy's and than keeping"))),
    error,
    el("div", { class: "actions" },
      el("button", { type: "button", class: "quiet", id: "plan-button", onclick: send(true) }, "Plan (dry run)"),
      el("button", { type: "button", id: "deploy-button", onclick: send(false) }, "Deploy"))));
}

function deploymentCard(d) {
  const act = (path, what) => async (event) => {
    event.target.disabled = true;
    try { await api("POST", `/deployments/${d.id}/${path}`); notice(`deployment ${d.id}: ${what}`); } catch (e) { notice(e.message); }
  };
  return el("section", { class: "card", "data-deployment": d.id },
    el("h2", {}, d.dry_run ? "Plan " : "Deploy ", el("span", { class: "muted" }, d.id), " ", statusCell(d.status)),
    el("p", { class: "muted" }, `model ${d.model_id} · by ${d.requested_by} · ${when(d.created_at)}`,
      d.shield ? ` · shield applied ${d.shield.applied}` : ""),
    el("div", { class: "figures" },
      el("div", { class: "figure" }, "Latency before", el("b", {}, `${fmt(d.latency_before_ms, 1)} ms`)),
      el("div", { class: "figure" }, "Planned", el("b", {}, `${fmt(d.latency_planned_ms, 1)} ms`)),
      el("div", { class: "figure" }, "After", el("b", {}, d.latency_after_ms === null ? "–" : `${fmt(d.latency_after_ms, 1)} ms`))),
    d.error ? el("p", { class: "error" }, d.error) : null,
    d.plan.length ? table(["Deployment", "Replica", "From", "To", "Done"], d.plan.map((m) => {
      const step = d.steps.find((s) => s.action === "move" && s.deployment === m.deployment && s.to === m.to);
      return el("tr", { "data-move": `${m.service}/${m.replica}` }, el("td", {}, m.deployment), el("td", {}, `${m.service} #${m.replica}`),
        el("td", {}, m.from), el("td", {}, m.to),
        el("td", {}, step ? (step.ok ? `moved in ${fmt(step.took_s, 1)} s` : `failed: ${step.error}`) : "–"));
    })) : el("p", { class: "muted" }, "No moves: the placement stays."),
    el("div", { class: "actions" },
      d.status === "succeeded" && !d.dry_run ? gated("admin", el("button", { type: "button", class: "danger", onclick: act("rollback", "rolling back") }, "Roll back")) : null,
      d.status === "running" && d.continuous ? gated("admin", el("button", { type: "button", class: "quiet", onclick: act("stop", "stop asked") }, "Stop")) : null));
}

function deploymentsPage(main) {
  const chosen = new URLSearchParams(location.hash.split("?")[1] || "").get("model");
  const form = el("div", { id: "deploy-form-slot" });
  const list = el("div", { id: "deployments-list" });
  main.append(el("h1", {}, "Deployments"), form, list);
  const refreshList = async () => {
    const page = await api("GET", "/deployments?limit=20");
    list.replaceChildren(...(page.items.length ? page.items.map(deploymentCard) : [el("p", { class: "muted" }, "No deployments yet.")]));
  };
  if (can("admin")) {
    api("GET", "/models?limit=100").then((page) => form.replaceChildren(page.items.length
      ? deployForm(page.items, chosen, refreshList) : el("p", { class: "muted" }, "No models to deploy yet.")))
      .catch((e) => notice(e.message));
  }
  every(2000, refreshList);
}

// ---- Start ----

window.addEventListener("hashchange", () => render());
document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("logout").addEventListener("click", () => logout("Logged out."));
  render();
});
