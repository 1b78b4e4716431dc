#!/usr/bin/env bash
# aikore.name: Spawner (test)
# aikore.category: Testing
# aikore.kind: test
# aikore.description: Leaves three "sleep 1000" grandchildren behind (one in its own session via setsid), then serves HTTP on WEBUI_PORT.
# aikore.ready: tcp
set -euo pipefail
: "${WEBUI_PORT:?WEBUI_PORT is not set}" "${INSTANCE_CONF_DIR:?INSTANCE_CONF_DIR is not set}"

pids=()
sleep 1000 &
pids+=("$!")
sleep 1000 &
pids+=("$!")
# Not a process-group leader here, so setsid does not fork: $! is the sleep itself.
setsid sleep 1000 &
pids+=("$!")

tmp="$INSTANCE_CONF_DIR/children.pids.tmp"
printf '%s\n' "${pids[@]}" > "$tmp"
mv -f -- "$tmp" "$INSTANCE_CONF_DIR/children.pids"
echo "spawned grandchildren: ${pids[*]}"

exec "${AIKORE_PYTHON:-python3}" -m http.server "$WEBUI_PORT" --bind 127.0.0.1
