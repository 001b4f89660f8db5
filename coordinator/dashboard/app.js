// The dashboard page: token sign-in, the views (applications → groups → deployments → one deployment's grid, and
// the audit trail for admins), live updates, the log panel and the operator buttons (shown only to tokens whose
// role allows them: `GET /v1/whoami`; the API still decides, and its 403 message is shown if a refusal comes). All text from the API goes into the page through
// textContent / text nodes, never parsed as HTML: deployment logs are hostile input.

import * as api from "./api.js";
import {
  STEP_STATES,
  NOT_PLANNED,
  actionsFor,
  buildFragment,
  deploymentDuration,
  findStep,
  formatDuration,
  formatTime,
  gridColumns,
  gridRows,
  isTerminal,
  kindText,
  logText,
  mayDeploy,
  parseFragment,
  routeOf,
  stateCounts,
  stateLook,
  stepDuration,
  takeToken,
  whoText,
} from "./model.js";

// While a deployment runs without the events stream, it is read this often.
const POLL_MS = 1000;
// At most this many pages of one cell's log are read (each page is the server's page size).
const MAX_LOG_PAGES = 100;

const $ = (id) => document.getElementById(id);

/** An element with attributes (`class`, `data-*`, `href`, …, `hidden`) and children (nodes or text). */
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (v === true) e.setAttribute(k, "");
    else e.setAttribute(k, String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

const enc = encodeURIComponent;
const link = (params, text, attrs = {}) => el("a", { href: buildFragment(params), ...attrs }, text);

function statusBadge(status, attrs = {}) {
  return el("span", { class: `badge status-${status}`, "data-status": status, ...attrs }, status.replace("_", " "));
}

// ------------------------------------------------------------------------------------------------------------
// Sign-in and routing

/** The view being shown: its abort controller stops its fetches, streams and timers when the view changes. */
let current = null;

/** Who the token is (`GET /v1/whoami`), read once per token. */
let who = null;

/** Read who the token is, and show it (and the audit link for admins) in the header. */
async function identify(signal) {
  if (!who) who = await api.get("/whoami", { signal });
  $("whoami").textContent = whoText(who);
  $("audit-link").hidden = who.role !== "admin";
}

function forget() {
  api.clearToken();
  who = null;
  $("whoami").textContent = "";
  $("audit-link").hidden = true;
}

function absorbTokenFromFragment() {
  const { token, rest } = takeToken(location.hash);
  if (token) {
    forget();
    api.setToken(token);
    // The token must not stay in the address bar, the history or a bookmark.
    history.replaceState(null, "", `${location.pathname}${location.search}${rest}`);
  }
}

function showError(message) {
  const e = $("error");
  e.textContent = message;
  e.hidden = !message;
}

function showLogin(message = "") {
  $("login").hidden = false;
  $("signout").hidden = true;
  $("view").replaceChildren();
  $("crumbs").replaceChildren();
  $("login-error").textContent = message;
  $("token-input").focus();
}

function crumbs(parts) {
  const nav = $("crumbs");
  nav.replaceChildren();
  for (const p of parts) {
    nav.append(el("span", { class: "sep" }, "›"), p);
  }
}

/** How often the list views re-read the API (the deployment view follows its event stream instead). */
const LIST_REFRESH_MS = 3000;

async function render() {
  if (current) current.abort();
  current = new AbortController();
  const signal = current.signal;
  showError("");
  if (!api.token()) {
    showLogin();
    return;
  }
  $("login").hidden = true;
  $("signout").hidden = false;
  const route = routeOf(parseFragment(location.hash));
  const view = $("view");
  view.replaceChildren(el("p", { class: "muted" }, "Loading…"));
  try {
    await identify(signal);
    if (route.view === "deployment") {
      await deploymentView(view, route.id, signal);
    } else {
      const list =
        route.view === "group"
          ? () => groupView(view, route.app, route.group, signal)
          : route.view === "application"
            ? () => applicationView(view, route.app, signal)
            : route.view === "audit"
              ? () => auditView(view, signal)
              : () => homeView(view, signal);
      await list();
      // Lists have no event stream: re-read them so new deployments and status changes show up without a reload.
      while (!signal.aborted) {
        await sleep(LIST_REFRESH_MS, signal);
        if (!signal.aborted) await list();
      }
    }
  } catch (e) {
    if (signal.aborted) return;
    if (e instanceof api.ApiError && e.status === 401) {
      forget();
      showLogin(`The coordinator refused the token: ${e.message}`);
      return;
    }
    showError(e.message ?? String(e));
  }
}

function start() {
  absorbTokenFromFragment();
  window.addEventListener("hashchange", () => {
    absorbTokenFromFragment();
    render();
  });
  $("login-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const t = $("token-input").value.trim();
    if (!t) return;
    forget();
    api.setToken(t);
    $("token-input").value = "";
    render();
  });
  $("signout").addEventListener("click", () => {
    forget();
    render();
  });
  render();
}

