#!/bin/sh
# Build hook.wasm, a WASI 0.2 command component, from hook.py against the `hook` world in wit/.
# componentize-py comes from PyPI (`pip install componentize-py==0.25.1`); COMPONENTIZE_PY names another one.
set -eu
cd "$(dirname "$0")"
exec "${COMPONENTIZE_PY:-componentize-py}" -d wit -w hook componentize hook -o hook.wasm
