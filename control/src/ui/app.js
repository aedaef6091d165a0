// weir's dashboard: the route list and a route page, kept live by the
// admin API's event stream (GET /api/v1/events), read with fetch() so the
// token travels in a header (EventSource cannot send one). What no event
// carries (a webhook's last answer, an analysis run's measurements, the
// window's counts) is read again from the API: soon after an event about
// the shown route, and every few seconds while the tab is visible. The
// token stays in this tab (sessionStorage) and never goes in a URL.
"use strict";

const TOKEN_KEY = "weir-token";
const CHART_SECONDS = 180;
const RECENT_SHOWN = 50;
// The shown route (or the list) is read again this often while visible.
const REFRESH_MS = 2000;
// Events this close together share one read of the route.
const SOON_MS = 500;
// How often a stream refused for its token is opened again meanwhile.
const TOKEN_RETRY_MS = 5000;
// Measurements shown per metric of a run, newest first.
const MEASUREMENTS_SHOWN = 5;

const state = {
  routes: new Map(),   // name -> route status
  samples: new Map(),  // name -> [{at, stable, canary}]
  events: [],          // recent events, newest last: {id, event, data}
  switchBackTimer: null, // the switch-back window's end a redraw is set for
  verdicts: new Map(), // name -> [{event, data, id}] of its verdicts, newest last
  access: null,        // "read" | "write" once connected; "none" once a token is refused
  tokens: true,        // whether weir asks for tokens
  runs: new Map(),     // name -> analysis runs, when weir has them
  runsText: new Map(), // name -> the runs as last answered, to skip redraws
  epoch: 0,            // counts statuses set by events and commands
  changed: new Map(),  // name -> the epoch its status was last set at
  replaced: 0,         // the epoch all statuses were last replaced at
  live: false,         // whether the event stream is open
  notice: null,        // {text, error} about the last command
  missing: null,       // the shown route, once weir answered 404 for it
  refused: false,      // whether a read's 401 asked for a token already
  asked: false,        // whether a 401 asked for a token not yet taken
};
// What a test reads back: ms from an event's stamp to the frame showing it.
window.weirShown = [];

const $ = (id) => document.getElementById(id);

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

// === tokens ===

function token() { return sessionStorage.getItem(TOKEN_KEY); }

function headers(extra) {
  const all = Object.assign({}, extra);
  const t = token();
  if (t) all.Authorization = "Bearer " + t;
  return all;
}

function askToken(message) {
  $("token-message").textContent = message;
  $("token-message").className = token() ? "error" : "";
  $("token-form").hidden = false;
  $("token-input").focus();
}

$("token-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const t = $("token-input").value.trim();
  $("token-input").value = "";
  if (t) sessionStorage.setItem(TOKEN_KEY, t); else sessionStorage.removeItem(TOKEN_KEY);
  $("token-form").hidden = true;
  state.refused = false;
  reconnect();
});

$("token-button").addEventListener("click", () => {
  askToken(state.access === "read"
    ? "Signed in with the reader token: enter the writer token to act."
    : "Enter another token.");
});

// weir answered 401 (its tokens changed, e.g. by a reload): once it had
// answered, nothing acts until a token is taken again.
function tokenRefused(message) {
  if (state.access) state.access = "none";
  state.asked = true;
  askToken(message);
  render();
}

async function errorOf(res) {
  try { return (await res.json()).error || res.statusText; } catch (_) { return res.statusText; }
}

// === the event stream ===

let stream = null;
let retryMs = 500;

function reconnect() {
  if (stream) stream.abort();
  retryMs = 500;
  connect();
}

async function connect() {
  const controller = new AbortController();
  stream = controller;
  setLive(false, "connecting");
  let res;
  try {
    res = await fetch("/api/v1/events", { headers: headers(), cache: "no-store", signal: controller.signal });
  } catch (e) {
    return retry(controller, "weir is unreachable");
  }
  if (res.status === 401) {
    const why = await errorOf(res);
    const had = token();
    tokenRefused(had
      ? "The token was refused (" + why + "). Enter the reader or the writer token."
      : "This weir asks for a token: the reader token shows, the writer token acts.");
    if (had) $("token-message").className = "error";
    setLive(false, "needs a token");
    // Asked again now and then: a reload may remove the tokens, or bring
    // back the one this tab holds.
    setTimeout(() => { if (stream === controller) connect(); }, TOKEN_RETRY_MS);
    return;
  }
  if (!res.ok) return retry(controller, "events answered " + res.status + ": " + (await errorOf(res)));
  setLive(true, "live");
  retryMs = 500;
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        dispatch(block);
      }
    }
  } catch (e) { /* aborted or cut: reconnect below */ }
  retry(controller, "reconnecting");
}

