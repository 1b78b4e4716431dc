#!/usr/bin/env bash
# aikore.name: Slow ready (test)
# aikore.category: Testing
# aikore.kind: test
# aikore.description: Waits $SLOW_READY_SECONDS (default 1) before serving HTTP on WEBUI_PORT.
# aikore.ready: http /
set -euo pipefail
: "${WEBUI_PORT:?WEBUI_PORT is not set}"

echo "getting ready in ${SLOW_READY_SECONDS:-1}s"
sleep "${SLOW_READY_SECONDS:-1}"
exec "${AIKORE_PYTHON:-python3}" -m http.server "$WEBUI_PORT" --bind 127.0.0.1
