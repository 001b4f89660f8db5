#!/bin/sh
# ValidateService: the app is running. FAIL_ON in release.env makes it fail on that one instance.
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/release.env"
pid=$(cat "$DEMO_PID" 2>/dev/null || true)
if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; then
    echo "the app is not running (pid file $DEMO_PID)" >&2
    exit 1
fi
if [ "$ROLLCAGE_INSTANCE" = "$FAIL_ON" ]; then
    echo "health check failed on $ROLLCAGE_INSTANCE (release.env: FAIL_ON=$FAIL_ON)" >&2
    exit 1
fi
echo "$VERSION healthy on $ROLLCAGE_INSTANCE"
