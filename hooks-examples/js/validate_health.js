// ValidateService hook in JavaScript: poll a health URL until it answers 200 or the deadline passes.
//
// The twin of the Rust `validate_health` (hooks-examples/guests/examples): the same arguments, log lines and exit
// codes. Built into a WASI 0.2 command component by componentize-js against the `hook` world, from this directory,
// once `rollcage hook wit wit` wrote the world and the WASI packages it includes into `wit/`:
//
//   componentize-js validate_health.js --wit wit -n hook -d http -d fetch-event -o validate_health.wasm
//
// Arguments (from `sandbox.args`): URL [DEADLINE_SECS] [INTERVAL_MS]; defaults 60 s and 500 ms. The URL must be
// under the hook's `sandbox.http` grant: requests go through `wasi:http/outgoing-handler`, which the agent checks
// against that grant before anything leaves. (`fetch` is left out, `-d http`: its event-loop promise would need an
// async `run`; the blocking wasi:http calls below are the whole of what a health poll needs.)

import { getArguments } from 'wasi:cli/environment@0.2.12';
import { exitWithCode } from 'wasi:cli/exit@0.2.12';
import { now, subscribeDuration } from 'wasi:clocks/monotonic-clock@0.2.12';
import { handle } from 'wasi:http/outgoing-handler@0.2.12';
import { Fields, OutgoingRequest } from 'wasi:http/types@0.2.12';
import { get as lifecycle } from 'rollcage:hook/context@0.1.0';
import { write } from 'rollcage:hook/log@0.1.0';

// Exit code when the service never became healthy (distinct from 1, a hook or setup error).
const EXIT_UNHEALTHY = 3;

class HttpError extends Error {
  constructor(url, why, denied = false) {
    super(`GET ${url}: ${why}`);
    this.denied = denied;
  }
}

const log = (level, message, fields = {}) =>
  write(level, message, Object.entries(fields).map(([k, v]) => [k, String(v)]));

// The error code of a wasi:http error (a thrown ComponentError carries it as `payload`).
const codeOf = (e) => (e && e.payload && e.payload.tag) || String(e);

// GET `url` through wasi:http; returns { status, body }.
function get(url) {
  const m = /^(https?):\/\/([^/?#]+)([^#]*)/.exec(url);
  if (!m) throw new HttpError(url, 'not an http:// or https:// URL');
  const request = new OutgoingRequest(new Fields());
  request.setScheme({ tag: m[1] === 'https' ? 'HTTPS' : 'HTTP' });
  request.setAuthority(m[2]);
  request.setPathWithQuery(m[3] || '/');
  let response;
  try {
    const pending = handle(request, undefined);
    pending.subscribe().block();
    const answer = pending.get();
    if (answer === undefined || answer.tag !== 'ok') throw new HttpError(url, 'no response');
    if (answer.val.tag !== 'ok') throw { payload: answer.val.val };
    response = answer.val.val;
  } catch (e) {
    if (e instanceof HttpError) throw e;
    const code = codeOf(e);
    if (code === 'HTTP-request-denied') {
      throw new HttpError(url, "denied, not under the hook's sandbox.http grant", true);
    }
    throw new HttpError(url, code);
  }
  const status = response.status();
  const stream = response.consume().stream();
  const chunks = [];
  for (;;) {
    try {
      chunks.push(stream.blockingRead(65536n));
    } catch (e) {
      if (codeOf(e) === 'closed') break;
      throw new HttpError(url, 'reading the body failed');
    }
  }
  const body = new TextDecoder().decode(concat(chunks));
  return { status, body };
}

function concat(chunks) {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

const sleepMs = (ms) => subscribeDuration(BigInt(ms) * 1000000n).block();
const nowMs = () => Number(now() / 1000000n);

function validate() {
  const args = getArguments().slice(1);
  if (args.length === 0) {
    log('error', 'usage: validate_health URL [DEADLINE_SECS] [INTERVAL_MS]');
    return 1;
  }
  const url = args[0];
  const deadlineSecs = args.length > 1 ? Number(args[1]) : 60;
  const interval = args.length > 2 ? Number(args[2]) : 500;
  if (!Number.isInteger(deadlineSecs) || !Number.isInteger(interval)) {
    log('error', `bad argument: expected whole numbers, got ${args.slice(1).join(' ')}`);
    return 1;
  }
  const ctx = lifecycle();
  log('info', 'waiting for health', { event: ctx.event, url, deadline_secs: deadlineSecs });
  const deadline = nowMs() + deadlineSecs * 1000;
  for (let attempts = 1; ; attempts++) {
    let last;
    try {
      const { status, body } = get(url);
      if (status === 200) {
        log('info', 'healthy', { url, attempts, body: body.trim() });
        return 0;
      }
      last = `status ${status}`;
    } catch (e) {
      if (!(e instanceof HttpError)) throw e;
      if (e.denied) {
        // A denied URL will never succeed: fail at once with the reason.
        log('error', e.message);
        return 1;
      }
      last = e.message;
    }
    if (nowMs() + interval > deadline) {
      log('error', `${url} not healthy after ${deadlineSecs} s (${attempts} attempts, last: ${last})`);
      return EXIT_UNHEALTHY;
    }
    log('info', 'not healthy yet', { url, last });
    sleepMs(interval);
  }
}

export const run = {
  run() {
    let code;
    try {
      code = validate();
    } catch (e) {
      // An uncaught exception would only make `run` return an error; say what it was.
      log('error', `hook failed: ${e && e.stack ? e.stack : e}`);
      code = 1;
    }
    if (code !== 0) exitWithCode(code);
  },
};
