// A hook that does nothing, in JavaScript: the hook runner's benchmark (`runtime/benches/hook_runner.rs`) runs it
// as a WASI 0.2 component (built by componentize-js against the `hook` world, like `validate_health.js`) and, as
// the same code in a `#!/usr/bin/env node` script, natively.

export const run = {
  run() {},
};
