#!/bin/sh
# ApplicationStop (and the first thing start.sh does): stop the app this instance runs, if any, and wait until
# it is gone so the port is free. A zombie counts as gone: the app was started in the background by an earlier
# hook, so its parent is whatever adopted it, which may reap it late.
[ -s "$DEMO_PID" ] || exit 0
pid=$(cat "$DEMO_PID")
running() {
    kill -0 "$pid" 2>/dev/null && [ "$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -c1)" != Z ]
}
kill "$pid" 2>/dev/null || true
while running; do sleep 0.05; done
rm -f "$DEMO_PID"
echo "stopped the app (pid $pid)"
