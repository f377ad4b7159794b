// The actorscoop dashboard: polls the JSON endpoints beside this file and redraws.
// Every string from the cluster goes into the page as text (textContent), never as HTML.
"use strict";

const POLL_MS = 1000;          // nodes and tasks
const TIMELINE_MS = 2000;      // the task stream
const HIDDEN_MS = 10000;       // when the tab is hidden, poll rarely
const NO_DATA_MS = 30000;      // a node that makes no task report: ask again this rarely
const STATES = ["queued", "running", "finished", "failed"];

const state = { nodes: null, tasks: null, noTasks: "", noTasksAt: 0, timeline: null, noTimeline: "",
                noTimelineAt: 0, clockOffset: 0, error: "", updated: 0, drawn: [] };

// ------------------------------------------------------------------ helpers
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k === "title") e.title = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

function bytes(n) {
  n = Number(n) || 0;
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n.toFixed(0) : n.toFixed(n < 10 ? 1 : 0)) + " " + units[i];
}

function num(n) { return (Math.round((Number(n) || 0) * 100) / 100).toLocaleString(); }
function short(id) { return String(id || "").slice(0, 12); }
// a task id is its job's id then a counter: show both ends
function shortTask(id) { id = String(id || ""); return id.length > 16 ? id.slice(0, 6) + "…" + id.slice(-6) : id; }
function serverNow() { return Date.now() / 1000 + state.clockOffset; }

function known(v) { return v !== null && v !== undefined; }

function meter(used, total, text, warnAbove) {
  if (!known(used)) text = "–";  // not reported (yet)
  else if (!known(total)) text = text.split(" / ")[0];  // a member's heartbeat tells only its use
  const frac = total > 0 ? Math.min(1, used / total) : 0;
  const fill = el("div", { class: "fill" + (warnAbove && frac > warnAbove ? " high" : "") });
  fill.style.width = (frac * 100).toFixed(1) + "%";
  return el("div", { class: "meter" }, fill, el("div", { class: "text" }, text));
}

function stack(counts) {
  const total = STATES.reduce((s, k) => s + (counts[k] || 0), 0);
  const bar = el("div", { class: "stack", title: STATES.map(k => `${counts[k] || 0} ${k}`).join(", ") });
  // finished and failed first: the bar fills from the left as work completes
  for (const k of ["finished", "failed", "running", "queued"]) {
    const part = el("div", { class: k });
    part.style.width = total ? ((counts[k] || 0) / total * 100).toFixed(2) + "%" : "0";
    bar.append(part);
  }
  return bar;
}

function replaceRows(table, rows, emptyText, columns) {
  const body = table.tBodies[0];
  body.replaceChildren(...(rows.length ? rows
    : [el("tr", {}, el("td", { class: "empty", colspan: String(columns) }, emptyText))]));
}

function hue(name) {  // a stable colour per function name, never red (red is for failures)
  let h = 0;
  for (let i = 0; i < name.length; i++) h = (h * 31 + name.charCodeAt(i)) >>> 0;
  return 35 + h % 280;
}
function fnColor(name, alpha) { return `hsla(${hue(name)}, 62%, 52%, ${alpha === undefined ? 1 : alpha})`; }

// ------------------------------------------------------------------ fetching
async function getJSON(path) {
  const r = await fetch(path, { cache: "no-store", credentials: "same-origin" });
  let body = null;
  try { body = await r.json(); } catch (e) { body = null; }
  if (!r.ok) {
    const err = new Error((body && body.error) || `${path}: HTTP ${r.status}`);
    err.noTaskData = !!(body && body.no_task_data);
    throw err;
  }
  return body;
}

async function pollMain() {
  try {
    const nodes = await getJSON("api/nodes");
    state.nodes = nodes;
    state.clockOffset = nodes.now - Date.now() / 1000;
    if (!state.noTasks || Date.now() - state.noTasksAt > NO_DATA_MS) {
      try {
        state.tasks = await getJSON("api/tasks");
        state.noTasks = "";
      } catch (e) {
        if (!e.noTaskData) throw e;
        state.tasks = null;
        state.noTasks = e.message;
        state.noTasksAt = Date.now();
      }
    }
    state.error = "";
    state.updated = Date.now();
  } catch (e) {
    state.error = e.message || String(e);
  }
  render();
  setTimeout(pollMain, document.hidden ? HIDDEN_MS : POLL_MS);
}

