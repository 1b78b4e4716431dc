"""Huey jobs: thin wrappers over instances.lifecycle so that every entry point enqueues the same
work. Jobs run in the huey consumer (a supervisord program), never in the web process."""

from __future__ import annotations

import logging
import threading

from huey.contrib.djhuey import db_task, on_startup

from instances import environments, lifecycle

log = logging.getLogger(__name__)
_reconciled = threading.Event()
_reconcile_lock = threading.Lock()


@db_task()
def start_instance(pk: int) -> None:
    lifecycle.launch(pk)


@db_task()
def stop_instance(pk: int) -> None:
    lifecycle.halt_by_id(pk)


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