function retry(controller, why) {
  if (stream !== controller) return;
  setLive(false, why);
  setTimeout(() => { if (stream === controller) connect(); }, retryMs);
  retryMs = Math.min(retryMs * 2, 10000);
}

function setLive(on, text) {
  state.live = on;
  $("live").className = "live " + (on ? "on" : "off");
  $("live").textContent = text;
}

function dispatch(block) {
  let name = "message", data = "", id = null;
  for (const line of block.split("\n")) {
    if (line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "event") name = value;
    else if (field === "data") data += (data ? "\n" : "") + value;
    else if (field === "id") id = Number(value);
  }
  if (!data) return;
  let payload;
  try { payload = JSON.parse(data); } catch (_) { return; }
  handle(name, payload, id);
}

function handle(name, data, id) {
  switch (name) {
    case "snapshot":
      setStatuses(data.routes);
      state.samples = new Map(Object.entries(data.samples || {}));
      state.events = [];
      state.verdicts = new Map();
      for (const e of data.recent || []) remember(e.event, e.data, e.id);
      state.access = data.access;
      state.tokens = data.tokens;
      // Taken without the token asked for (the tokens changed back): the
      // question is gone.
      if (state.asked) {
        state.asked = false;
        state.refused = false;
        $("token-form").hidden = true;
      }
      refreshSoon("runs");
      break;
    case "samples":
      for (const [route, sample] of Object.entries(data.routes)) {
        const list = state.samples.get(route) || [];
        list.push(sample);
        while (list.length && list[0].at < sample.at - CHART_SECONDS * 1000) list.shift();
        state.samples.set(route, list);
      }
      // The route page keeps its elements (a button being clicked stays
      // the same button); only the charts and the served weight move.
      if (currentRoute() !== null && $("served")) {
        $("served").textContent = pct(servedWeight(currentRoute()));
        drawCharts();
        return;
      }
      break;
    case "transition":
      if (data.status) setStatus(data.route, data.status);
      remember(name, data, id);
      if (data.route === currentRoute()) refreshSoon("runs");
      break;
    case "reload":
      if (data.applied) setStatuses(data.routes);
      remember(name, data, id);
      refreshSoon("runs");
      break;
    case "verdict": {
      // The list's last verdict follows at once; the window's counts come
      // with the next read of the route.
      const r = state.routes.get(data.route);
      if (r) {
        setStatus(data.route, Object.assign({}, r, { analysis: Object.assign({}, r.analysis,
          { verdict: data.verdict, reason: data.reason, failures: data.failures }) }));
      }
      remember(name, data, id);
      if (data.route === currentRoute()) refreshSoon("route");
      break;
    }
    case "command":
      remember(name, data, id);
      if (data.route === currentRoute() || data.route === "*") refreshSoon("route");
      break;
    case "lagged":
      return; // the stream ends; the reconnect brings a fresh snapshot
    default:
      remember(name, data, id);
  }
  render();
  if (name !== "samples" && name !== "snapshot" && data.at) {
    requestAnimationFrame(() => window.weirShown.push({ event: name, id, kind: data.kind, ms: Date.now() - data.at }));
  }
}

// Verdicts (every active route makes one a second) are kept per route,
// apart from the other events, so that they never push a route's
// transitions out of its recent events.
function remember(name, data, id) {
  if (name === "verdict") {
    const list = state.verdicts.get(data.route) || [];
    list.push({ event: name, data, id });
    if (list.length > 10) list.shift();
    state.verdicts.set(data.route, list);
    return;
  }
  state.events.push({ event: name, data, id });
  if (state.events.length > RECENT_SHOWN) state.events.shift();
}

// === views ===

