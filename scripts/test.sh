#!/usr/bin/env bash
# The test command: sets up the machine, builds, and runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# End-to-end tests run the real `rollcage` binary; build it first.
cargo build --bin rollcage
cargo nextest run --workspace --no-fail-fast "$@"
