// Meridian's dashboard: rollouts in flight, each rollout's stages, gates and
// events, and the fleet, kept live from the event stream (server-sent events).
const view = document.getElementById("view");
const status = document.getElementById("status");
const who = document.getElementById("who");

const esc = (text) => String(text ?? "").replace(/[&<>"']/g, (c) => ({
  "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;",
}[c]));
const words = (s) => String(s ?? "").replaceAll("_", " ");
const state = (s) => `<span class="state s-${esc(s)}" data-state="${esc(s)}">${esc(words(s))}</span>`;
const age = (iso) => {
  const secs = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (secs < 60) return `${Math.round(secs)}s ago`;
  if (secs < 3600) return `${Math.round(secs / 60)}m ago`;
  if (secs < 86400) return `${Math.round(secs / 3600)}h ago`;
  return `${Math.round(secs / 86400)}d ago`;
};
const clock = (iso) => new Date(iso).toLocaleTimeString();

// The API token lives for this browser session only.
const TOKEN_KEY = "meridian.token";
const token = () => sessionStorage.getItem(TOKEN_KEY);

const TERMINAL = new Set(["succeeded", "rolled_back", "failed", "aborted"]);
const ATTENTION = new Set(["paused", "awaiting_approval"]);
const STATES = ["pending", "running", "paused", "awaiting_approval", "waiting_for_window",
  "rolling_back", "succeeded", "rolled_back", "failed", "aborted"];
const ROLES = ["viewer", "deployer", "operator", "admin"];
const EVENT_KINDS = ["rollout_created", "rollout_started", "stage_started", "target_applying",
  "target_applied", "target_rolled_out", "target_retrying", "target_failed", "stage_baking",
  "stage_healthy", "awaiting_approval", "approved", "paused", "resumed", "action_rejected",
  "rollback_started", "target_restoring", "target_restored", "target_restore_failed",
  "gate_bad_reading", "gate_paused", "pre_check_passed", "pre_check_failed", "rolled_back",
  "succeeded", "failed", "aborted", "retried", "message",
  // Catalog changes: the fleet page shows a cluster registered or changed.
  "cluster_registered", "cluster_updated", "application_registered", "application_updated"];

class SignInNeeded extends Error {}
class Forbidden extends Error {}

async function api(path, options = {}) {
  const response = await fetch(path, {
    ...options,
    headers: {
      accept: "application/json",
      authorization: `Bearer ${token() ?? ""}`,
      ...(options.body ? { "content-type": "application/json" } : {}),
    },
  });
  const body = await response.json().catch(() => ({}));
  if (response.status === 401) {
    throw new SignInNeeded(token()
      ? "Your token was refused (unknown, revoked or expired). Sign in with another one."
      : "Sign in with an API token to see rollouts.");
  }
  if (response.status === 403) {
    throw new Forbidden(`Your token's role may not do this. ${body.detail ?? ""}`.trim());
  }
  if (!response.ok) {
    const error = new Error(body.detail || `${response.status} ${response.statusText}`);
    error.status = response.status;
    throw error;
  }
  return body;
}

// ---------------------------------------------------------------- sign-in

let me = null;

function renderSignIn(message) {
  closeStream();
  me = null;
  who.innerHTML = "";
  view.innerHTML = `<h1>Sign in</h1>
    <form id="signin" class="card"><p class="notice" role="alert">${esc(message)}</p>
      <label for="token">API token</label>
      <input id="token" type="password" autocomplete="off" required>
      <button type="submit" class="primary">Sign in</button></form>`;
  document.getElementById("signin").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, document.getElementById("token").value.trim());
    route();
  });
  document.getElementById("token").focus();
}

function renderWho() {
  who.innerHTML = `<span>${esc(me.name)} · ${esc(me.role)}</span>
    <button type="button" id="signout" class="link">Sign out</button>`;
  document.getElementById("signout").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    renderSignIn("Signed out.");
  });
}

