"""Cache a read until the database changes: exact, not time-based.

SQLite gives every connection two counters that, together, change whenever anything is committed
to the database file: `PRAGMA data_version` moves when *another* connection (any process: the
worker, the watcher, the CLI, another web thread) committed, and `total_changes` counts the rows
this connection changed itself. Reading both costs tens of microseconds; the reads they guard
(every instance with its summary, a token lookup) cost milliseconds and are polled by dashboards
and scripts far more often than anything is written.

Results are cached per thread (Django's connections are per thread) and dropped as soon as the
stamp moves. Inside a transaction, and on other databases, nothing is cached.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Hashable
from typing import TypeVar

from django.db import connection

T = TypeVar("T")

MAX_ENTRIES = 256  # per function and thread; keys are e.g. token digests, so keep it bounded


def database_stamp() -> tuple[object, int, int] | None:
    """Something that compares equal between two calls on this thread only if nothing was
    committed to the database in between; None when that cannot be known."""
    if connection.vendor != "sqlite" or connection.in_atomic_block:
        return None
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA data_version")
        (version,) = cursor.fetchone()
    raw = connection.connection  # a reconnect starts new counters: the object is part of the stamp
    return raw, version, raw.total_changes


def cached_until_db_changes(func: Callable[..., T]) -> Callable[..., T]:
    """Memoise `func(*args)` per thread for as long as `database_stamp()` stays the same.

    `func` must only read the database and return a value that is safe to hand out again
    (immutable, or copied by the caller before anything may change it)."""
    local = threading.local()

    @functools.wraps(func)
    def wrapper(*args: Hashable) -> T:
        stamp = database_stamp()
        if stamp is None:
            return func(*args)
        if getattr(local, "stamp", None) != stamp:
            local.stamp, local.values = stamp, {}
        try:
            return local.values[args]
        except KeyError:
            pass
        value = func(*args)
        # A commit between reading the stamp and func()'s own read only makes the next call miss.
        if len(local.values) >= MAX_ENTRIES:
            local.values.clear()
        local.values[args] = value
        return value

    return wrapper
