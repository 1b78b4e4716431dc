#!/usr/bin/env bash
# aikore.name: Demo WebUI
# aikore.category: Tools
# aikore.description: Tiny built-in web app (HTML page, websocket echo, SSE clock) for trying AiKore without a GPU.
# aikore.vram: none
# aikore.downloads: nothing
# aikore.ready: http /
# aikore.ready_timeout: 60
#
# Needs nothing but Python's standard library: no GPU, no internet, nothing to install.
set -euo pipefail

AIKORE_HOME="${AIKORE_HOME:-$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)}"
# shellcheck source=functions.sh
source "$AIKORE_HOME/blueprints/functions.sh"

aikore_log "demo WebUI for instance '${INSTANCE_NAME:-?}' on port ${WEBUI_PORT:?WEBUI_PORT is not set}"
# The instance's launch arguments, split like a shell would but never evaluated, e.g. "--host 127.0.0.1".
aikore_launch_args
aikore_exec "${AIKORE_PYTHON:-python3}" "$AIKORE_HOME/blueprints/demo_webui.py" "${AIKORE_ARGS[@]}"