const mayOperate = () => me && ROLES.indexOf(me.role) >= ROLES.indexOf("operator");

// ---------------------------------------------------------------- live updates

let stream = null;
let onChange = null;
let refreshTimer = null;

/// Refetches the page's data soon; a failed refetch (offline, server
/// restarting) is tried again every 2 s until one succeeds.
function kick(delay = 100) {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(async () => {
    if (onChange && !(await onChange())) kick(2000);
  }, delay);
}
window.addEventListener("online", () => kick());

function closeStream() {
  if (stream) stream.close();
  stream = null;
  onChange = null;
  clearTimeout(refreshTimer);
}

/// Follows the event stream; every event (and every reconnect) refetches.
function openStream(rolloutId, changed) {
  closeStream();
  onChange = changed;
  const query = new URLSearchParams({ access_token: token() ?? "" });
  if (rolloutId) query.set("rollout", rolloutId);
  stream = new EventSource(`/api/v1/events/stream?${query}`);
  for (const kind of EVENT_KINDS) stream.addEventListener(kind, kick);
  stream.addEventListener("open", () => { status.textContent = "live"; kick(); });
  const mine = stream;
  mine.addEventListener("error", () => {
    status.textContent = "reconnecting…";
    // The browser retries a dropped stream by itself, but gives up when a
    // retry fails outright (offline, server down, token refused): then
    // refetch (which shows the sign-in if the token is the problem) and
    // open a new stream, which refetches again once it is connected.
    if (mine.readyState === EventSource.CLOSED) {
      setTimeout(() => {
        if (stream !== mine || !token()) return;
        openStream(rolloutId, changed);
        kick();
      }, 2000);
    }
  });
}

/// Runs `work`, showing what went wrong; false when it is worth retrying.
async function guarded(work) {
  try {
    await work();
    return true;
  } catch (error) {
    if (error instanceof SignInNeeded) {
      sessionStorage.removeItem(TOKEN_KEY);
      renderSignIn(error.message);
      status.textContent = "signed out";
      return true;
    }
    if (error instanceof Forbidden) {
      view.innerHTML = `<h1>Not allowed</h1><p class="notice" role="alert">${esc(error.message)}</p>`;
      return true;
    }
    status.textContent = `cannot refresh: ${error.message}`;
    return false;
  }
}

// ---------------------------------------------------------------- rollouts page

const filters = { application: "", state: "" };

async function mountList() {
  const params = new URLSearchParams(location.search);
  filters.application = params.get("application") ?? "";
  filters.state = params.get("state") ?? "";
  const { items: apps } = await api("/api/v1/applications");
  view.innerHTML = `<h1>Rollouts</h1>
    <form class="filters" id="filters" aria-label="Filter rollouts">
      <label>Application <select name="application"><option value="">all</option>
        ${apps.map((a) => `<option${a.name === filters.application ? " selected" : ""}>${esc(a.name)}</option>`).join("")}</select></label>
      <label>State <select name="state"><option value="">all</option>
        ${STATES.map((s) => `<option value="${s}"${s === filters.state ? " selected" : ""}>${esc(words(s))}</option>`).join("")}</select></label>
    </form>
    <div class="table-wrap"><table id="rollouts"><thead><tr><th>Application</th><th>Version</th><th>State</th><th>Stage</th><th>Started by</th><th>Age</th></tr></thead>
    <tbody></tbody></table></div>`;
  document.getElementById("filters").addEventListener("change", (event) => {
    filters[event.target.name] = event.target.value;
    const query = new URLSearchParams(Object.entries(filters).filter(([, v]) => v));
    history.replaceState(null, "", query.size ? `/?${query}` : "/");
    guarded(updateList);
  });
  await updateList();
  openStream(null, () => guarded(updateList));
}

