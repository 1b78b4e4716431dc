"""Huey jobs: thin wrappers over instances.lifecycle so that every entry point enqueues the same
work. Jobs run in the huey consumer (a supervisord program), never in the web process."""

from __future__ import annotations

import gc
import logging
import threading

from huey.contrib.djhuey import db_task, on_startup

from instances import environments, lifecycle

log = logging.getLogger(__name__)
_reconciled = threading.Event()
_reconcile_lock = threading.Lock()


@db_task()
def start_instance(pk: int, action: str = "start", install_only: bool = False) -> None:
    lifecycle.launch(pk, action=action, install_only=install_only)


@db_task()
def stop_instance(pk: int, generation: int | None = None) -> None:
    lifecycle.halt_by_id(pk, generation)


@db_task()
def restart_instance(pk: int) -> None:
    lifecycle.restart(pk)


@db_task()
def update_instance(pk: int) -> None:
    environments.run(pk, "update")


@db_task()
def rebuild_instance(pk: int) -> None:
    environments.run(pk, "rebuild")


@db_task()
def crash_restart(pk: int, generation: int) -> None:
    """Scheduled by the event listener with an exponential delay after a crash."""
    lifecycle.launch(pk, generation)


@db_task()
def await_ready_task(pk: int) -> None:
    lifecycle.await_ready(pk)


@db_task()
def end_leftovers_task(pk: int) -> None:
    """End what a crashed run of the instance left behind (children that outlived it)."""
    lifecycle.end_leftovers(pk)


@on_startup()
def reconcile_on_startup() -> None:
    """The worker may have been killed mid-job: make the database agree with supervisord."""
    from django.db import close_old_connections

    # Huey runs startup hooks once per worker thread; once per process is what we want.
    with _reconcile_lock:
        if _reconciled.is_set():
            return
        _reconciled.set()
    try:
        for change in lifecycle.reconcile():
            log.warning("reconcile: %s", change)
        from proxy.tasks import regenerate_nginx

        regenerate_nginx()  # routes for what actually runs now
    finally:
        close_old_connections()
        # What start-up loaded lives as long as the process: out of the collector's way, its
        # final collection at exit no longer takes ~1 s of the stack's shutdown.
        gc.freeze()
