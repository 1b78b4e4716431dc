#!/usr/bin/env bash
# aikore.name: Env dump (test)
# aikore.category: Testing
# aikore.kind: test
# aikore.description: Writes its environment (env -0) to $INSTANCE_CONF_DIR/env.dump, then serves HTTP on WEBUI_PORT.
# aikore.ready: tcp
set -euo pipefail
: "${WEBUI_PORT:?WEBUI_PORT is not set}" "${INSTANCE_CONF_DIR:?INSTANCE_CONF_DIR is not set}"

env -0 > "$INSTANCE_CONF_DIR/env.dump.tmp"
mv -f -- "$INSTANCE_CONF_DIR/env.dump.tmp" "$INSTANCE_CONF_DIR/env.dump"
exec "${AIKORE_PYTHON:-python3}" -m http.server "$WEBUI_PORT" --bind 127.0.0.1
