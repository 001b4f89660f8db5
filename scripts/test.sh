#!/usr/bin/env bash
# The test command: sets up the machine, builds, and runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# End-to-end tests run the real `rollcage` binary; build it first. `rollcage-testpg` stops the tests' shared
# PostgreSQL server at the end.
cargo build --bin rollcage --bin rollcage-testpg
# Tests share one throwaway PostgreSQL server that outlives each test process (rollcage-testpg); whatever happens,
# stop it on the way out so a test run leaves nothing running, and exit with the status of what failed.
stop_test_postgres() {
  local status=$?
  cargo run -q -p rollcage-testpg --bin rollcage-testpg -- stop ||
    echo "scripts/test.sh: could not stop the tests' shared PostgreSQL server" >&2
  exit "$status"
}
trap stop_test_postgres EXIT
cargo nextest run --workspace --no-fail-fast "$@"
# The coordinator's unit suite once more with every state on PostgreSQL (testkit::store): the API, engine and
# state tests too, not only the store's own tests (which run on both backends in the pass above).
ROLLCAGE_TEST_STORE=postgres cargo nextest run -p rollcage-coordinator --lib --no-fail-fast
# The README's main command, word for word: the first `cargo run` line of its "Two commands" block (the demo exits
# non-zero unless every expectation held, including zero failed requests).
main_cmd=$(sed -n '/^## Two commands/,/^## /p' README.md | grep -m1 '^cargo run ' | sed 's/ *#.*$//')
if [ -z "$main_cmd" ]; then
  echo "scripts/test.sh: no \`cargo run\` command under README.md's \"Two commands\"" >&2
  exit 1
fi
echo "+ $main_cmd"
eval "$main_cmd"
