// The dashboard's API client: every call goes to the coordinator's `/v1` API with the operator token as a bearer
// header (never in a URL). Failures become ApiError with the API's own error message.

import { SseParser } from "./model.js";

const TOKEN_KEY = "rollcage.adminToken";

/** The operator token of this tab, or null. */
export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

/** Keep the operator token for this tab only. */
export function setToken(t) {
  sessionStorage.setItem(TOKEN_KEY, t);
}

/** Forget the operator token. */
export function clearToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}

/** A failed API call: the HTTP status, the API's error code and its message. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function headers(extra = {}) {
  const h = { Accept: "application/json", ...extra };
  const t = token();
  if (t) h.Authorization = `Bearer ${t}`;
  return h;
}

async function failure(resp) {
  let code = "http_error";
  let message = `${resp.status} ${resp.statusText}`;
  try {
    const body = await resp.json();
    if (body?.error?.message) {
      code = body.error.code ?? code;
      message = body.error.message;
    }
  } catch {
    // Not the API's JSON error shape (a proxy's page, say): the status line is all there is.
  }
  return new ApiError(resp.status, code, message);
}

/** GET a `/v1` path (starting with `/`) and parse its JSON. */
export async function get(path, { signal } = {}) {
  const resp = await fetch(`/v1${path}`, { headers: headers(), signal, cache: "no-store" });
  if (!resp.ok) throw await failure(resp);
  return resp.json();
}

/** Pages read at most by `getAll` (of the API's largest, 1000 items): a bound on what one view loads. */
const MAX_PAGES = 10;

/** GET every item of a paged list at a `/v1` path (`{items, next_cursor}` pages, followed up to MAX_PAGES). */
export async function getAll(path, { signal } = {}) {
  const items = [];
  let cursor = null;
  for (let n = 0; n < MAX_PAGES; n++) {
    const sep = path.includes("?") ? "&" : "?";
    const q = new URLSearchParams({ limit: "1000" });
    if (cursor !== null) q.set("cursor", cursor);
    const page = await get(`${path}${sep}${q}`, { signal });
    items.push(...page.items);
    if (page.next_cursor === null || page.next_cursor === undefined || page.next_cursor === cursor) break;
    cursor = page.next_cursor;
  }
  return items;
}

/** POST a JSON body to a `/v1` path and parse the JSON answer. */
export async function post(path, body) {
  const resp = await fetch(`/v1${path}`, {
    method: "POST",
    headers: headers({ "Content-Type": "application/json" }),
    body: JSON.stringify(body ?? {}),
  });
  if (!resp.ok) throw await failure(resp);
  return resp.json();
}

/**
 * Follow a server-sent-events stream at a `/v1` path with fetch (EventSource cannot send the bearer header),
 * calling `onMessage({event, data})` for each message. Resolves when the stream ends; rejects with ApiError when
 * the route answers with an error (a 404 from a coordinator without the route, say).
 */
export async function stream(path, onMessage, { signal } = {}) {
  const resp = await fetch(`/v1${path}`, {
    headers: headers({ Accept: "text/event-stream" }),
    signal,
    cache: "no-store",
  });
  if (!resp.ok) throw await failure(resp);
  const type = resp.headers.get("content-type") ?? "";
  if (!type.startsWith("text/event-stream") || !resp.body) {
    throw new ApiError(resp.status, "not_a_stream", `expected text/event-stream, got \`${type}\``);
  }
  const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
  const parser = new SseParser();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    for (const msg of parser.feed(value)) onMessage(msg);
  }
}
