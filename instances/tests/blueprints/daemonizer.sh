#!/usr/bin/env bash
# aikore.name: Daemonizer (test)
# aikore.category: Testing
# aikore.description: Leaves children every way a process can escape its parent: a plain child, one in its own session (setsid), a double-forked one (reparented to init) and a daemon (double fork + setsid), then serves HTTP on WEBUI_PORT.
# aikore.ready: tcp
set -euo pipefail
: "${WEBUI_PORT:?WEBUI_PORT is not set}"

sleep 1000 &
setsid sleep 1000 &
( sleep 1000 & )
( setsid sleep 1000 & )
exec "${AIKORE_PYTHON:-python3}" -m http.server "$WEBUI_PORT" --bind 127.0.0.1
