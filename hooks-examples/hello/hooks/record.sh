#!/bin/sh
# Append "<event> <version of this revision>" to the events log.
set -eu
base=/opt/rollcage-examples/hello
mkdir -p "$base"
echo "$LIFECYCLE_EVENT $(cat VERSION)" >> "$base/events.log"