async function updateList() {
  const query = new URLSearchParams({ limit: "100" });
  for (const [k, v] of Object.entries(filters)) if (v) query.set(k, v);
  const { items } = await api(`/api/v1/rollouts?${query}`);
  // Active first (newest first within each group, as the API answers).
  items.sort((a, b) => TERMINAL.has(a.state) - TERMINAL.has(b.state));
  const rows = items.map((r) => `<tr class="${ATTENTION.has(r.state) ? "attention" : ""}${TERMINAL.has(r.state) ? " done" : ""}" data-id="${esc(r.id)}">
      <td><a href="/rollouts/${esc(r.id)}">${esc(r.application)}</a></td>
      <td>${esc(r.release.version)}</td>
      <td>${state(r.state)}${ATTENTION.has(r.state) ? ' <span class="needs">needs attention</span>' : ""}</td>
      <td>${esc(r.current_stage_name)}</td>
      <td>${esc(r.created_by)}</td>
      <td><time class="age" datetime="${esc(r.created_at)}">${esc(age(r.created_at))}</time></td></tr>`).join("");
  const tbody = document.querySelector("#rollouts tbody");
  if (tbody) tbody.innerHTML = rows || '<tr><td colspan="6">No rollouts match.</td></tr>';
  status.textContent = `updated ${new Date().toLocaleTimeString()}`;
}

// ---------------------------------------------------------------- rollout page

const ACTIONS = [
  { name: "pause", label: "Pause", when: (s) => ["pending", "running", "awaiting_approval", "waiting_for_window"].includes(s) },
  { name: "resume", label: "Resume", when: (s) => s === "paused" },
  { name: "approve", label: "Approve", when: (s) => s === "awaiting_approval" },
  { name: "rollback", label: "Roll back", when: (s) => !TERMINAL.has(s) && s !== "rolling_back", danger: true },
  { name: "abort", label: "Abort", when: (s) => !TERMINAL.has(s), danger: true },
];

let current = null;

async function mountRollout(id) {
  view.innerHTML = `<p><a href="/">← all rollouts</a></p><div id="rollout">Loading…</div>
    <div id="actions" class="actions" aria-label="Actions"></div>
    <h2>Stages</h2><div id="lanes" class="lanes"></div>
    <h2>Gate readings</h2><div id="gates" class="gates"></div>
    <h2>Events</h2><ol id="events" class="events"></ol>`;
  await updateRollout(id);
  openStream(id, () => guarded(() => updateRollout(id)));
}

