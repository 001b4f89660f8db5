// Pure logic of the dashboard: no DOM, no network. The grid model, state symbols, the URL fragment, the
// server-sent-events parser, formatting, and which buttons apply. app.js does the I/O around it.

/** Every StepState of the API (proto `wire::StepState`), with a symbol and a word so colour is never the only cue. */
export const STEP_STATES = {
  pending: { symbol: "○", label: "pending" },
  running: { symbol: "▶", label: "running" },
  succeeded: { symbol: "✓", label: "succeeded" },
  skipped: { symbol: "↷", label: "skipped" },
  failed: { symbol: "✗", label: "failed" },
  cancelled: { symbol: "⊘", label: "cancelled" },
};

/** A grid cell for an event that is not in this instance's plan. */
export const NOT_PLANNED = "none";

/** The symbol and word of a step state; unknown states (a newer coordinator) show as themselves. */
export function stateLook(state) {
  return STEP_STATES[state] ?? { symbol: "?", label: String(state) };
}

/** Deployment statuses after which nothing changes (proto `DeploymentStatus::is_terminal`). */
export function isTerminal(status) {
  return status === "succeeded" || status === "failed" || status === "stopped";
}

/**
 * The grid's columns: every lifecycle event of the deployment's plans, in plan order. Instances may have different
 * plans (an instance with nothing installed has no ApplicationStop), so the orders are merged: an event goes right
 * after the event that precedes it in the first plan that has it.
 */
export function gridColumns(deployment) {
  const columns = [];
  for (const inst of deployment.instances ?? []) {
    let after = -1;
    for (const step of inst.steps ?? []) {
      const at = columns.indexOf(step.event);
      if (at >= 0) {
        after = Math.max(after, at);
        continue;
      }
      columns.splice(after + 1, 0, step.event);
      after += 1;
    }
  }
  return columns;
}

/**
 * Rows of the grid: one per instance, one cell per column, each `{instance, event, state, step}` (`step` is null
 * and `state` is NOT_PLANNED where the instance's plan has no such event).
 */
export function gridRows(deployment, columns = gridColumns(deployment)) {
  return (deployment.instances ?? []).map((inst) => {
    const byEvent = new Map((inst.steps ?? []).map((s) => [s.event, s]));
    return {
      instance: inst.instance,
      status: inst.status,
      cells: columns.map((event) => {
        const step = byEvent.get(event) ?? null;
        return { instance: inst.instance, event, state: step ? step.state : NOT_PLANNED, step };
      }),
    };
  });
}

/** Counts of cells per state, for the summary line. */
export function stateCounts(rows) {
  const counts = {};
  for (const row of rows) {
    for (const cell of row.cells) {
      if (cell.state !== NOT_PLANNED) counts[cell.state] = (counts[cell.state] ?? 0) + 1;
    }
  }
  return counts;
}

/** The step of `instance`/`event` in a deployment, or null. */
export function findStep(deployment, instance, event) {
  const inst = (deployment.instances ?? []).find((i) => i.instance === instance);
  return inst?.steps?.find((s) => s.event === event) ?? null;
}

/** Which operator actions apply to a deployment in its current state. */
export function actionsFor(deployment) {
  const active = !isTerminal(deployment.status);
  return {
    stop: active && deployment.status !== "stopping",
    forceStop: active,
    rollback: !active && !deployment.rollback_deployment,
  };
}

/**
 * Whether the token described by `who` (`GET /v1/whoami`: `{name, role, apps}`) may act on a deployment of `app`
 * (stop, roll back, continue): admins on every application, deployers on theirs. The API decides; this only
 * hides buttons that would be refused.
 */
export function mayDeploy(who, app) {
  if (!who) return false;
  return who.role === "admin" || (who.role === "deployer" && (who.apps ?? []).includes(app));
}

/** How a token is shown: `ci (deployer for web, api)`, `bootstrap (admin)`. */
export function whoText(who) {
  if (!who) return "";
  const role = who.role === "deployer" ? `deployer for ${(who.apps ?? []).join(", ") || "no application"}` : who.role;
  return `${who.name} (${role})`;
}

