#!/usr/bin/env bash
# The test command: sets up the machine, builds, and runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# End-to-end tests run the real `rollcage` binary; build it first.
cargo build --bin rollcage
cargo nextest run --workspace --no-fail-fast "$@"
# The README's main command, word for word: the first `cargo run` line of its "Two commands" block (the demo exits
# non-zero unless every expectation held, including zero failed requests).
main_cmd=$(sed -n '/^## Two commands/,/^## /p' README.md | grep -m1 '^cargo run ' | sed 's/ *#.*$//')
if [ -z "$main_cmd" ]; then
  echo "scripts/test.sh: no \`cargo run\` command under README.md's \"Two commands\"" >&2
  exit 1
fi
echo "+ $main_cmd"
eval "$main_cmd"