// ------------------------------------------------------------------------------------------------------------
// Lists

function deploymentsTable(list, now) {
  if (list.length === 0) return el("p", { class: "muted" }, "No deployments yet.");
  const head = el(
    "tr",
    {},
    ["Deployment", "Application", "Group", "Status", "Style", "Revision", "Kind", "Created", "Duration"].map((h) =>
      el("th", { scope: "col" }, h),
    ),
  );
  const rows = list.map((d) =>
    el(
      "tr",
      { "data-deployment": d.id },
      el("td", {}, link({ deployment: d.id }, d.id, { class: "mono" })),
      el("td", {}, link({ app: d.application }, d.application)),
      el("td", {}, link({ app: d.application, group: d.group }, d.group)),
      el("td", {}, statusBadge(d.status)),
      el("td", {}, d.style),
      el("td", { class: "mono" }, d.revision),
      el("td", {}, kindText(d.kind)),
      el("td", {}, formatTime(d.created_at_ms)),
      el("td", {}, formatDuration(deploymentDuration(d, now))),
    ),
  );
  return el("table", { class: "list" }, el("thead", {}, head), el("tbody", {}, rows));
}

/** Deployments shown under "Recent deployments": one page, newest first. */
const RECENT_DEPLOYMENTS = 50;

/** The newest deployments (summaries), of one application or group when given. */
async function recentDeployments(signal, app, group) {
  const q = new URLSearchParams({ limit: String(RECENT_DEPLOYMENTS) });
  if (app) q.set("application", app);
  if (group) q.set("group", group);
  const page = await api.get(`/deployments?${q}`, { signal });
  return page.items;
}

async function homeView(view, signal) {
  crumbs([]);
  const [apps, deployments] = await Promise.all([
    api.getAll("/applications", { signal }),
    recentDeployments(signal),
  ]);
  const appList =
    apps.length === 0
      ? el("p", { class: "muted" }, "No applications yet: `rollcage app create NAME`.")
      : el(
          "table",
          { class: "list" },
          el("thead", {}, el("tr", {}, el("th", {}, "Application"), el("th", {}, "Created"))),
          el(
            "tbody",
            {},
            apps.map((a) =>
              el("tr", {}, el("td", {}, link({ app: a.name }, a.name)), el("td", {}, formatTime(a.created_at_ms))),
            ),
          ),
        );
  view.replaceChildren(
    el("h1", {}, "Applications"),
    appList,
    el("h2", {}, "Recent deployments"),
    deploymentsTable(deployments, Date.now()),
  );
}

