#!/bin/sh
# ApplicationStart: run the app in the background on this instance's $PORT and wait until it listens (it writes
# its pid file once bound). A copy left by another deployment group is stopped first: the demo moves one app
# between groups of different styles, and a group's first deployment has no ApplicationStop of its own.
set -e
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/release.env"
"$here/scripts/stop.sh"
nohup "$ROLLCAGE_BIN" demo-app --listen "127.0.0.1:$PORT" --version "$VERSION" \
    --instance "$ROLLCAGE_INSTANCE" --delay-ms "$DELAY_MS" \
    --fail-percent "${FAIL_PERCENT:-0}" --pid-file "$DEMO_PID" >/dev/null 2>&1 &
n=0
while [ ! -s "$DEMO_PID" ] && [ $n -lt 200 ]; do sleep 0.05; n=$((n + 1)); done
if [ ! -s "$DEMO_PID" ]; then
    echo "the app did not start on 127.0.0.1:$PORT within 10 s" >&2
    exit 1
fi
echo "$VERSION listening on 127.0.0.1:$PORT (pid $(cat "$DEMO_PID"))"
