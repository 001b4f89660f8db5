#!/bin/sh
# The example application: prints its version.
cat "$(dirname "$0")/VERSION"