async function applicationView(view, app, signal) {
  crumbs([link({ app }, app)]);
  const [groups, deployments] = await Promise.all([
    api.getAll(`/applications/${enc(app)}/groups`, { signal }),
    recentDeployments(signal, app),
  ]);
  const groupList =
    groups.length === 0
      ? el("p", { class: "muted" }, "No deployment groups yet.")
      : el(
          "table",
          { class: "list" },
          el(
            "thead",
            {},
            el("tr", {}, ["Group", "Style", "Concurrency", "Tolerance", "Auto rollback", "Instances"].map((h) => el("th", {}, h))),
          ),
          el(
            "tbody",
            {},
            groups.map((g) =>
              el(
                "tr",
                {},
                el("td", {}, link({ app, group: g.name }, g.name)),
                el("td", {}, g.style),
                el("td", {}, g.concurrency),
                el("td", {}, String(g.failure_tolerance)),
                el("td", {}, g.auto_rollback ? "yes" : "no"),
                el("td", {}, g.instances.length ? g.instances.join(", ") : "every enrolled instance"),
              ),
            ),
          ),
        );
  view.replaceChildren(
    el("h1", {}, `Application ${app}`),
    el("h2", {}, "Deployment groups"),
    groupList,
    el("h2", {}, "Recent deployments"),
    deploymentsTable(deployments, Date.now()),
  );
}

async function groupView(view, app, group, signal) {
  crumbs([link({ app }, app), link({ app, group }, group)]);
  const [g, deployments] = await Promise.all([
    api.get(`/applications/${enc(app)}/groups/${enc(group)}`, { signal }),
    recentDeployments(signal, app, group),
  ]);
  view.replaceChildren(
    el("h1", {}, `Group ${g.name}`),
    facts([
      ["Application", link({ app }, app)],
      ["Style", g.style],
      ["Concurrency", g.concurrency],
      ["Failures tolerated", String(g.failure_tolerance)],
      ["Automatic rollback", g.auto_rollback ? "yes" : "no"],
      ["Instances", g.instances.length ? g.instances.join(", ") : "every enrolled instance"],
      ["Created", formatTime(g.created_at_ms)],
    ]),
    el("h2", {}, "Recent deployments"),
    deploymentsTable(deployments, Date.now()),
  );
}

/** Entries shown on the audit page: the newest page. */
const AUDIT_ENTRIES = 200;

/** The audit trail (admins): every state-changing request and every refusal, newest first. */
async function auditView(view, signal) {
  crumbs([link({ view: "audit" }, "Audit")]);
  const page = await api.get(`/audit?limit=${AUDIT_ENTRIES}`, { signal });
  const rows = page.items.map((e) =>
    el(
      "tr",
      { "data-audit": String(e.seq), class: e.status === 401 || e.status === 403 ? "refused" : "" },
      el("td", {}, formatTime(e.at_ms)),
      el("td", {}, e.actor),
      el("td", {}, e.role ?? "—"),
      el("td", { class: "mono" }, e.action),
      el("td", { class: "mono" }, e.target || "—"),
      el("td", {}, String(e.status)),
      el("td", {}, e.outcome),
      el("td", { class: "mono" }, e.remote_addr),
    ),
  );
  const table =
    rows.length === 0
      ? el("p", { class: "muted" }, "Nothing recorded yet.")
      : el(
          "table",
          { class: "list", id: "audit" },
          el(
            "thead",
            {},
            el(
              "tr",
              {},
              ["Time", "Who", "Role", "Action", "Target", "Status", "Outcome", "From"].map((h) =>
                el("th", { scope: "col" }, h),
              ),
            ),
          ),
          el("tbody", {}, rows),
        );
  view.replaceChildren(
    el("h1", {}, "Audit trail"),
    el("p", { class: "muted" }, `The newest ${AUDIT_ENTRIES} entries; \`rollcage audit\` reads further.`),
    table,
  );
}

/** A definition list of [label, value] pairs; values may be nodes. Each <dd> gets `data-fact=<label>`. */
function facts(pairs) {
  return el(
    "dl",
    { class: "facts" },
    pairs.map(([k, v]) => el("div", {}, el("dt", {}, k), el("dd", { "data-fact": k.toLowerCase() }, v))),
  );
}

// ------------------------------------------------------------------------------------------------------------
// One deployment

