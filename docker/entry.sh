#!/usr/bin/env bash
# Start the whole AiKore stack in the foreground: migrate, prepare, then supervisord runs
# daphne, the huey worker, the event watcher, nginx and every instance.
# Used by `make run`, the Docker image and the test suite's live stack.
set -euo pipefail

AIKORE_HOME="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export AIKORE_HOME
export AIKORE_PYTHON="${AIKORE_PYTHON:-$AIKORE_HOME/.venv/bin/python}"
export AIKORE_DATA_DIR="$(realpath -m "${AIKORE_DATA_DIR:-$AIKORE_HOME/data}")"
export DJANGO_SETTINGS_MODULE=aikore_site.settings
export PYTHONUNBUFFERED=1
export PATH="$(dirname "$AIKORE_PYTHON"):$PATH"
# Debian keeps nginx in /usr/sbin, which is not on a normal user's PATH.
export AIKORE_NGINX="${AIKORE_NGINX:-$(PATH="$PATH:/usr/sbin:/sbin" command -v nginx || echo /usr/sbin/nginx)}"

# AiKore's own files and sockets are private (umask 077; settings.py sets it again for every Django
# process); instances get back the umask AiKore was started with (supervisord's per-program umask=).
export AIKORE_INSTANCE_UMASK="${AIKORE_INSTANCE_UMASK:-$(umask)}"
umask 077

cd "$AIKORE_HOME"
mkdir -p "$AIKORE_DATA_DIR"/{run,logs,supervisor/instances}
rm -f "$AIKORE_DATA_DIR/run/supervisor.sock" "$AIKORE_DATA_DIR/run/daphne.sock"

"$AIKORE_PYTHON" manage.py migrate --noinput -v 0
"$AIKORE_PYTHON" manage.py aikore_init
"$AIKORE_PYTHON" manage.py collectstatic --noinput -v 0
"$AIKORE_PYTHON" manage.py render_nginx

exec "$AIKORE_PYTHON" -m supervisor.supervisord -c "$AIKORE_HOME/docker/supervisord.conf"
