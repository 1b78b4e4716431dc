"""supervisord event listener: keeps instance status/pid true and hands crashes to the lifecycle
(which decides about a restart with backoff). Runs as [eventlistener:watcher]."""

from __future__ import annotations

import signal
import sys
import xmlrpc.client
from typing import Any

from django.core.management.base import BaseCommand
from django.db import close_old_connections
from supervisor import childutils

from instances import lifecycle, supervisor


class Command(BaseCommand):
    help = "supervisord event listener for instance processes (started by supervisord, not by hand)."

    def handle(self, *args: Any, **options: Any) -> None:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        # Catch up with whatever happened while no listener was running.
        lifecycle.reconcile()
        close_old_connections()
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
        pk = supervisor.instance_id_from_process(data.get("processname", ""))
        if pk is None or not data.get("processname", "").endswith("-webui"):
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