function legend() {
  return el(
    "ul",
    { class: "legend", "aria-label": "legend" },
    Object.entries(STEP_STATES).map(([state, look]) =>
      el("li", {}, el("span", { class: `swatch state-${state}` }, look.symbol), look.label),
    ),
  );
}

/** The deployment page: header, buttons, grid and log panel, kept up to date until the view changes. */
async function deploymentView(view, id, signal) {
  const first = await api.get(`/deployments/${enc(id)}`, { signal });
  const page = new DeploymentPage(view, id, signal);
  page.update(first);
  page.follow();
}

class DeploymentPage {
  constructor(view, id, signal) {
    this.id = id;
    this.signal = signal;
    this.d = null;
    this.cells = new Map(); // "instance\u0000event" -> button
    this.shape = ""; // rows and columns the grid was built for
    this.selected = null; // {instance, event, state}
    this.logRequest = 0;

    this.title = el("h1", {}, `Deployment `, el("span", { class: "mono" }, id), " ");
    this.status = el("span", { id: "deployment-status" });
    this.title.append(this.status);
    this.message = el("p", { id: "deployment-message", class: "message" });
    this.facts = el("div");
    this.live = el("p", { id: "live", class: "muted" });
    this.actionError = el("p", { id: "action-error", class: "error", role: "alert" });
    this.buttons = {
      stop: el("button", { id: "action-stop", type: "button" }, "Stop"),
      forceStop: el("button", { id: "action-force-stop", type: "button", class: "danger" }, "Force stop"),
      rollback: el("button", { id: "action-rollback", type: "button" }, "Roll back"),
    };
    this.buttons.stop.addEventListener("click", () =>
      this.act("stop", "Stop this deployment? In-flight instances finish their current step.", "stop", {
        force: false,
      }),
    );
    this.buttons.forceStop.addEventListener("click", () =>
      this.act("force stop", "Force-stop this deployment? In-flight steps are cancelled.", "stop", { force: true }),
    );
    this.buttons.rollback.addEventListener("click", () =>
      this.act("roll back", "Roll the group back to its last successful revision?", "rollback", {}),
    );
    this.bakes = el("section", { id: "bakes", hidden: true });
    this.summary = el("p", { id: "grid-summary", class: "muted" });
    this.grid = el("table", { id: "grid", class: "grid" });
    this.panel = el("section", { id: "log-panel", class: "panel", hidden: true, "aria-live": "polite" });

    view.replaceChildren(
      this.title,
      this.message,
      this.facts,
      el("div", { class: "actions" }, Object.values(this.buttons), this.actionError),
      this.live,
      this.bakes,
      el("div", { class: "grid-head" }, el("h2", {}, "Instances × lifecycle events"), legend()),
      this.summary,
      el("div", { class: "grid-wrap" }, this.grid),
      this.panel,
    );
    // Running durations tick even when nothing else changes.
    const ticker = setInterval(() => this.tick(), 1000);
    signal.addEventListener("abort", () => clearInterval(ticker));
  }