function currentRoute() {
  const m = location.hash.match(/^#\/routes\/(.+)$/);
  if (!m) return null;
  try { return decodeURIComponent(m[1]); } catch (_) { return m[1]; }
}

window.addEventListener("hashchange", () => {
  state.notice = null;
  state.missing = null;
  // Only the shown route's runs are kept.
  const name = currentRoute();
  for (const cache of [state.runs, state.runsText]) {
    for (const other of [...cache.keys()]) if (other !== name) cache.delete(other);
  }
  render();
  refreshShown();
});

function render() {
  $("token-button").hidden = !state.tokens;
  $("access").textContent = state.access === "read" ? "reader token: read-only"
    : state.access === "write" ? (state.tokens ? "writer token" : "")
    : state.access === "none" ? "no valid token" : "";
  const view = $("view");
  const name = currentRoute();
  // A command asked about a route that is gone is not confirmed.
  if (name !== null && state.access && !state.routes.has(name)) $("confirm").hidden = true;
  const page = name === null ? listView() : routeView(name);
  page.dataset.view = name === null ? "list" : "route " + name;
  const old = view.firstElementChild;
  if (old && old.dataset.view === page.dataset.view) {
    // Events redraw the page several times a second: what did not change
    // stays the same element, so a button being pressed, the focus and a
    // scrolled list are not lost to a redraw.
    const focused = document.activeElement;
    const key = focused && old.contains(focused) ? focusKey(focused) : null;
    morph(old, page);
    if (key && !focused.isConnected) {
      const again = view.querySelector(key);
      if (again) again.focus();
    }
  } else {
    view.replaceChildren(page);
  }
  drawCharts();
}

// Makes `old` (shown) show what `fresh` shows, keeping every element that
// would be drawn the same: an element whose own attributes or number of
// children changed is replaced (with its listeners), one that did not is
// kept and its children compared in turn.
function morph(old, fresh) {
  if (old.isEqualNode(fresh)) return;
  if (old.nodeType !== Node.ELEMENT_NODE || old.nodeName !== fresh.nodeName
      || old.nodeName === "CANVAS" || !sameAttributes(old, fresh)
      || old.childNodes.length !== fresh.childNodes.length) {
    const top = old.nodeType === Node.ELEMENT_NODE ? old.scrollTop : 0;
    old.replaceWith(fresh);
    if (top) fresh.scrollTop = top;
    return;
  }
  const olds = [...old.childNodes];
  const freshes = [...fresh.childNodes];
  olds.forEach((child, i) => morph(child, freshes[i]));
}

function sameAttributes(a, b) {
  if (a.attributes.length !== b.attributes.length) return false;
  for (const attr of a.attributes) if (b.getAttribute(attr.name) !== attr.value) return false;
  return true;
}

// A selector that finds `el` again in a redrawn page.
function focusKey(el) {
  if (el.id) return "#" + CSS.escape(el.id);
  if (el.dataset && el.dataset.command) return '[data-command="' + CSS.escape(el.dataset.command) + '"]';
  return null;
}

// Weights have up to four decimals (one request in a million): all shown.
const pct = (v) => (v === null || v === undefined ? "–" : String(+(+v).toFixed(4)) + " %");
const rate = (v) => (v === null || v === undefined ? "–" : (v * 100).toFixed(2) + " %");
const ms = (v) => (v === null || v === undefined ? "–" : (+v).toFixed(1) + " ms");
const clock = (at) => new Date(at).toLocaleTimeString();

function servedWeight(name) {
  const list = state.samples.get(name);
  const last = list && list[list.length - 1];
  if (!last) return null;
  const total = last.stable.rps + last.canary.rps;
  return total > 0 ? (100 * last.canary.rps) / total : null;
}

// A route with neither a canary revision nor canary traffic splits nothing.
function hasNoCanary(r) {
  return !r.canaryRevision && !r.canaryWeight;
}

function stepText(r) {
  if (r.blueGreen && r.blueGreen.stage) return r.blueGreen.stage;
  if (r.stage) return r.stage;
  if (!r.strategy) return hasNoCanary(r) ? "no canary" : "fixed split";
  if (r.stepIndex === null || r.stepIndex === undefined) return "–";
  return Math.min(r.stepIndex + 1, r.stepCount) + " / " + r.stepCount;
}

function verdictCell(r) {
  const a = r.analysis || {};
  if (!a.verdict) return h("span", { class: "muted" }, "none yet");
  return h("span", { class: "verdict " + a.verdict, title: a.reason || "" }, a.verdict);
}

function listView() {
  const rows = [...state.routes.values()].map((r) =>
    h("tr", { "data-route": r.name },
      h("td", {}, h("a", { href: "#/routes/" + encodeURIComponent(r.name) }, r.name)),
      h("td", {}, h("span", { class: "phase " + r.phase }, r.phase)),
      h("td", { class: "narrow-hide" }, r.blueGreen ? "blue-green" : r.strategy ? "canary steps" : hasNoCanary(r) ? "none" : "fixed"),
      h("td", {}, stepText(r)),
      h("td", {}, pct(r.canaryWeight), h("span", { class: "muted" }, " / " + pct(servedWeight(r.name)))),
      h("td", { class: "narrow-hide" }, (r.stableRevision || "–") + " → " + (r.canaryRevision || "–")),
      h("td", {}, verdictCell(r))));
  return h("section", {},
    h("h1", {}, "Routes"),
    h("div", { class: "scroll" }, h("table", { id: "routes" },
      h("thead", {}, h("tr", {}, h("th", {}, "route"), h("th", {}, "phase"),
        h("th", { class: "narrow-hide" }, "strategy"), h("th", {}, "step"),
        h("th", {}, "weight set / served"), h("th", { class: "narrow-hide" }, "revisions stable → canary"),
        h("th", {}, "last verdict"))),
      h("tbody", {}, rows))),
    state.routes.size ? null : h("p", { class: "muted" }, state.access ? "No routes." : "Waiting for weir…"));
}

function stepLabel(s) {
  if (typeof s !== "object" || s === null) return String(s);
  if ("setWeight" in s) return "weight " + s.setWeight + " %";
  if ("pause" in s) return s.pause && s.pause.duration ? "pause " + s.pause.duration : "pause until promoted";
  if ("analysis" in s) return "analysis";
  return Object.keys(s)[0] || "step";
}

const COMMANDS = [
  ["promote", "Promote", {}, "Promote %s to its next step?"],
  ["promote", "Promote full", { full: true }, "Promote %s fully (100 % canary, skipping the remaining steps)?"],
  ["abort", "Abort", {}, "Abort the rollout of %s (canary weight 0)?"],
  ["retry", "Retry", {}, "Retry the rollout of %s from its first step?"],
  ["pause", "Pause", {}, "Hold the rollout of %s?"],
  ["resume", "Resume", {}, "Resume the rollout of %s?"],
];

// Whether `verb` applies to route `r` now (the API answers 409 otherwise).
function applies(r, verb, body) {
  if (!r.strategy) return false;
  const active = r.phase === "Progressing" || r.phase === "Paused";
  switch (verb) {
    case "promote": return active;
    case "abort": {
      if (active) return true;
      if (r.phase !== "Promoted") return false;
      // A blue-green route swaps back only within scaleDownDelaySeconds.
      if (!r.blueGreen) return true;
      const until = r.blueGreen.switchBackUntilMs;
      return !!until && Date.now() < until;
    }
    case "retry": return r.phase === "Aborted";
    case "pause": return active && !r.held;
    case "resume": return !!r.held;
    default: return !body;
  }
}

function routeView(name) {
  const r = state.routes.get(name);
  if (!r) {
    return h("section", {}, h("p", {}, h("a", { href: "#/" }, "← routes")),
      h("p", { class: "muted" }, state.access ? "No route named " + name + "." : "Waiting for weir…"),
      state.notice ? h("p", { id: "notice", class: state.notice.error ? "error" : "muted" }, state.notice.text) : null);
  }
  const writable = state.access === "write";
  const why = state.access === "read"
    ? "The reader token shows but cannot act: use the writer token to run commands."
    : state.access === "none" ? "This weir asks for a token: enter the writer token to run commands."
    : "";
  // The switch-back window's end disables Abort: drawn again then.
  const until = r.blueGreen && r.phase === "Promoted" && r.blueGreen.switchBackUntilMs;
  if (until && until > Date.now() && state.switchBackTimer !== until) {
    state.switchBackTimer = until;
    setTimeout(render, until - Date.now() + 50);
  }
  const buttons = COMMANDS.map(([verb, label, body, question]) =>
    h("button", { type: "button", "data-command": label.toLowerCase().replace(" ", "-"),
      class: verb === "abort" ? "danger" : null, disabled: !writable || !applies(r, verb, body),
      title: why || (applies(r, verb, body) ? null : label + " does not apply to a route " + (r.held ? "held" : r.phase)),
      onclick: () => confirmCommand(
        (verb === "abort" && r.blueGreen ? "Abort %s: all traffic back to the old revision?" : question).replace("%s", name),
        () => runCommand(name, verb, body)) }, label));
  const steps = (r.steps || []).map((s, i) => {
    const at = r.stepIndex;
    const cls = at === null || at === undefined ? "" : i < at ? "done" : i === at ? "current" : "";
    return h("li", { class: cls || null, "aria-current": cls === "current" ? "step" : null }, (i + 1) + ". " + stepLabel(s));
  });
  const a = r.analysis || {};
  const kept = state.verdicts.get(name) || [];
  const verdicts = kept.map((e) => e.data).reverse();
  const lastVerdicts = verdicts.length
    ? verdicts.map((v) => h("li", {}, h("time", {}, clock(v.at) + " "), h("span", { class: "verdict " + v.verdict }, v.verdict), " ", v.reason))
    : a.verdict ? [h("li", {}, h("span", { class: "verdict " + a.verdict }, a.verdict), " ", a.reason || "")] : [h("li", { class: "muted" }, "none yet")];
  const events = state.events.filter((e) => !e.data.route || e.data.route === name || e.data.route === "*")
    .concat(kept).sort((x, y) => x.id - y.id).reverse().map(eventLine);
  return h("section", {},
    h("p", {}, h("a", { href: "#/" }, "← routes")),
    h("h1", {}, name, " ", h("span", { id: "phase", class: "phase " + r.phase }, r.phase)),
    h("p", { id: "message" }, r.message),
    h("div", { class: "actions", id: "actions" }, buttons,
      why ? h("span", { id: "actions-why", class: "muted" }, why) : null),
    state.notice ? h("p", { id: "notice", class: state.notice.error ? "error" : "muted" }, state.notice.text) : null,
    h("div", { class: "grid" },
      h("div", { class: "card wide" }, h("h2", {}, r.blueGreen ? "Stage" : "Steps"),
        r.blueGreen ? h("p", {}, stepText(r))
          : steps.length ? h("ol", { class: "steps", id: "steps" }, steps) : h("p", { class: "muted" }, hasNoCanary(r) ? "No steps: no canary." : "No steps: a fixed split.")),
      h("div", { class: "card" }, h("h2", {}, "Weight"), h("dl", { class: "kv" },
        h("dt", {}, "set"), h("dd", { id: "weight" }, pct(r.canaryWeight)),
        h("dt", {}, "served"), h("dd", { id: "served" }, pct(servedWeight(name))),
        h("dt", {}, "step"), h("dd", { id: "step" }, stepText(r)))),
      h("div", { class: "card" }, h("h2", {}, "Revisions"), h("dl", { class: "kv" },
        h("dt", {}, "stable"), h("dd", {}, r.stableRevision || "–"),
        h("dt", {}, "canary"), h("dd", {}, r.canaryRevision || "–"),
        h("dt", {}, "promoted"), h("dd", {}, r.promotedRevision || "–"))),
      h("div", { class: "card" }, h("h2", {}, "Window (" + (a.windowSeconds || 0) + " s)"), h("dl", { class: "kv" },
        ...["stable", "canary"].flatMap((role) => {
          const s = a[role] || {};
          return [h("dt", {}, role), h("dd", {}, (s.requests || 0) + " req, " + rate(s.errorRate) + " errors, p99 " + ms(s.latencyP99Ms))];
        }),
        h("dt", {}, "failures"), h("dd", {}, a.failures || 0))),
      chartCard("rps", "Requests per second"),
      chartCard("errorRate", "Error rate"),
      chartCard("p99Ms", "p99 latency (ms)"),
      h("div", { class: "card wide" }, h("h2", {}, "Last verdicts"), h("ul", { class: "events", id: "verdicts" }, lastVerdicts)),
      runsCard(name),
      webhooksCard(r),
      h("div", { class: "card wide" }, h("h2", {}, "Recent events"),
        h("ul", { class: "events", id: "events" }, events.length ? events : h("li", { class: "muted" }, "none yet")))));
}

function eventLine(e) {
  const d = e.data;
  let text;
  switch (e.event) {
    case "transition": text = d.kind.replace(/_/g, " ") + ": " + d.message; break;
    case "verdict": text = "verdict " + d.verdict + ": " + d.reason; break;
    case "command": text = "command " + d.command + (d.ok ? " done" : " refused (" + d.status + "): " + (d.error || "")); break;
    case "reload": text = d.applied ? "config reloaded (" + d.trigger + ")" : "config refused: " + (d.errors || []).join("; "); break;
    default: text = e.event;
  }
  return h("li", { "data-event": e.event }, h("time", {}, d.at ? clock(d.at) + " " : ""), text);
}

function chartCard(field, title) {
  return h("div", { class: "card" }, h("h2", {}, title),
    h("canvas", { "data-field": field, id: "chart-" + field, width: 360, height: 140 }),
    h("div", { class: "legend" }, h("span", { class: "s" }, "■ stable"), " ", h("span", { class: "c" }, "■ canary"),
      " · up to the last " + CHART_SECONDS / 60 + " minutes"));
}

// A value or message cut to `n` characters, so one answer cannot swell the page.
function short(text, n) {
  return text.length > n ? text.slice(0, n - 1) + "…" : text;
}

function runsCard(name) {
  const runs = state.runs.get(name);
  if (!Array.isArray(runs) || !runs.length) return null;
  return h("div", { class: "card wide" }, h("h2", {}, "Analysis runs"),
    h("ul", { class: "events", id: "runs" }, runs.slice(-10).reverse().map((run) =>
      h("li", { "data-run": run.name || null }, h("strong", {}, run.name || "run"), " ",
        (run.templates || []).join(", "), " ",
        h("span", { class: "phase " + (run.phase || "") }, run.phase || ""), " ", run.message || "",
        h("ul", {}, (run.metrics || []).map((m) => {
          const all = m.measurements || [];
          const older = all.length - MEASUREMENTS_SHOWN;
          return h("li", { "data-metric": m.name },
            h("span", { class: "muted" }, m.name + " " + (m.phase || "") + ": " +
              (m.successful || 0) + " successful, " + (m.failed || 0) + " failed, " +
              (m.inconclusive || 0) + " inconclusive, " + (m.error || 0) + " errors"),
            all.length ? h("ul", { class: "measurements" },
              all.slice(-MEASUREMENTS_SHOWN).reverse().map(measurementLine),
              older > 0 ? h("li", { class: "muted" }, "and " + older + " earlier") : null) : null);
        }))))));
}

function measurementLine(x) {
  const at = Date.parse(x.finishedAt || x.startedAt);
  const value = x.value !== undefined && x.value !== null ? " " + short(JSON.stringify(x.value), 80) : "";
  return h("li", { "data-phase": x.phase || null },
    h("time", {}, Number.isNaN(at) ? "" : clock(at) + " "),
    h("span", { class: "phase " + (x.phase || "") }, x.phase || ""), value,
    x.message ? h("span", { class: "muted" }, " " + short(x.message, 200)) : null);
}

function webhooksCard(r) {
  const hooks = r.webhooks;
  if (!hooks || (Array.isArray(hooks) && !hooks.length)) return null;
  const list = Array.isArray(hooks) ? hooks : Object.entries(hooks).map(([name, v]) => Object.assign({ name }, v));
  return h("div", { class: "card wide" }, h("h2", {}, "Webhooks"),
    h("ul", { class: "events", id: "webhooks" }, list.map((w) =>
      h("li", { "data-hook": w.name || null }, h("strong", {}, w.name || w.type || "hook"), " ", w.type && w.name ? "(" + w.type + ") " : "",
        w.waiting ? "waited on · " : "", w.lastResult || "not called yet",
        w.attempts > 1 ? " after " + w.attempts + " attempts" : "", " ", w.message || "",
        w.calls ? h("span", { class: "muted" }, " · " + w.calls + (w.calls === 1 ? " call" : " calls") +
          (w.lastCalledMs ? ", the last at " + clock(w.lastCalledMs) : "")) : null))));
}

// === charts ===

function drawCharts() {
  const name = currentRoute();
  const samples = (name && state.samples.get(name)) || [];
  for (const canvas of document.querySelectorAll("canvas[data-field]")) {
    drawChart(canvas, samples, canvas.dataset.field);
  }
}

function drawChart(canvas, samples, field) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || 360, height = canvas.clientHeight || 140;
  canvas.width = width * ratio;
  canvas.height = height * ratio;
  const g = canvas.getContext("2d");
  g.scale(ratio, ratio);
  g.clearRect(0, 0, width, height);
  const now = samples.length ? samples[samples.length - 1].at : Date.now();
  // The last three minutes, or less while there is less (at least 30 s).
  const first = samples.length ? samples[0].at : now;
  const span = Math.min(CHART_SECONDS * 1000, Math.max(30000, now - first));
  const from = now - span;
  const shown = samples.filter((s) => s.at >= from);
  const value = (s, role) => {
    const v = s[role][field];
    return v === null || v === undefined ? null : field === "errorRate" ? v * 100 : v;
  };
  let top = 0;
  for (const s of shown) for (const role of ["stable", "canary"]) top = Math.max(top, value(s, role) || 0);
  const max = top > 0 ? top * 1.15 : 1;
  const pad = { left: 4, right: 4, top: 14, bottom: 4 };
  const x = (at) => pad.left + ((at - from) / span) * (width - pad.left - pad.right);
  const y = (v) => height - pad.bottom - (v / max) * (height - pad.top - pad.bottom);
  g.strokeStyle = "#d9dee5";
  g.beginPath(); g.moveTo(pad.left, y(0)); g.lineTo(width - pad.right, y(0)); g.stroke();
  g.fillStyle = "#5f6b7a";
  g.font = "11px system-ui, sans-serif";
  g.fillText("max " + top.toFixed(field === "rps" ? 0 : 2) + (field === "errorRate" ? " %" : ""), pad.left, 11);
  let points = 0;
  for (const [role, color] of [["stable", "#2f6fd6"], ["canary", "#e07a10"]]) {
    g.strokeStyle = color;
    g.lineWidth = 1.5;
    g.beginPath();
    let drawing = false;
    for (const s of shown) {
      const v = value(s, role);
      if (v === null) { drawing = false; continue; }
      if (drawing) g.lineTo(x(s.at), y(v)); else g.moveTo(x(s.at), y(v));
      drawing = true;
      points += 1;
    }
    g.stroke();
  }
  canvas.dataset.points = String(points);
}