async function fetchTimeline() {
  const windowS = Number(document.getElementById("stream-window").value);
  if (!state.noTimeline || Date.now() - state.noTimelineAt > NO_DATA_MS) {
    try {
      state.timeline = await getJSON("api/timeline?since=" + (serverNow() - windowS - 5).toFixed(3));
      state.noTimeline = "";
    } catch (e) {
      if (e.noTaskData) { state.timeline = null; state.noTimeline = e.message; state.noTimelineAt = Date.now(); }
    }
  }
  drawStream();
}

async function pollTimeline() {
  await fetchTimeline();
  setTimeout(pollTimeline, document.hidden ? HIDDEN_MS : TIMELINE_MS);
}

// ------------------------------------------------------------------ rendering
function render() {
  renderConn();
  if (state.nodes) renderNodes(state.nodes.nodes);
  renderSummary();
  renderTasks();
  renderActors();
  renderInfeasible();
  renderFailures();
}

function renderConn() {
  const c = document.getElementById("conn");
  if (state.error) {
    c.className = "conn bad";
    c.textContent = "not updating: " + state.error;
  } else if (state.updated) {
    c.className = "conn ok";
    c.textContent = "live · " + new Date(state.updated).toLocaleTimeString();
  }
}

function renderSummary() {
  const nodes = (state.nodes && state.nodes.nodes) || [];
  const alive = nodes.filter(n => n.alive);
  const cpuUsed = alive.reduce((s, n) => s + n.cpus_used, 0);
  const cpuTotal = alive.reduce((s, n) => s + n.cpus_total, 0);
  const items = [[alive.length, nodes.length === alive.length ? "nodes" : `of ${nodes.length} nodes alive`],
                 [`${num(cpuUsed)} / ${num(cpuTotal)}`, "CPUs in use"]];
  if (state.tasks) {
    const s = state.tasks.by_state || {};
    for (const k of STATES) items.push([num(s[k] || 0), k]);
  }
  document.getElementById("summary").replaceChildren(
    ...items.map(([v, label]) => el("div", { class: "item" }, el("b", {}, v), el("span", {}, label))));
}

function renderNodes(nodes) {
  const table = document.getElementById("nodes");
  const rows = nodes.map(n => el("tr", {},
    el("td", { class: "mono", title: n.node_id }, short(n.node_id), n.head ? el("span", { class: "badge" }, "head") : null),
    el("td", {}, n.host, n.pid ? el("span", { class: "muted" }, ` pid ${n.pid}`) : null),
    el("td", {}, el("span", { class: "badge " + (n.alive ? "alive" : "dead") }, n.alive ? "alive" : "dead")),
    el("td", {}, meter(n.cpus_used, n.cpus_total, `${num(n.cpus_used)} / ${num(n.cpus_total)}`)),
    el("td", { class: "num" }, known(n.workers) ? `${n.workers_busy} busy / ${n.workers}` : "–",
      n.workers_blocked ? el("div", { class: "muted", title: "workers blocked in a nested get, and the tasks they hold paused" },
        `${n.workers_blocked} blocked · ${num(n.tasks_paused || 0)} paused`) : null),
    el("td", {}, meter(n.memory_used, n.memory_total, `${bytes(n.memory_used)} / ${bytes(n.memory_total)}`, 0.9)),
    el("td", {}, meter(n.store_used, n.store_capacity, `${bytes(n.store_used)} / ${bytes(n.store_capacity)}`, 0.9)),
    el("td", { class: "num" }, known(n.spilled_bytes) ? bytes(n.spilled_bytes) : "–"),
    el("td", { class: "num" }, `${num(n.backlog || 0)} · ${num(n.running || 0)}`)));
  replaceRows(table, rows, "no node", 9);
}

function renderTasks() {
  const box = document.getElementById("task-states");
  const table = document.getElementById("by-function");
  if (!state.tasks) {
    box.replaceChildren(el("p", { class: "notice" }, "no task data" + (state.noTasks ? `: ${state.noTasks}` : "")));
    replaceRows(table, [], "no task data", 6);
    return;
  }
  const byState = state.tasks.by_state || {};
  box.replaceChildren(stack(byState));
  const fns = Object.entries(state.tasks.by_function || {});
  const active = c => (c.running || 0) + (c.queued || 0);
  const total = c => STATES.reduce((s, k) => s + (c[k] || 0), 0);
  fns.sort((a, b) => active(b[1]) - active(a[1]) || total(b[1]) - total(a[1]) || a[0].localeCompare(b[0]));
  const rows = fns.slice(0, 100).map(([name, c]) => el("tr", {},
    el("td", { class: "mono" }, name),
    el("td", {}, stack(c)),
    ...STATES.map(k => el("td", { class: "num" + (k === "failed" && c[k] ? " err" : "") }, num(c[k] || 0)))));
  replaceRows(table, rows, "no task has run yet", 6);
}