async function updateRollout(id) {
  const [r, events, gates] = await Promise.all([
    api(`/api/v1/rollouts/${id}`),
    api(`/api/v1/rollouts/${id}/events`),
    api(`/api/v1/rollouts/${id}/gates`),
  ]);
  current = r;
  const head = document.getElementById("rollout");
  if (!head) return;
  head.innerHTML = `<h1>${esc(r.application)} ${esc(r.release.version)} ${state(r.state)}</h1>
    <p>Image <code>${esc(r.release.image)}</code> · plan ${esc(r.plan.name)} v${esc(r.plan.version)}
      · started by ${esc(r.created_by)} <time class="age" datetime="${esc(r.created_at)}">${esc(age(r.created_at))}</time></p>
    ${r.reason ? `<p class="reason">${ATTENTION.has(r.state) ? "⚠ " : ""}${esc(r.reason)}</p>` : ""}`;
  document.title = `${r.application} ${r.release.version} · Meridian`;

  const actions = document.getElementById("actions");
  const allowed = mayOperate() ? ACTIONS.filter((a) => a.when(r.state)) : [];
  const wanted = allowed.map((a) => a.name).join(",");
  if (actions.dataset.shown !== wanted) {
    actions.dataset.shown = wanted;
    actions.innerHTML = allowed.map((a) => `<button type="button" data-action="${a.name}" class="${a.danger ? "danger" : ""}">${esc(a.label)}</button>`).join("");
  }

  const live = !TERMINAL.has(r.state);
  document.getElementById("lanes").innerHTML = r.stages.map((s, i) => {
    const here = i === r.current_stage && live;
    const countdown = here && r.bake_started_at && r.state === "running"
      ? `<p class="bake">Bake: <span data-bake-end="${Date.parse(r.bake_started_at) + s.bake_seconds * 1000}"></span></p>` : "";
    return `<section class="lane${here ? " current" : ""}" aria-label="Stage ${i + 1}: ${esc(s.name)}">
      <h3>${i + 1}. ${esc(s.name)} ${here ? '<span class="tag">current</span>' : ""}
        <small>· ${s.max_parallel} at a time · bake ${s.bake_seconds}s${s.approval ? " · needs approval" : ""}</small></h3>
      ${countdown}
      <ul class="chips">${s.targets.map((t) => `<li class="chip c-${esc(t.state)}" data-cluster="${esc(t.cluster)}" title="${esc(t.message)}">
        <b>${esc(t.cluster)}</b> <small>${esc(t.region)}</small> ${state(t.state)}
        ${t.message ? `<span class="msg">${esc(t.message)}</span>` : ""}</li>`).join("")}</ul>
    </section>`;
  }).join("");
  tick();

  document.getElementById("gates").innerHTML = gateCharts(gates.items ?? []);
  document.getElementById("events").innerHTML = (events.items ?? []).slice().reverse().map((e) =>
    `<li class="ev-${esc(e.kind)}"><time datetime="${esc(e.created_at)}">${esc(clock(e.created_at))}</time>
      <span class="kind">${esc(words(e.kind))}</span>${e.cluster ? ` <span class="cluster">${esc(e.cluster)}</span>` : ""}
      · <b class="actor">${esc(e.actor)}</b> · <span class="message">${esc(e.message)}</span></li>`).join("");
  status.textContent = `updated ${new Date().toLocaleTimeString()}`;
}

// Each second: the bake countdowns and relative times.
function tick() {
  for (const el of document.querySelectorAll("time.age")) el.textContent = age(el.getAttribute("datetime"));
  for (const el of document.querySelectorAll("[data-bake-end]")) {
    const left = Math.max(0, Math.ceil((Number(el.dataset.bakeEnd) - Date.now()) / 1000));
    el.textContent = left > 0 ? `${left}s left` : "done, waiting for gates";
  }
}
setInterval(tick, 1000);

const PALETTE = ["#0b5cad", "#8250df", "#1a7f37", "#bf3989", "#9a6700", "#0a7d7d", "#57606a", "#cf6d17"];