// === commands ===

function confirmCommand(question, action) {
  // Cancelled, the focus goes back to the button that asked.
  const opener = document.activeElement;
  $("confirm-text").textContent = question;
  $("confirm").hidden = false;
  // Either answer disarms both: a double click on Confirm, or a click on
  // the hidden panel, sends the command once.
  const close = () => {
    $("confirm").hidden = true;
    $("confirm-yes").onclick = null;
    $("confirm-no").onclick = null;
  };
  $("confirm-yes").onclick = () => { close(); action(); };
  $("confirm-no").onclick = () => {
    close();
    if (opener && opener.isConnected && typeof opener.focus === "function") opener.focus();
  };
  $("confirm-yes").focus();
}

// Escape answers a confirmation with Cancel, as in any dialog.
document.addEventListener("keydown", (e) => {
  if (e.key === "Escape" && !$("confirm").hidden) {
    e.preventDefault();
    $("confirm-no").click();
  }
});

async function runCommand(name, verb, body) {
  state.notice = { text: verb + "…", error: false };
  render();
  let res;
  try {
    res = await fetch("/api/v1/routes/" + encodeURIComponent(name) + "/" + verb, {
      method: "POST", headers: headers({ "Content-Type": "application/json" }), body: JSON.stringify(body) });
  } catch (e) {
    state.notice = { text: "weir is unreachable: " + e.message, error: true };
    return render();
  }
  if (res.ok) {
    const status = await res.json();
    if (status && status.name) setStatus(status.name, status);
    state.notice = { text: clock(Date.now()) + " " + verb + (body.full ? " --full" : "") + " done.", error: false };
  } else {
    const why = await errorOf(res);
    state.notice = { text: clock(Date.now()) + " " + verb + " refused (" + res.status + "): " + why, error: true };
    if (res.status === 401) tokenRefused("The token was refused (" + why + ").");
  }
  render();
}

