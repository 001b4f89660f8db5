#!/bin/sh
# Install what the wasm hook tests need: the wasm32-wasip1 standard library (hooks-examples/artifacts/build.rs
# compiles the guest programs from source with it).
set -eu
rustup target add wasm32-wasip1
