#!/bin/sh
# Stop the running version: record the event, remove the "running" marker.
set -eu
base=/opt/rollcage-examples/hello
echo "$LIFECYCLE_EVENT $(cat VERSION)" >> "$base/events.log"
rm -f "$base/running"