// === reads of what no event carries ===

// A route's status from an event or a command's answer: newer than any
// read of it still under way, which then leaves it as it is.
function setStatus(name, status) {
  state.routes.set(name, status);
  state.changed.set(name, ++state.epoch);
}

// Every route's status, from a snapshot or a reload.
function setStatuses(routes) {
  state.routes = new Map(routes.map((r) => [r.name, r]));
  state.changed = new Map();
  state.replaced = ++state.epoch;
}

// Whether route `name`'s status was set since `epoch`.
function setSince(name, epoch) {
  return state.replaced > epoch || (state.changed.get(name) || 0) > epoch;
}

// Per kind: at most one request in flight; asked again meanwhile, it
// makes one more when that one ends. `timer`: a read soon, already set.
const reads = {
  list: { load: loadList, busy: false, again: false, timer: null },
  route: { load: loadRoute, busy: false, again: false, timer: null },
  runs: { load: loadRuns, busy: false, again: false, timer: null },
};

function refresh(kind) {
  const r = reads[kind];
  if (r.busy) { r.again = true; return; }
  r.busy = true;
  r.again = false;
  r.load().catch(() => { /* unreachable or cut: the next read tries again */ }).finally(() => {
    r.busy = false;
    if (r.again) refresh(kind);
  });
}

