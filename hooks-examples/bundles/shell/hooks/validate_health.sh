#!/bin/sh
# Shell twin of validate_health.wasm: poll the health URL until it answers 200 or 20 s pass.
set -u
url=http://127.0.0.1:18080/health
deadline=$(( $(date +%s) + 20 ))
attempts=0
while :; do
    attempts=$((attempts + 1))
    status=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$url" || true)
    if [ "$status" = 200 ]; then
        echo "level=info msg=healthy url=$url attempts=$attempts"
        exit 0
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
        echo "level=error msg=\"$url not healthy after 20 s\" attempts=$attempts last=$status" >&2
        exit 3
    fi
    sleep 0.2
done