  /** Show a new snapshot of the deployment. */
  update(d) {
    if (this.signal.aborted) return;
    this.d = d;
    crumbs([
      link({ app: d.application }, d.application),
      link({ app: d.application, group: d.group }, d.group),
      link({ deployment: d.id }, d.id),
    ]);
    this.status.replaceChildren(statusBadge(d.status));
    this.message.textContent = d.message;
    this.message.hidden = !d.message;
    const kind =
      d.kind?.kind === "rollback"
        ? el("span", {}, d.kind.automatic ? "automatic rollback of " : "rollback of ", link({ deployment: d.kind.of }, d.kind.of))
        : kindText(d.kind);
    const rollback = d.rollback_deployment
      ? link({ deployment: d.rollback_deployment }, d.rollback_deployment, { id: "rollback-link", class: "mono" })
      : "—";
    this.facts.replaceChildren(
      facts([
        ["Application", link({ app: d.application }, d.application)],
        ["Group", link({ app: d.application, group: d.group }, d.group)],
        ["Revision", el("span", { class: "mono" }, d.revision)],
        ["Style", d.style],
        ["Concurrency", d.concurrency],
        ["Kind", kind],
        ["Created", formatTime(d.created_at_ms)],
        ["Ended", formatTime(d.ended_at_ms)],
        ["Duration", el("span", { id: "duration" }, formatDuration(deploymentDuration(d, Date.now())))],
        ["Rollback", rollback],
        ["Created by", d.actors?.created_by ?? "—"],
        ["Stopped by", d.actors?.stopped_by ?? "—"],
        ["Rolled back by", d.actors?.rolled_back_by ?? "—"],
        ["Continued by", d.actors?.continued_by ?? "—"],
      ]),
    );
    const can = actionsFor(d);
    // Buttons the token's role may not use are hidden; the API decides all the same.
    const allowed = mayDeploy(who, d.application);
    for (const [name, button] of Object.entries(this.buttons)) button.hidden = !(can[name] && allowed);
    this.renderBakes(d);
    this.renderGrid(d);
    if (isTerminal(d.status)) this.live.textContent = "Ended.";
  }

  /** The canary's step and weight (or each instance's analysis gate) and every interval's verdict. */
  renderBakes(d) {
    const bakes = d.bakes ?? [];
    this.bakes.hidden = bakes.length === 0;
    if (!bakes.length) return;
    const side = (f, avg) =>
      `${f.requests} req · ${f.error_rate == null ? "—" : (f.error_rate * 100).toFixed(2) + " %"} 5xx · ` +
      `${avg ? "avg" : "p99"} ${f.latency_ms == null ? "—" : f.latency_ms.toFixed(1) + " ms"}`;
    const result = (v) =>
      v.result === "no_verdict"
        ? `no verdict: ${v.requests} < min_requests ${v.min_requests}`
        : v.result === "fail"
          ? `fail: ${(v.breaches ?? []).map((b) => b.figure).join(", ")}`
          : "pass";
    this.bakes.replaceChildren(
      ...bakes.map((b) => {
        const s = b.state;
        // An analysis has no steps: the API leaves the field out.
        const steps = b.steps ?? [];
        const title = b.instance
          ? `Analysis of ${b.instance}`
          : `Canary: step ${s.step + 1} of ${steps.length}, ${s.weight} % of traffic on the new group`;
        const rows = b.verdicts.map((v) =>
          el(
            "tr",
            { class: `verdict-${v.result}` },
            el("td", {}, String(v.interval)),
            el("td", {}, steps.length ? `${v.step + 1} (${v.weight} %)` : "—"),
            el("td", {}, result(v)),
            el("td", {}, side(v.new, v.latency_is_average)),
            el("td", {}, side(v.old, v.latency_is_average)),
          ),
        );
        return el(
          "div",
          { class: "bake", "data-bake": b.instance ?? "canary" },
          el("h2", {}, title, " ", el("span", { class: "muted" }, `(${s.phase.replace("_", " ")})`)),
          s.abort_message ? el("p", { class: "error" }, s.abort_message) : "",
          el(
            "table",
            { class: "verdicts" },
            el(
              "thead",
              {},
              el(
                "tr",
                {},
                ["Interval", "Step", "Verdict", "New group", "Old group"].map((h) => el("th", { scope: "col" }, h)),
              ),
            ),
            el("tbody", {}, rows),
          ),
        );
      }),
    );
  }

  tick() {
    const d = this.d;
    if (!d || isTerminal(d.status)) return;
    const e = document.getElementById("duration");
    if (e) e.textContent = formatDuration(deploymentDuration(d, Date.now()));
  }

