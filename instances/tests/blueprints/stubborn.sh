#!/usr/bin/env bash
# aikore.name: Stubborn (test)
# aikore.category: Testing
# aikore.description: Ignores SIGTERM (so a stop ends in SIGKILL after the stop timeout), with a child in its own session that ignores it too; serves HTTP on WEBUI_PORT.
# aikore.ready: tcp
set -euo pipefail
: "${WEBUI_PORT:?WEBUI_PORT is not set}"

setsid bash -c 'trap "" TERM; while :; do sleep 1; done' &
exec "${AIKORE_PYTHON:-python3}" -c '
import http.server, os, signal
signal.signal(signal.SIGTERM, signal.SIG_IGN)
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["WEBUI_PORT"])), http.server.SimpleHTTPRequestHandler).serve_forever()
'
