"""ValidateService hook in Python: poll a health URL until it answers 200 or the deadline passes.

The twin of the Rust `validate_health` (hooks-examples/guests/examples): the same arguments, log lines and exit
codes. Built into a WASI 0.2 command component by componentize-py against the `hook` world, from this directory,
once `rollcage hook wit wit` wrote the world and the WASI packages it includes into `wit/`:

    componentize-py -d wit -w hook componentize validate_health -o validate_health.wasm

Arguments (from `sandbox.args`): URL [DEADLINE_SECS] [INTERVAL_MS]; defaults 60 s and 500 ms. The URL must be
under the hook's `sandbox.http` grant: requests go through `wasi:http/outgoing-handler`, which the agent checks
against that grant before anything leaves.
"""

import sys
import time

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import context, exit, log, outgoing_handler
from wit_world.imports import wasi_http_types as http
from wit_world.imports.streams import StreamError_Closed

# Exit code when the service never became healthy (distinct from 1, a hook or setup error).
EXIT_UNHEALTHY = 3


class HttpError(Exception):
    """No response: refused by the grant (`denied`), bad URL, or a connection failure."""

    def __init__(self, url, why, denied=False):
        super().__init__(f"GET {url}: {why}")
        self.denied = denied


def get(url):
    """GET `url` through wasi:http; returns (status, body bytes)."""
    for prefix, scheme in (("http://", http.Scheme_Http()), ("https://", http.Scheme_Https())):
        if url.startswith(prefix):
            rest = url[len(prefix):]
            break
    else:
        raise HttpError(url, "not an http:// or https:// URL")
    cut = min([i for i in (rest.find("/"), rest.find("?")) if i >= 0], default=len(rest))
    authority, path = rest[:cut], rest[cut:] or "/"
    request = http.OutgoingRequest(http.Fields())
    request.set_scheme(scheme)
    request.set_authority(authority)
    request.set_path_with_query(path)
    try:
        pending = outgoing_handler.handle(request, None)
        pending.subscribe().block()
        answer = pending.get()
        if answer is None or isinstance(answer, Err):
            raise HttpError(url, "no response")
        response = answer.value.value if not isinstance(answer.value, Err) else None
        if response is None:
            raise Err(answer.value.value)
    except Err as e:
        code = e.value
        if isinstance(code, http.ErrorCode_HttpRequestDenied):
            raise HttpError(url, "denied, not under the hook's sandbox.http grant", denied=True)
        raise HttpError(url, f"{type(code).__name__.removeprefix('ErrorCode_')}")
    status = response.status()
    body = bytearray()
    incoming = response.consume()
    stream = incoming.stream()
    try:
        while True:
            body += stream.blocking_read(64 * 1024)
    except Err as e:
        if not isinstance(e.value, StreamError_Closed):
            raise HttpError(url, "reading the body failed")
    finally:
        stream.__exit__(None, None, None)
        incoming.__exit__(None, None, None)
    return status, bytes(body)


def info(message, **fields):
    log.write(log.Level.INFO, message, [(k, str(v)) for k, v in fields.items()])


def validate():
    args = sys.argv[1:]
    if not args:
        log.write(log.Level.ERROR, "usage: validate_health URL [DEADLINE_SECS] [INTERVAL_MS]", [])
        return 1
    url = args[0]
    try:
        deadline_secs = int(args[1]) if len(args) > 1 else 60
        interval = (int(args[2]) if len(args) > 2 else 500) / 1000
    except ValueError as e:
        log.write(log.Level.ERROR, f"bad argument: {e}", [])
        return 1
    ctx = context.get()
    info("waiting for health", event=ctx.event, url=url, deadline_secs=deadline_secs)
    deadline = time.monotonic() + deadline_secs
    attempts = 0
    while True:
        attempts += 1
        try:
            status, body = get(url)
            if status == 200:
                info("healthy", url=url, attempts=attempts, body=body.decode(errors="replace").strip())
                return 0
            last = f"status {status}"
        except HttpError as e:
            if e.denied:
                # A denied URL will never succeed: fail at once with the reason.
                log.write(log.Level.ERROR, str(e), [])
                return 1
            last = str(e)
        if time.monotonic() + interval > deadline:
            log.write(
                log.Level.ERROR,
                f"{url} not healthy after {deadline_secs} s ({attempts} attempts, last: {last})",
                [],
            )
            return EXIT_UNHEALTHY
        info("not healthy yet", url=url, last=last)
        time.sleep(interval)


class Run(exports.Run):
    def run(self) -> None:
        code = validate()
        if code != 0:
            exit.exit_with_code(code)
