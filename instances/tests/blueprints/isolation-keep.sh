#!/usr/bin/env bash
# aikore.name: Isolation probe, prefix kept (test)
# aikore.category: Testing
# aikore.description: The isolation probe behind a proxy that keeps /instance/<slug>/ (it answers any path).
# aikore.ready: http /health
# aikore.proxy: keep
set -euo pipefail
exec "${AIKORE_PYTHON:-python3}" "$AIKORE_HOME/instances/tests/isolation_app.py"
