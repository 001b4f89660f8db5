#!/bin/sh
# Shell twin of render_config.wasm: render config/app.conf.tmpl into the config dir, substituting lifecycle values.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
out_dir=/tmp/rollcage-example/config
# Escape a value for the replacement side of a sed s||| command.
esc() { printf '%s' "$1" | sed -e 's/[\\|&]/\\&/g'; }
sed -e "s|\${APPLICATION_NAME}|$(esc "${APPLICATION_NAME:-}")|g" \
    -e "s|\${DEPLOYMENT_GROUP_NAME}|$(esc "${DEPLOYMENT_GROUP_NAME:-}")|g" \
    -e "s|\${DEPLOYMENT_GROUP_ID}|$(esc "${DEPLOYMENT_GROUP_ID:-}")|g" \
    -e "s|\${DEPLOYMENT_ID}|$(esc "${DEPLOYMENT_ID:-}")|g" \
    -e "s|\${LIFECYCLE_EVENT}|$(esc "${LIFECYCLE_EVENT:-}")|g" \
    "$here/config/app.conf.tmpl" > "$out_dir/app.conf.tmp"
mv "$out_dir/app.conf.tmp" "$out_dir/app.conf"
echo "level=info msg=rendered output=$out_dir/app.conf"
