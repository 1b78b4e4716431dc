"""supervisord event listener: keeps instance status/pid true and hands crashes to the lifecycle
(which decides about a restart with backoff). Runs as [eventlistener:watcher].

It also runs the stack's shutdown: docker/entry.sh sends it SIGUSR1 on SIGTERM (it is already
running with Django loaded, so every instance gets its SIGTERM within milliseconds rather than
after a new Python process has started), and it stops every instance at once, then supervisord.
"""

from __future__ import annotations

import gc
import os
import signal
import sys
import threading
import xmlrpc.client
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import close_old_connections
from supervisor import childutils

from aikore_site import disk
from aikore_site.files import atomic_write
from instances import lifecycle, supervisor

PID_FILE = "watcher.pid"


def _shutdown() -> None:
    try:
        for note in lifecycle.shutdown_stack():
            sys.stderr.write(f"watcher: shutdown: {note}\n")
    except Exception as exc:  # entry.sh falls back to stopping supervisord itself
        sys.stderr.write(f"watcher: shutdown failed: {exc!r}\n")
        sys.stderr.flush()
        return
    sys.stderr.flush()
    close_old_connections()
    # Leave now rather than wait for supervisord to stop this listener: its shutdown visits one
    # program per loop turn, on a one-second tick once nothing else is happening; it exits as soon
    # as none of its programs runs.
    os._exit(0)


class Command(BaseCommand):
    help = "supervisord event listener for instance processes (started by supervisord, not by hand)."

    def handle(self, *args: Any, **options: Any) -> None:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        started = threading.Event()

        def on_shutdown(*_: object) -> None:
            if not started.is_set():
                started.set()
                threading.Thread(target=_shutdown, name="aikore-shutdown", daemon=True).start()

        signal.signal(signal.SIGUSR1, on_shutdown)
        atomic_write(Path(settings.RUN_DIR) / PID_FILE, f"{os.getpid()}\n")
        # Catch up with whatever happened while no listener was running.
        lifecycle.reconcile()
        close_old_connections()
        gc.freeze()  # start-up objects live until exit: keep them out of every collection, the last one too
        while True:
            headers, payload = childutils.listener.wait(sys.stdin, sys.stdout)
            try:
                self.dispatch(headers["eventname"], childutils.get_headers(payload.split("\n", 1)[0]))
            except Exception as exc:  # never let one bad event kill the listener
                sys.stderr.write(f"watcher: error handling {headers.get('eventname')}: {exc!r}\n")
                sys.stderr.flush()
            finally:
                close_old_connections()
            childutils.listener.ok(sys.stdout)

    def dispatch(self, event: str, data: dict[str, str]) -> None:
        if event == "TICK_5":
            disk.keep_reserve()
            return
        name = data.get("processname", "")
        pk = supervisor.instance_id_from_process(name)
        if pk is None:
            return
        program = name.rsplit("-", 1)[-1]
        if program in supervisor.DESKTOP_PROGRAMS:
            # supervisord restarts a desktop program itself; FATAL is it giving up.
            if event == "PROCESS_STATE_FATAL":
                lifecycle.desktop_program_failed(pk, program)
            return
        if program != "webui":
            return
        pid = int(data["pid"]) if data.get("pid", "").isdigit() else None
        if event == "PROCESS_STATE_RUNNING" and pid:
            lifecycle.process_started(pk, pid)
        elif event in ("PROCESS_STATE_EXITED", "PROCESS_STATE_FATAL"):
            exit_code = None
            try:
                info = supervisor.process_info(pk)
                exit_code = info.get("exitstatus") if info else None
            except (supervisor.SupervisorError, xmlrpc.client.Fault):
                pass
            sys.stderr.write(f"watcher: instance {pk} {event} pid={pid} exit={exit_code}\n")
            sys.stderr.flush()
            lifecycle.handle_exit(pk, pid, exit_code, fatal=event == "PROCESS_STATE_FATAL")
