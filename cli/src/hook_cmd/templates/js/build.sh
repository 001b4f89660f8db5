#!/bin/sh
# Build hook.wasm, a WASI 0.2 command component, from hook.js against the `hook` world in wit/.
# componentize-js comes from npm (`npm install @bytecodealliance/componentize-js@0.23.0`); COMPONENTIZE_JS names
# another one. `fetch` is left out (`-d http -d fetch-event`): the hook calls wasi:http itself.
set -eu
cd "$(dirname "$0")"
exec "${COMPONENTIZE_JS:-componentize-js}" hook.js --wit wit -n hook -d http -d fetch-event -o hook.wasm