// One read for all the events of the next SOON_MS.
function refreshSoon(kind) {
  const r = reads[kind];
  if (r.timer !== null) return;
  r.timer = setTimeout(() => { r.timer = null; refresh(kind); }, SOON_MS);
}

// What the page shows now, read again (not while the tab is hidden, nor
// while the stream is down: it brings a fresh snapshot when it is back).
function refreshShown() {
  if (document.hidden || !state.live) return;
  const name = currentRoute();
  if (name === null) refresh("list");
  // A route that answered 404 is read again only once an event brings it back.
  else if (state.missing !== name || state.routes.has(name)) { refresh("route"); refresh("runs"); }
}

// A periodic read answered 401 (the tokens changed, e.g. by a reload):
// ask for a token once, not at every read.
async function refusedRead(res) {
  if (state.refused) return;
  state.refused = true;
  tokenRefused("The token was refused (" + (await errorOf(res)) + "). Enter the reader or the writer token.");
}

const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

async function loadList() {
  if (currentRoute() !== null) return;
  const epoch = state.epoch;
  const res = await fetch("/api/v1/routes", { headers: headers(), cache: "no-store" });
  if (res.status === 401) return refusedRead(res);
  if (!res.ok) return;
  const body = await res.json();
  if (!Array.isArray(body) || state.replaced > epoch || currentRoute() !== null) return;
  const routes = new Map(body.map((r) => [r.name, setSince(r.name, epoch) && state.routes.get(r.name) || r]));
  if (same([...routes], [...state.routes])) return;
  state.routes = routes;
  render();
}