/// One inline SVG chart per gate: a line per cluster over time, the threshold dashed.
function gateCharts(readings) {
  if (!readings.length) return "<p>No gate readings yet.</p>";
  const byGate = new Map();
  for (const g of readings) {
    if (!byGate.has(g.gate)) byGate.set(g.gate, []);
    byGate.get(g.gate).push(g);
  }
  const W = 640, H = 200, L = 56, R = 12, T = 12, B = 28;
  return [...byGate].map(([gate, list]) => {
    const times = list.map((g) => Date.parse(g.created_at));
    const values = list.map((g) => g.value).filter((v) => typeof v === "number");
    const thresholds = list.map((g) => g.threshold).filter((v) => typeof v === "number");
    const t0 = Math.min(...times), t1 = Math.max(...times, t0 + 1000);
    const vmax = Math.max(...values, ...thresholds, 1e-9) * 1.15;
    const x = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - R);
    const y = (v) => T + (1 - v / vmax) * (H - T - B);
    const clusters = [...new Set(list.map((g) => g.cluster))];
    const lines = clusters.map((c, i) => {
      const pts = list.filter((g) => g.cluster === c && typeof g.value === "number");
      const colour = PALETTE[i % PALETTE.length];
      const path = pts.map((g, k) => `${k ? "L" : "M"}${x(Date.parse(g.created_at)).toFixed(1)},${y(g.value).toFixed(1)}`).join(" ");
      const dots = pts.map((g) => `<circle class="reading v-${esc(g.verdict)}" data-cluster="${esc(c)}" data-value="${g.value}" cx="${x(Date.parse(g.created_at)).toFixed(1)}" cy="${y(g.value).toFixed(1)}" r="${g.verdict === "pass" ? 2.5 : 4}" fill="${g.verdict === "pass" ? colour : "#cf222e"}"><title>${esc(c)} ${esc(g.value)} (${esc(g.verdict)}) at ${esc(clock(g.created_at))}</title></circle>`).join("");
      return `<path d="${path}" fill="none" stroke="${colour}" stroke-width="1.5"/>${dots}`;
    }).join("");
    const threshold = thresholds.length ? thresholds[thresholds.length - 1] : null;
    const tline = threshold === null ? "" : `<line class="threshold" data-threshold="${threshold}" x1="${L}" x2="${W - R}" y1="${y(threshold).toFixed(1)}" y2="${y(threshold).toFixed(1)}" stroke="#cf222e" stroke-dasharray="5 4"/>
      <text x="${W - R}" y="${(y(threshold) - 4).toFixed(1)}" text-anchor="end" font-size="11" fill="#cf222e">threshold ${esc(threshold)}</text>`;
    const bad = list.filter((g) => g.verdict !== "pass").length;
    const legend = clusters.map((c, i) => `<span><i style="background:${PALETTE[i % PALETTE.length]}"></i>${esc(c)}</span>`).join("");
    return `<figure class="gate" data-gate="${esc(gate)}">
      <figcaption><b>${esc(gate)}</b> · ${list.length} readings${bad ? ` · <span class="bad">${bad} not passing</span>` : ""}</figcaption>
      <svg viewBox="0 0 ${W} ${H}" role="img" aria-label="${esc(gate)} readings per cluster over time">
        <line x1="${L}" x2="${L}" y1="${T}" y2="${H - B}" stroke="#d0d7de"/>
        <line x1="${L}" x2="${W - R}" y1="${H - B}" y2="${H - B}" stroke="#d0d7de"/>
        <text x="${L - 4}" y="${T + 8}" text-anchor="end" font-size="10">${esc(+vmax.toPrecision(2))}</text>
        <text x="${L - 4}" y="${H - B}" text-anchor="end" font-size="10">0</text>
        <text x="${L}" y="${H - 8}" font-size="10">${esc(clock(t0))}</text>
        <text x="${W - R}" y="${H - 8}" text-anchor="end" font-size="10">${esc(clock(t1))}</text>
        ${tline}${lines}
      </svg><p class="legend">${legend}</p></figure>`;
  }).join("");
}

// The confirmation dialog: asks for a reason, then POSTs `{reason}`.
const dialog = document.getElementById("confirm");
const reasonBox = document.getElementById("confirm-reason");
const dialogError = document.getElementById("confirm-error");
let pending = null;

view.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-action]");
  if (!button || !current) return;
  const action = ACTIONS.find((a) => a.name === button.dataset.action);
  pending = { id: current.id, action: action.name };
  document.getElementById("confirm-title").textContent = `${action.label} ${current.application} ${current.release.version}?`;
  document.getElementById("confirm-text").textContent = action.danger
    ? `This will ${action.name === "abort" ? "stop the rollout and leave clusters as they are" : "put every changed cluster back"}.`
    : `The rollout will ${action.name}.`;
  document.getElementById("confirm-ok").textContent = action.label;
  document.getElementById("confirm-ok").className = action.danger ? "danger" : "primary";
  reasonBox.value = "";
  dialogError.textContent = "";
  dialog.showModal();
  reasonBox.focus();
});
document.getElementById("confirm-cancel").addEventListener("click", () => dialog.close());
document.getElementById("confirm-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const reason = reasonBox.value.trim();
  if (!reason) { dialogError.textContent = "Give a reason."; return; }
  try {
    await api(`/api/v1/rollouts/${pending.id}/${pending.action}`, {
      method: "POST", body: JSON.stringify({ reason }),
    });
    dialog.close();
    status.textContent = `${pending.action} requested`;
    await guarded(() => updateRollout(pending.id));
  } catch (error) {
    dialogError.textContent = error instanceof SignInNeeded ? error.message : error.message;
  }
});

