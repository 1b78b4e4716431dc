#!/usr/bin/env bash
# aikore.name: Isolation probe (test)
# aikore.category: Testing
# aikore.description: Logs every request's headers, echoes raw URIs and body digests, websocket echo, and serves the attack page.
# aikore.ready: http /health
set -euo pipefail
exec "${AIKORE_PYTHON:-python3}" "$AIKORE_HOME/instances/tests/isolation_app.py"