  renderGrid(d) {
    const columns = gridColumns(d);
    const rows = gridRows(d, columns);
    const shape = JSON.stringify([columns, rows.map((r) => r.instance)]);
    if (shape !== this.shape) this.buildGrid(columns, rows, shape);
    for (const row of rows) {
      const status = this.grid.querySelector(`tr[data-row="${CSS.escape(row.instance)}"] .instance-status`);
      if (status) status.replaceChildren(statusBadge(row.status));
      for (const cell of row.cells) this.paintCell(this.cells.get(`${cell.instance}\u0000${cell.event}`), cell);
    }
    const counts = stateCounts(rows);
    this.summary.textContent =
      Object.entries(counts)
        .map(([s, n]) => `${n} ${stateLook(s).label}`)
        .join(" · ") || "No steps planned.";
    if (this.selected) {
      const step = findStep(d, this.selected.instance, this.selected.event);
      const state = step ? step.state : NOT_PLANNED;
      // The log grows while a step runs and is final once it ends: read it again when the cell changes.
      if (state !== this.selected.state) this.openLog(this.selected.instance, this.selected.event);
    }
  }

  /** (Re)build the table when its rows or columns change; cells keep their identity otherwise. */
  buildGrid(columns, rows, shape) {
    this.shape = shape;
    this.cells.clear();
    const head = el(
      "tr",
      {},
      el("th", { scope: "col" }, "Instance"),
      el("th", { scope: "col" }, "Status"),
      columns.map((c) => el("th", { scope: "col", class: "event" }, c)),
    );
    const body = rows.map((row) =>
      el(
        "tr",
        { "data-row": row.instance },
        el("th", { scope: "row", class: "mono" }, row.instance),
        el("td", { class: "instance-status" }),
        row.cells.map((cell) => {
          const button = el("button", {
            type: "button",
            class: "cell",
            "data-instance": cell.instance,
            "data-event": cell.event,
          });
          button.addEventListener("click", () => this.openLog(cell.instance, cell.event));
          this.cells.set(`${cell.instance}\u0000${cell.event}`, button);
          return el("td", {}, button);
        }),
      ),
    );
    this.grid.replaceChildren(el("thead", {}, head), el("tbody", {}, body));
  }

  paintCell(button, cell) {
    if (!button) return;
    const look = cell.state === NOT_PLANNED ? { symbol: "", label: "not in plan" } : stateLook(cell.state);
    button.dataset.state = cell.state;
    button.className = `cell state-${cell.state}`;
    button.disabled = cell.state === NOT_PLANNED;
    const took = stepDuration(cell.step, Date.now());
    button.title = `${cell.instance} · ${cell.event}: ${look.label}${took === null ? "" : ` (${formatDuration(took)})`}`;
    button.setAttribute("aria-label", button.title);
    button.replaceChildren(el("span", { class: "sym" }, look.symbol), el("span", { class: "word" }, look.label));
    const selected = this.selected && this.selected.instance === cell.instance && this.selected.event === cell.event;
    button.classList.toggle("selected", Boolean(selected));
  }