async function loadRoute() {
  const name = currentRoute();
  if (name === null) return;
  const epoch = state.epoch;
  const res = await fetch("/api/v1/routes/" + encodeURIComponent(name), { headers: headers(), cache: "no-store" });
  if (res.status === 401) return refusedRead(res);
  if (res.status === 404 && !setSince(name, epoch)) {
    // Gone (a CanaryRoute deleted sends no reload): shown as unknown.
    state.routes.delete(name);
    state.runs.delete(name);
    state.runsText.delete(name);
    if (name !== currentRoute()) return;
    state.missing = name;
    render();
    return;
  }
  if (!res.ok) return;
  const status = await res.json();
  if (setSince(name, epoch) || name !== currentRoute() || same(status, state.routes.get(name))) return;
  state.routes.set(name, status);
  render();
}

// Analysis runs, shown when weir has them.
async function loadRuns() {
  const name = currentRoute();
  if (name === null) return;
  const res = await fetch("/api/v1/routes/" + encodeURIComponent(name) + "/analysisruns", { headers: headers(), cache: "no-store" });
  if (res.status === 401) return refusedRead(res);
  if (!res.ok) return;
  const text = await res.text();
  if (text === state.runsText.get(name)) return;
  let body;
  try { body = JSON.parse(text); } catch (_) { return; }
  state.runsText.set(name, text);
  state.runs.set(name, Array.isArray(body) ? body : []);
  if (name === currentRoute()) render();
}

setInterval(refreshShown, REFRESH_MS);
document.addEventListener("visibilitychange", refreshShown);
connect();
