"""A hook that does nothing, in Python: the hook runner's benchmark (`runtime/benches/hook_runner.rs`) runs it as a
WASI 0.2 component (built by componentize-py against the `hook` world, like `validate_health.py`) and, as the same
code in a `#!/usr/bin/env python3` script, natively.

Not in `hooks-examples/python`: componentize-py embeds the whole `-p` directory (subdirectories too) into the
component, so each hook built from a directory gets a directory of its own.

Argument (optional): seconds to sleep before returning — the benchmark runs 8 at once for the agent's RSS.
"""

import sys
import time

from wit_world import exports


class Run(exports.Run):
    def run(self) -> None:
        if len(sys.argv) > 1:
            time.sleep(float(sys.argv[1]))
