"""Sandbox probe in Python: what a Python hook tries with its own standard library, and what the sandbox answers.

A test program (runtime/tests/wasm_components.rs, `mod python`), not an example: each argument pair is one attempt,
printed as `MODE TARGET: ok …` or `MODE TARGET: denied ExceptionName`; the hook exits 0 when every attempt ran.

    read PATH      open(PATH).read()
    write PATH     open(PATH, "w").write(...)
    list PATH      os.listdir(PATH)
    env NAME       os.environ.get(NAME)
    fill PATH      write 2 MiB into PATH, 64 KiB at a time

(No socket modes: componentize-py's Python has no `socket` module; the component's `wasi:sockets` imports are
denied by the agent all the same, as the Rust `net` program shows.)

Built by componentize-py against the `hook` world like the example hooks (hooks-examples/artifacts/build_polyglot.rs).
"""

import os
import sys

from wit_world import exports


def attempt(mode, target):
    if mode == "read":
        with open(target) as f:
            return f"{len(f.read())} bytes"
    if mode == "write":
        with open(target, "w") as f:
            f.write("written by the probe")
        return "written"
    if mode == "list":
        return ",".join(sorted(os.listdir(target)))
    if mode == "env":
        value = os.environ.get(target)
        return "unset" if value is None else f"={value}"
    if mode == "fill":
        with open(target, "wb") as f:
            for _ in range(32):
                f.write(b"x" * 65536)
        return "filled"
    raise ValueError(f"unknown mode {mode}")


class Run(exports.Run):
    def run(self) -> None:
        args = sys.argv[1:]
        for mode, target in zip(args[::2], args[1::2]):
            try:
                print(f"{mode} {target}: ok {attempt(mode, target)}", flush=True)
            except Exception as e:  # the point is to report every kind of refusal
                print(f"{mode} {target}: denied {type(e).__name__}", flush=True)
