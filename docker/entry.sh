#!/usr/bin/env bash
# Start the whole AiKore stack in the foreground and keep it up: prepare (migrate, end whatever a
# previous run of this data dir left, render configs), then supervisord runs daphne, the huey
# worker, the event watcher, nginx and every instance.
# - SIGTERM, SIGINT or SIGHUP stop it: every instance at once (the watcher does it, within
#   AIKORE_STOP_TIMEOUT), then AiKore's own programs; supervisord's own shutdown would stop the
#   instances one after another.
# - If supervisord itself dies, what it left running is ended and it is started again; the boot
#   brings back every instance that was meant to run.
# - Started as root (the container's default, `make run` as root): AiKore's own programs run as
#   AIKORE_USER and every instance as AIKORE_APP_USER (aikore_site/privileges.py: the users, PUID and
#   PGID, ownership in the data dir); supervisord and these start-up steps stay root, to start and
#   signal the processes of both. Started as a normal user, everything runs as that user.
# Used by `make run`, the Docker image and the test suite's stacks.
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
# process); instances get back the umask AiKore was started with, or UMASK (as linuxserver.io images
# take it), or AIKORE_INSTANCE_UMASK (supervisord's per-program umask=).
export AIKORE_INSTANCE_UMASK="${AIKORE_INSTANCE_UMASK:-${UMASK:-$(umask)}}"
umask 077

cd "$AIKORE_HOME"
if [ "$(id -u)" -eq 0 ] && [ "${AIKORE_USER:-}" != root ]; then
  # Creates or adjusts the two users (PUID/PGID, AIKORE_APP_UID) and checks they can reach the code
  # and the data dir; `stack prepare` then gives AiKore's user what it owns in the data dir.
  users="$("$AIKORE_PYTHON" -m aikore_site.privileges setup)" || exit 1
  while IFS='=' read -r key value; do
    case "$key" in
      AIKORE_USER|AIKORE_GROUP|AIKORE_APP_USER) export "$key=$value" ;;
    esac
  done <<< "$users"
  export HOME="$AIKORE_DATA_DIR"  # AiKore's programs' own (root's is not theirs)
else
  # AIKORE_USER=root as root keeps everything as root, as AiKore did before (not recommended).
  if ! AIKORE_USER="$(id -un 2>/dev/null)"; then
    echo "AiKore: user id $(id -u) has no name (no /etc/passwd entry); start AiKore as a named user, or as root" >&2
    exit 1
  fi
  AIKORE_GROUP="$(id -gn 2>/dev/null || id -g)"
  export AIKORE_USER AIKORE_GROUP AIKORE_APP_USER=""
fi
if [ -n "${TZ:-}" ] && [ ! -e "/usr/share/zoneinfo/$TZ" ]; then
  echo "AiKore: TZ=$TZ is not a time zone this system knows (/usr/share/zoneinfo); times will be UTC" >&2
fi

RUN="$AIKORE_DATA_DIR/run"
mkdir -p "$RUN" "$AIKORE_DATA_DIR"/{logs,supervisor/instances}

# One entry.sh per data dir. Every program started below gets the lock's descriptor closed
# (9>&-), so a killed entry.sh never leaves the lock held by its children.
exec 9>"$RUN/entry.lock"
if ! flock -n 9; then
  echo "AiKore is already running with the data dir $AIKORE_DATA_DIR ($RUN/entry.lock is held)." >&2
  exit 1
fi

# $1: prepare (first start) or cleanup (supervisord died). Both end what a previous run left:
# processes found by the stack's marker in their environment (aikore_site/procs.py).
prepare() {
  "$AIKORE_PYTHON" manage.py stack "$1" 9>&-
  rm -f "$RUN/supervisor.sock" "$RUN/daphne.sock" "$RUN/daphne.sock.lock" "$RUN/watcher.pid"
  # AIKORE_STACK_ID (the marker) and AIKORE_DISK_RESERVE_BYTES, written by `stack` (hex, digits).
  set -a
  source "$RUN/stack.env"
  set +a
}

# Alive and not a zombie (no fork: this runs in loops).
alive() {
  local stat
  read -r stat 2>/dev/null < "/proc/$1/stat" || return 1
  stat="${stat##*) }"
  [ "${stat:0:1}" != Z ]
}

sup_pid=""
stop_stack() {
  trap '' TERM INT HUP
  [ -n "$sup_pid" ] && alive "$sup_pid" || exit 0
  echo "AiKore: stopping every instance at once, then AiKore itself" >&2
  local watcher_pid
  watcher_pid="$(cat "$RUN/watcher.pid" 2>/dev/null || true)"
  if [[ "$watcher_pid" =~ ^[0-9]+$ ]] && grep -qa supervisor_events "/proc/$watcher_pid/cmdline" 2>/dev/null \
      && kill -USR1 "$watcher_pid" 2>/dev/null; then
    :  # the watcher (Django already loaded) stops the instances, then asks supervisord to exit
  elif ! "$AIKORE_PYTHON" manage.py stack shutdown 9>&-; then
    kill -TERM "$sup_pid" 2>/dev/null || true
  fi
  # Backstops: supervisord's own shutdown, then SIGKILL (the next start ends any leftovers).
  local i limit=$(( (${AIKORE_STOP_TIMEOUT:-10} + 10) * 10 ))
  for (( i = 0; i < limit; i++ )); do alive "$sup_pid" || break; sleep 0.1; done
  if alive "$sup_pid"; then
    echo "AiKore: supervisord is still running; sending it SIGTERM" >&2
    kill -TERM "$sup_pid" 2>/dev/null || true
    for (( i = 0; i < 300; i++ )); do alive "$sup_pid" || break; sleep 0.1; done
    kill -KILL "$sup_pid" 2>/dev/null || true
  fi
  wait "$sup_pid" 2>/dev/null || true
  exit 0
}
trap stop_stack TERM INT HUP

prepare prepare
quick_exits=0
while :; do
  started=$SECONDS
  # Its own session: a terminal's Ctrl-C reaches only this script, which stops things in order.
  setsid "$AIKORE_PYTHON" -m supervisor.supervisord -c "$AIKORE_HOME/docker/supervisord.conf" 9>&- &
  sup_pid=$!
  rc=0
  wait "$sup_pid" || rc=$?
  if (( SECONDS - started < 10 )); then quick_exits=$(( quick_exits + 1 )); else quick_exits=0; fi
  if (( quick_exits >= 5 )); then
    echo "AiKore: supervisord exited 5 times within seconds of starting (status $rc); giving up" >&2
    exit 1
  fi
  echo "AiKore: supervisord ended unexpectedly (status $rc); ending what it left, then starting it again" >&2
  prepare cleanup
done
