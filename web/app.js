// Meridian's dashboard: rollouts in flight and each rollout's stages,
// refreshed from the REST API.
const view = document.getElementById("view");
const status = document.getElementById("status");
const REFRESH_MS = 2000;

const esc = (text) => String(text ?? "").replace(/[&<>"']/g, (c) => ({
  "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;",
}[c]));
const state = (s) => `<span class="state s-${esc(s)}">${esc(s.replaceAll("_", " "))}</span>`;
const age = (iso) => {
  const secs = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (secs < 60) return `${Math.round(secs)}s ago`;
  if (secs < 3600) return `${Math.round(secs / 60)}m ago`;
  return `${Math.round(secs / 3600)}h ago`;
};

// The API token lives for this browser session only.
const TOKEN_KEY = "meridian.token";
const token = () => sessionStorage.getItem(TOKEN_KEY);

class SignInNeeded extends Error {}

async function api(path) {
  const response = await fetch(path, {
    headers: { accept: "application/json", authorization: `Bearer ${token() ?? ""}` },
  });
  const body = await response.json().catch(() => ({}));
  if (response.status === 401) throw new SignInNeeded(body.detail || "sign in with an API token");
  if (response.status === 403) throw new Error(`your token may not see this: ${body.detail ?? ""}`);
  if (!response.ok) throw new Error(body.detail || `${response.status} ${response.statusText}`);
  return body;
}

function renderSignIn(message) {
  view.innerHTML = `<h1>Sign in</h1>
    <form id="signin"><p>${esc(message)}</p>
      <label for="token">API token</label>
      <input id="token" type="password" autocomplete="off" required>
      <button type="submit">Sign in</button></form>`;
  document.getElementById("signin").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, document.getElementById("token").value.trim());
    refresh();
  });
  document.getElementById("token").focus();
}

const TERMINAL = new Set(["succeeded", "rolled_back", "failed", "aborted"]);

async function renderList() {
  const { items } = await api("/api/v1/rollouts?limit=100");
  items.sort((a, b) => TERMINAL.has(a.state) - TERMINAL.has(b.state));
  const rows = items.map((r) => `<tr>
      <td><a href="/rollouts/${esc(r.id)}">${esc(r.application)}</a></td>
      <td>${esc(r.release.version)}</td>
      <td>${state(r.state)}</td>
      <td>${esc(r.current_stage_name)}</td>
      <td>${esc(r.created_by)}</td>
      <td>${esc(age(r.created_at))}</td></tr>`).join("");
  view.innerHTML = `<h1>Rollouts</h1>
    <table><thead><tr><th>Application</th><th>Version</th><th>State</th><th>Stage</th><th>Started by</th><th>Age</th></tr></thead>
    <tbody>${rows || '<tr><td colspan="6">No rollouts yet.</td></tr>'}</tbody></table>`;
}

async function renderRollout(id) {
  const [r, events] = await Promise.all([
    api(`/api/v1/rollouts/${id}`),
    api(`/api/v1/rollouts/${id}/events`),
  ]);
  const lanes = r.stages.map((s, i) => `<section class="lane ${i === r.current_stage && !TERMINAL.has(r.state) ? "current" : ""}">
      <h3>${i + 1}. ${esc(s.name)} <small>· ${s.max_parallel} at a time · bake ${s.bake_seconds}s${s.approval ? " · needs approval" : ""}</small></h3>
      <div class="chips">${s.targets.map((t) => `<span class="chip" title="${esc(t.message)}">${esc(t.cluster)} <small>${esc(t.region)}</small> ${state(t.state)}</span>`).join("")}</div>
    </section>`).join("");
  const timeline = events.items.slice().reverse().map((e) =>
    `<li><time datetime="${esc(e.created_at)}">${esc(new Date(e.created_at).toLocaleTimeString())}</time> · <b>${esc(e.actor)}</b> · ${esc(e.message)}</li>`).join("");
  view.innerHTML = `<p><a href="/">← all rollouts</a></p>
    <h1>${esc(r.application)} ${esc(r.release.version)} ${state(r.state)}</h1>
    <p>Image <code>${esc(r.release.image)}</code> · plan ${esc(r.plan.name)} v${r.plan.version}${r.reason ? ` · ${esc(r.reason)}` : ""}</p>
    <div class="lanes">${lanes}</div>
    <h2>Events</h2><ol class="events">${timeline}</ol>`;
}

let signingIn = false;

async function refresh() {
  if (signingIn && !token()) return;
  const match = location.pathname.match(/^\/rollouts\/([0-9a-f-]{36})$/);
  try {
    await (match ? renderRollout(match[1]) : renderList());
    signingIn = false;
    status.textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (error) {
    if (error instanceof SignInNeeded) {
      if (!signingIn || token()) {
        sessionStorage.removeItem(TOKEN_KEY);
        signingIn = true;
        renderSignIn(error.message);
      }
      status.textContent = "signed out";
      return;
    }
    status.textContent = `cannot refresh: ${error.message}`;
  }
}

refresh();
setInterval(refresh, REFRESH_MS);
