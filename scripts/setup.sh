#!/usr/bin/env bash
# Prepare a fresh machine for building and testing rollcage. Idempotent; safe to run on every test run.
# Needs root for apt-get (CI and the developers' machines run as root).
set -euo pipefail

# Hook examples and test guests are compiled to WebAssembly from source: preview-1 modules (wasm32-wasip1) and,
# from the same source, WASI 0.2 command components (wasm32-wasip2).
for target in wasm32-wasip1 wasm32-wasip2; do
  if ! rustup target list --installed | grep -qx "$target"; then
    rustup target add "$target"
  fi
done

# System tools the tests use: setfacl/getfacl (AppSpec ACLs), tar/gzip (baseline of the unpack benchmark),
# procps (ps), iproute2 (network namespaces of later end-to-end tests), haproxy (baseline of the load-balancer
# benchmark and target of the HAProxy driver's tests), chromium + chromium-driver (the dashboard's headless-browser
# test drives Debian's Chromium over WebDriver).
need=()
command -v setfacl >/dev/null || need+=(acl)
command -v ps >/dev/null || need+=(procps)
command -v ip >/dev/null || need+=(iproute2)
command -v haproxy >/dev/null || need+=(haproxy)
command -v chromium >/dev/null || need+=(chromium)
command -v chromedriver >/dev/null || need+=(chromium-driver)
# Signed revisions are tested both ways against the real `ssh-keygen` (signing/tests, tests/tests/signed_revisions.rs).
command -v ssh-keygen >/dev/null || need+=(openssh-client)
# The store suite, the coordinator's end-to-end tests and the benchmark run against real PostgreSQL servers that the
# tests start themselves (rollcage-testpg: `initdb` into a temp dir, run as the `postgres` user the package creates).
# Debian keeps the server binaries off PATH, in /usr/lib/postgresql/VERSION/bin.
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need+=(postgresql)
# A canary's external judge (`[[canary.prometheus]]`) is tested against a real Prometheus scraping a test app
# (coordinator/tests/prometheus_judge.rs, tests/tests/canary.rs).
command -v prometheus >/dev/null || need+=(prometheus)
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}"
fi

if ! command -v cargo-nextest >/dev/null && ! cargo nextest --version >/dev/null 2>&1; then
  cargo install --locked cargo-nextest
fi

# schemathesis checks the coordinator's OpenAPI document against the server (coordinator/tests/openapi_conformance.rs),
# pinned so a new release cannot change what the test command checks, in its own venv so nothing leaks into the
# system Python.
SCHEMATHESIS_VERSION=4.32.5
venv=/opt/rollcage-venv
if ! "$venv/bin/st" --version 2>/dev/null | grep -qx "st, version $SCHEMATHESIS_VERSION"; then
  # `venv` needs `ensurepip`, which Debian ships apart (python3-venv); `python3 -m venv --help` works without it.
  if ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq python3-venv
  fi
  [ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

# Python and JavaScript hooks (hooks-examples/python, hooks-examples/js) are built from source into WASI 0.2
# components by hooks-examples/artifacts/build.rs, with pinned tools: componentize-py from PyPI (into the venv
# above) and componentize-js + jco from npm (into /opt/rollcage-node; Debian's nodejs/npm when node is missing).
COMPONENTIZE_PY_VERSION=0.25.1
if ! "$venv/bin/componentize-py" --version 2>/dev/null | grep -qx "componentize-py $COMPONENTIZE_PY_VERSION"; then
  "$venv/bin/pip" install --quiet --disable-pip-version-check "componentize-py==$COMPONENTIZE_PY_VERSION"
fi
COMPONENTIZE_JS_VERSION=0.23.0
JCO_VERSION=1.35.0
if ! command -v npm >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq nodejs npm
fi
node_dir=/opt/rollcage-node
if [ "$(cd "$node_dir" 2>/dev/null && npm ls --depth=0 --parseable --long 2>/dev/null | grep -c -e "@bytecodealliance/componentize-js@$COMPONENTIZE_JS_VERSION" -e "@bytecodealliance/jco@$JCO_VERSION")" != 2 ]; then
  mkdir -p "$node_dir"
  npm install --silent --save-exact --no-audit --no-fund --prefix "$node_dir" \
    "@bytecodealliance/componentize-js@$COMPONENTIZE_JS_VERSION" "@bytecodealliance/jco@$JCO_VERSION"
fi
