#!/bin/sh
# Start the installed version: record the event, write the "running" marker from the installed app.
set -eu
base=/opt/rollcage-examples/hello
echo "$LIFECYCLE_EVENT $(cat VERSION)" >> "$base/events.log"
"$base/app/hello.sh" > "$base/running"