// ---------------------------------------------------------------- fleet page

async function mountFleet() {
  view.innerHTML = `<h1>Fleet</h1><p>The version each cluster runs per application: the latest
    succeeded rollout, and any rollout in flight there.</p><div id="fleet"></div>`;
  await updateFleet();
  openStream(null, () => guarded(updateFleet));
}

async function updateFleet() {
  const [{ items: clusters }, { items: apps }, { items: recent }] = await Promise.all([
    api("/api/v1/clusters"), api("/api/v1/applications"), api("/api/v1/rollouts?limit=200"),
  ]);
  // Per application its succeeded rollouts (newest first), plus what is in flight.
  const succeeded = await Promise.all(apps.map((a) =>
    api(`/api/v1/rollouts?${new URLSearchParams({ application: a.name, state: "succeeded", limit: "100" })}`)));
  const inFlight = recent.filter((r) => !TERMINAL.has(r.state));
  const targetOf = (r, cluster) => r.stages.flatMap((s) => s.targets).find((t) => t.cluster === cluster);
  const cell = (app, i, cluster) => {
    const done = succeeded[i].items.find((r) => targetOf(r, cluster));
    const running = done ? `<b>${esc(done.release.version)}</b>` : '<span class="muted">—</span>';
    const flights = inFlight.filter((r) => r.application === app && targetOf(r, cluster)).map((r) =>
      `<a href="/rollouts/${esc(r.id)}" class="flight">→ ${esc(r.release.version)}</a> ${state(targetOf(r, cluster).state)}${r.state !== "running" ? ` <small>(rollout ${state(r.state)})</small>` : ""}`);
    return `${running} ${flights.join(" ")}`;
  };
  const regions = new Map();
  for (const c of clusters) {
    if (!regions.has(c.region)) regions.set(c.region, []);
    regions.get(c.region).push(c);
  }
  const el = document.getElementById("fleet");
  if (!el) return;
  el.innerHTML = [...regions].sort(([a], [b]) => a.localeCompare(b)).map(([region, list]) => `
    <section class="region card"><h2>${esc(region)}</h2>
      <div class="table-wrap"><table><thead><tr><th>Cluster</th>${apps.map((a) => `<th>${esc(a.name)}</th>`).join("")}</tr></thead>
      <tbody>${list.map((c) => `<tr data-cluster="${esc(c.name)}"><td>${esc(c.name)} <small class="muted">${esc(Object.entries(c.labels).map(([k, v]) => `${k}=${v}`).join(" "))}</small></td>
        ${apps.map((a, i) => `<td>${cell(a.name, i, c.name)}</td>`).join("")}</tr>`).join("")}</tbody></table></div>
    </section>`).join("");
  status.textContent = `updated ${new Date().toLocaleTimeString()}`;
}

// ---------------------------------------------------------------- routing

async function route() {
  closeStream();
  current = null;
  if (!token()) { renderSignIn("Sign in with an API token to see rollouts."); return; }
  const done = await guarded(async () => {
    me = await api("/api/v1/whoami");
    renderWho();
    const path = location.pathname;
    for (const a of document.querySelectorAll("[data-nav]")) {
      if ((a.dataset.nav === "fleet") === (path === "/fleet")) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
    }
    const match = path.match(/^\/rollouts\/([0-9a-f-]{36})$/);
    if (match) await mountRollout(match[1]);
    else if (path === "/fleet") await mountFleet();
    else await mountList();
  });
  // The server could not be reached: try again.
  if (!done) setTimeout(route, 3000);
}

route();