function renderActors() {
  const table = document.getElementById("actors");
  if (!state.tasks) { replaceRows(table, [], "no task data", 5); return; }
  const actors = state.tasks.actors || [];
  const rows = actors.map(a => el("tr", {},
    el("td", { class: "mono", title: a.actor_id }, a.class_name),
    el("td", {}, a.name || el("span", { class: "muted" }, "–")),
    el("td", {}, el("span", { class: "badge " + a.state }, a.state)),
    el("td", { class: "mono", title: a.node_id }, short(a.node_id)),
    el("td", { class: "num" }, a.pid === null || a.pid === undefined ? "–" : a.pid)));
  replaceRows(table, rows, "no actors", 5);
}

function renderInfeasible() {
  const table = document.getElementById("infeasible");
  if (!state.tasks) { replaceRows(table, [], "no task data", 3); return; }
  const rows = (state.tasks.infeasible || []).map(i => el("tr", {},
    el("td", { class: "mono" }, i.name),
    el("td", { class: "mono" }, Object.entries(i.resources || {}).map(([k, v]) => `${k}: ${num(v)}`).join(", ")),
    el("td", {}, i.reason || "")));
  replaceRows(table, rows, "nothing pending", 3);
}

let failuresKey = "";
function renderFailures() {
  const box = document.getElementById("failures");
  if (!state.tasks) {
    box.replaceChildren(el("p", { class: "notice" }, "no task data"));
    failuresKey = "";
    return;
  }
  const failures = (state.tasks.failures || []).slice().reverse();  // newest first
  const key = failures.map(f => f.task_id + f.time).join();
  if (key === failuresKey) return;  // unchanged: keep the tracebacks the user opened
  failuresKey = key;
  if (!failures.length) { box.replaceChildren(el("p", { class: "empty" }, "no failures")); return; }
  box.replaceChildren(...failures.map((f, i) => el("div", { class: "failure" },
    el("div", { class: "head" },
      el("span", { class: "muted" }, new Date(f.time * 1000).toLocaleTimeString()),
      el("span", { class: "mono" }, f.name),
      el("span", { class: "err" }, f.error_type),
      el("span", {}, f.message),
      el("span", { class: "muted mono", title: f.task_id }, `task ${shortTask(f.task_id)} · node ${short(f.node_id)} · pid ${f.pid}`)),
    details(f.traceback, i === 0))));
}

function details(text, open) {
  const d = el("details", {}, el("summary", {}, "traceback"), el("pre", { class: "mono" }, text || ""));
  d.open = open;
  return d;
}

