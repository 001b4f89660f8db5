#!/bin/sh
# The running version must be the one this revision installed.
set -eu
base=/opt/rollcage-examples/hello
echo "$LIFECYCLE_EVENT $(cat VERSION)" >> "$base/events.log"
running=$(cat "$base/running")
if [ "$running" != "$(cat VERSION)" ]; then
  echo "running version is '$running', expected '$(cat VERSION)'" >&2
  exit 1
fi
echo "hello $running is running"
