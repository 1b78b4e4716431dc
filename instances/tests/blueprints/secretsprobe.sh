#!/usr/bin/env bash
# aikore.name: Secrets probe (test)
# aikore.category: Testing
# aikore.kind: test
# aikore.description: Tries to read AiKore's secrets, reach its sockets and write its configs, and to use what an app may; prints one "probe" line per try, then waits.
# aikore.ready: none
set -uo pipefail
data="$AIKORE_DATA_DIR"
echo "probe user: $(id -un) $(id -u) $(id -g)"
echo "probe umask: $(umask)"
echo "probe home: $HOME"
echo "probe tmp: ${TMPDIR:-}"
try() {  # try NAME COMMAND...: one line saying whether the app could
    local name="$1"
    shift
    if "$@" >/dev/null 2>&1; then echo "probe $name: allowed"; else echo "probe $name: denied"; fi
}
for file in aikore.db aikore.db-wal huey.db secret_key admin_password stack_token run/stack.env; do
    try "read $file" cat "$data/$file"
done
try "list run" ls "$data/run"
try "list logs" ls "$data/logs"
try "read daphne.log" cat "$data/logs/daphne.log"
try "write supervisor config" touch "$data/supervisor/instances/evil.conf"
try "write custom blueprint" touch "$data/custom_blueprints/evil.sh"
try "rename data dir entry" mv "$data/secret_key" "$data/secret_key.moved"
try "write the data dir" touch "$data/evil"
try "write instances dir" mkdir "$data/instances/evil"
for socket in supervisor.sock daphne.sock events.sock; do
    # Connecting to a unix socket needs write access to it.
    try "connect $socket" python3 -c 'import socket, sys; s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])' "$data/run/$socket"
done
# What an app needs: its folder, its outputs, the shared models, the caches, its home.
try "write own folder" touch "$INSTANCE_CONF_DIR/probe-file"
try "write outputs" touch "$INSTANCE_OUTPUT_DIR/probe-output"
try "read models" ls "$AIKORE_MODELS_DIR/checkpoints"
try "write models" touch "$AIKORE_MODELS_DIR/loras/probe-lora"
try "write uv cache" touch "$UV_CACHE_DIR/probe-cache"
try "write home" touch "$HOME/probe-home"
try "write tmp" mktemp
echo "probe done: yes"
exec sleep 300