/** Parse a URL fragment (`#a=1&b=2`) into a plain object. */
export function parseFragment(hash) {
  const out = {};
  const text = (hash ?? "").replace(/^#/, "");
  for (const [k, v] of new URLSearchParams(text)) out[k] = v;
  return out;
}

/** A URL fragment from an object (empty values left out), `#` included unless empty. */
export function buildFragment(params) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== "") p.set(k, v);
  }
  const s = p.toString();
  return s ? `#${s}` : "";
}

/** Split the token out of a fragment: `{token, rest}` where `rest` is the fragment without it. */
export function takeToken(hash) {
  const params = parseFragment(hash);
  const token = params.token ?? null;
  delete params.token;
  return { token, rest: buildFragment(params) };
}

/** The view a fragment asks for. */
export function routeOf(params) {
  if (params.view === "audit") return { view: "audit" };
  if (params.deployment) return { view: "deployment", id: params.deployment };
  if (params.app && params.group) return { view: "group", app: params.app, group: params.group };
  if (params.app) return { view: "application", app: params.app };
  return { view: "home" };
}

/** `1.2 s`, `3 min 4 s`, `2 h 5 min`. */
export function formatDuration(ms) {
  if (ms === null || ms === undefined || !Number.isFinite(ms) || ms < 0) return "—";
  if (ms < 10_000) return `${(ms / 1000).toFixed(1)} s`;
  const s = Math.round(ms / 1000);
  if (s < 3600) return s >= 60 ? `${Math.floor(s / 60)} min ${s % 60} s` : `${s} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

/** Local date and time of an epoch-milliseconds value, ISO-like (`2026-11-26 16:20:05`). */
export function formatTime(ms) {
  if (ms === null || ms === undefined) return "—";
  const d = new Date(ms);
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

/** How long a deployment ran (or has been running, at `now`). */
export function deploymentDuration(d, now) {
  return (d.ended_at_ms ?? now) - d.created_at_ms;
}

/** How long a step ran (or has been running), or null if it never started. */
export function stepDuration(step, now) {
  if (!step?.started_at_ms) return null;
  return (step.ended_at_ms ?? now) - step.started_at_ms;
}

/** A one-line description of a deployment's kind. */
export function kindText(kind) {
  if (!kind || kind.kind === "normal") return "normal";
  if (kind.kind === "rollback") return `${kind.automatic ? "automatic " : ""}rollback of ${kind.of}`;
  if (kind.kind === "catch-up") return `catch-up of ${kind.instance}`;
  return String(kind.kind);
}

/** The text shown for one cell's log from the full-logs route's entries. */
export function logText(entries) {
  const parts = [];
  for (const e of entries ?? []) {
    parts.push(e.text ?? "");
    if (e.truncated_bytes > 0) parts.push(`\n[… ${e.truncated_bytes} bytes of output were dropped here …]\n`);
  }
  return parts.join("");
}

/**
 * Incremental parser of a `text/event-stream` (the HTML standard's rules, minus `retry`): feed it decoded text
 * chunks as they arrive; each call returns the messages completed by that chunk as `{event, data, id}`.
 */
export class SseParser {
  constructor() {
    this.buffer = "";
    this.reset();
  }

  reset() {
    this.event = "";
    this.data = [];
    this.id = "";
  }

  feed(chunk) {
    this.buffer += chunk;
    const out = [];
    for (;;) {
      const m = /\r\n|\r|\n/.exec(this.buffer);
      // A lone \r at the end may be the first half of \r\n: wait for the next chunk.
      if (!m || (m[0] === "\r" && m.index === this.buffer.length - 1)) break;
      const line = this.buffer.slice(0, m.index);
      this.buffer = this.buffer.slice(m.index + m[0].length);
      if (line === "") {
        if (this.data.length > 0) {
          out.push({ event: this.event || "message", data: this.data.join("\n"), id: this.id });
        }
        this.reset();
        continue;
      }
      if (line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "event") this.event = value;
      else if (field === "data") this.data.push(value);
      else if (field === "id") this.id = value;
    }
    return out;
  }
}