  /** Open the log panel on one cell and load its log. */
  async openLog(instance, event) {
    const d = this.d;
    const step = findStep(d, instance, event);
    const state = step ? step.state : NOT_PLANNED;
    this.selected = { instance, event, state };
    for (const b of this.cells.values()) {
      b.classList.toggle("selected", b.dataset.instance === instance && b.dataset.event === event);
    }
    const request = ++this.logRequest;
    const text = el("pre", { id: "log-text", class: "log" }, "Loading…");
    const note = el("p", { id: "log-note", class: "muted" });
    const close = el("button", { type: "button", class: "quiet", id: "log-close" }, "Close");
    close.addEventListener("click", () => {
      this.selected = null;
      this.panel.hidden = true;
      for (const b of this.cells.values()) b.classList.remove("selected");
    });
    const look = stateLook(state);
    this.panel.dataset.instance = instance;
    this.panel.dataset.event = event;
    this.panel.dataset.state = state;
    this.panel.replaceChildren(
      el(
        "div",
        { class: "panel-head" },
        el("h2", {}, el("span", { class: "mono" }, instance), " · ", event),
        el("span", { class: `badge state-${state}` }, `${look.symbol} ${look.label}`),
        close,
      ),
      el("p", { id: "log-message", class: "message" }, step?.message || ""),
      text,
      note,
    );
    this.panel.hidden = false;

    let shown;
    let source;
    try {
      const r = await this.fullLog(d.id, instance, event);
      shown = r.text;
      // Agents send a step's output with its report, so an unfinished step has none yet.
      const unfinished = !r.ended && (state === "running" || state === "pending");
      source = unfinished ? "The step's output arrives with its report, when it ends." : "Full log.";
      if (!shown && step?.log_tail) shown = step.log_tail;
    } catch (e) {
      if (this.signal.aborted || request !== this.logRequest) return;
      if (!(e instanceof api.ApiError) || e.status !== 404) {
        note.textContent = `Could not read the full log: ${e.message}`;
      }
      // Coordinators without the logs route: the step's own report (the tail of its last or failed hook).
      shown = step?.log_tail ?? "";
      source = "Tail of the hook's output, as reported with the step.";
    }
    if (request !== this.logRequest) return;
    text.textContent = shown || (state === "pending" ? "(not started yet)" : "(no output)");
    if (!note.textContent) note.textContent = source;
  }

  /** Every page of one cell's full log (the logs route pages by a `next` cursor). */
  async fullLog(id, instance, event) {
    const q = `instance=${enc(instance)}&event=${enc(event)}`;
    let text = "";
    let after = 0;
    let ended = false;
    // Bounded so that a misbehaving server cannot keep the page looping.
    for (let page = 0; page < MAX_LOG_PAGES; page++) {
      const cursor = after ? `&after=${after}` : "";
      const r = await api.get(`/deployments/${enc(id)}/logs?${q}${cursor}`, { signal: this.signal });
      text += logText(r.entries);
      ended = Boolean(r.deployment_ended);
      if (!r.entries?.length || typeof r.next !== "number" || r.next <= after) break;
      after = r.next;
    }
    return { text, ended };
  }

  /** Run an operator action after confirmation; show the API's error if it fails. */
  async act(what, question, path, body) {
    if (!window.confirm(question)) return;
    this.actionError.textContent = "";
    try {
      const d = await api.post(`/deployments/${enc(this.id)}/${path}`, body);
      if (path === "rollback" && d.id && d.id !== this.id) {
        location.hash = buildFragment({ deployment: d.id });
        return;
      }
      this.update(d);
    } catch (e) {
      this.actionError.textContent = `Could not ${what}: ${e.message}`;
    }
  }

  /** Keep the page live: the events stream when the coordinator has it, else a read every second. */
  async follow() {
    if (isTerminal(this.d.status)) return;
    const path = `/deployments/${enc(this.id)}`;
    try {
      this.live.textContent = "Live (events stream).";
      await api.stream(
        `${path}/events`,
        (m) => {
          if (m.event === "deployment") this.update(JSON.parse(m.data));
        },
        { signal: this.signal },
      );
      if (isTerminal(this.d.status)) return;
    } catch (e) {
      if (this.signal.aborted) return;
      if (e instanceof api.ApiError && e.status === 401) {
        showError(`The coordinator refused the token: ${e.message}`);
        return;
      }
    }
    // No stream (an older coordinator), or it broke off before the end: poll.
    this.live.textContent = `Live (reading every ${POLL_MS / 1000} s).`;
    while (!this.signal.aborted) {
      await sleep(POLL_MS, this.signal);
      if (this.signal.aborted) return;
      try {
        this.update(await api.get(path, { signal: this.signal }));
        showError("");
      } catch (e) {
        if (this.signal.aborted) return;
        showError(`Lost contact with the coordinator (retrying): ${e.message}`);
      }
      if (isTerminal(this.d.status)) return;
    }
  }
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener(
      "abort",
      () => {
        clearTimeout(t);
        resolve();
      },
      { once: true },
    );
  });
}

start();