// ------------------------------------------------------------------ the task stream
function drawStream() {
  const canvas = document.getElementById("stream");
  const legend = document.getElementById("stream-legend");
  const ctx = canvas.getContext("2d");
  const windowS = Number(document.getElementById("stream-window").value);
  const now = serverNow();
  const t0 = now - windowS;
  const events = ((state.timeline && state.timeline.events) || []).filter(e => (e.end === null || e.end === undefined || e.end >= t0));
  // one row per worker, grouped by node
  const rowsByKey = new Map();
  for (const e of events) {
    const key = `${e.node_id}:${e.pid}`;
    if (!rowsByKey.has(key)) rowsByKey.set(key, { node: e.node_id, pid: e.pid, events: [] });
    rowsByKey.get(key).events.push(e);
  }
  const rows = [...rowsByKey.values()].sort((a, b) => a.node.localeCompare(b.node) || a.pid - b.pid);
  const labelW = 150, rowH = 16, axisH = 20;
  const cssW = canvas.clientWidth || 800;
  const cssH = Math.max(1, rows.length) * rowH + axisH + 4;
  const dpr = window.devicePixelRatio || 1;
  canvas.style.height = cssH + "px";
  canvas.width = Math.round(cssW * dpr);
  canvas.height = Math.round(cssH * dpr);
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, cssW, cssH);
  const styles = getComputedStyle(document.body);
  const ink = styles.getPropertyValue("--muted") || "#666";
  const lineColor = styles.getPropertyValue("--line") || "#ddd";
  ctx.font = "11px ui-monospace, monospace";
  ctx.textBaseline = "middle";
  const plotW = cssW - labelW - 8;
  const x = t => labelW + (t - t0) / windowS * plotW;
  state.drawn = [];
  if (!rows.length) {
    ctx.fillStyle = ink;
    ctx.fillText(state.noTimeline ? "no task data: " + state.noTimeline
      : `no task ran in the last ${windowS / 60} minute${windowS > 60 ? "s" : ""}`, labelW, rowH / 2 + 2);
  }
  const seen = new Map();
  rows.forEach((row, i) => {
    const y = i * rowH + 2;
    ctx.fillStyle = ink;
    ctx.fillText(`${short(row.node).slice(0, 6)} · pid ${row.pid}`, 4, y + rowH / 2);
    ctx.fillStyle = lineColor;
    ctx.fillRect(labelW, y + rowH - 1, plotW, 1);
    for (const e of row.events) {
      const start = Math.max(e.start, t0);
      const end = e.end === null || e.end === undefined ? now : e.end;
      const x0 = x(start), w = Math.max(1.5, x(end) - x0);
      const failed = e.state === "failed";
      ctx.fillStyle = failed ? "#dc3545" : fnColor(e.name, e.state === "running" ? 0.55 : 1);
      ctx.fillRect(x0, y + 2, w, rowH - 5);
      if (e.state === "running") {
        ctx.strokeStyle = fnColor(e.name);
        ctx.strokeRect(x0 + 0.5, y + 2.5, w - 1, rowH - 6);
      }
      state.drawn.push({ x0, x1: x0 + w, y0: y, y1: y + rowH, e });
      seen.set(e.name, (seen.get(e.name) || 0) + 1);
    }
  });
  // time axis
  const axisY = Math.max(1, rows.length) * rowH + 4;
  ctx.fillStyle = ink;
  const step = windowS <= 60 ? 10 : windowS <= 300 ? 60 : 120;
  for (let s = 0; s <= windowS; s += step) {
    const px = x(now - s);
    ctx.fillRect(px, axisY, 1, 4);
    const label = s === 0 ? "now" : `-${s >= 60 ? s / 60 + " min" : s + " s"}`;
    ctx.fillText(label, Math.min(px - ctx.measureText(label).width / 2, cssW - ctx.measureText(label).width), axisY + 12);
  }
  const top = [...seen.entries()].sort((a, b) => b[1] - a[1]).slice(0, 12);
  legend.replaceChildren(...top.map(([name]) => {
    const sw = el("i", {});
    sw.style.background = fnColor(name);
    return el("span", { class: "fn mono" }, sw, name);
  }), ...(events.some(e => e.state === "failed") ? [el("span", { class: "fn" }, el("i", { class: "failed" }), "failed")] : []));
}

function onStreamMove(ev) {
  const canvas = document.getElementById("stream");
  const tip = document.getElementById("stream-tip");
  const r = canvas.getBoundingClientRect();
  const px = ev.clientX - r.left, py = ev.clientY - r.top;
  const hit = state.drawn.find(d => px >= d.x0 && px <= d.x1 && py >= d.y0 && py <= d.y1);
  if (!hit) { tip.hidden = true; return; }
  const e = hit.e;
  const end = e.end === null || e.end === undefined ? serverNow() : e.end;
  tip.textContent = `${e.name}  (${e.state})\nran ${(end - e.start).toFixed(3)} s, waited ${(e.start - e.submit).toFixed(3)} s\n` +
    `task ${shortTask(e.task_id)} · node ${short(e.node_id)} · pid ${e.pid}`;
  tip.hidden = false;
  tip.style.left = Math.min(px + 12, r.width - 300) + "px";
  tip.style.top = (py + 14) + "px";
}

// ------------------------------------------------------------------ start
document.addEventListener("DOMContentLoaded", () => {
  const canvas = document.getElementById("stream");
  canvas.addEventListener("mousemove", onStreamMove);
  canvas.addEventListener("mouseleave", () => { document.getElementById("stream-tip").hidden = true; });
  document.getElementById("stream-window").addEventListener("change", fetchTimeline);
  window.addEventListener("resize", drawStream);
  setInterval(() => { if (!document.hidden) drawStream(); }, POLL_MS);  // the stream scrolls between fetches
  pollMain();
  pollTimeline();
});
