"""Room for AiKore's own writes when the data dir's disk fills up.

Instances share the data dir's filesystem (outputs, models, logs) and can fill it. AiKore keeps a
reserve file there (run/disk-reserve, AIKORE_DISK_RESERVE_MB): when the disk is full it deletes the
file, and the space it held lets AiKore record state changes (stop an instance, log a user in, queue
a job) instead of failing them. The reserve is released
- by supervisord's log writer as soon as a write fails for lack of space
  (instances/supervisord_plugin.py; it also stops writing instance output below the reserve's size),
- by the watcher when free space is nearly gone (keep_reserve, every few seconds),
- by a write that failed for lack of space and is worth one retry (retry_if_full),
and taken again once there is room for it and a margin.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from django.conf import settings
from django.db import DatabaseError

log = logging.getLogger(__name__)
T = TypeVar("T")

RESERVE_NAME = "disk-reserve"
# Released below this much free space (the disk is as good as full) ...
NEARLY_FULL_BYTES = 1024 * 1024
CHUNK = 1024 * 1024


def reserve_path() -> Path:
    return Path(settings.RUN_DIR) / RESERVE_NAME


def reserve_bytes() -> int:
    return settings.AIKORE_DISK_RESERVE_MB * 1024 * 1024


def free_bytes() -> int:
    return shutil.disk_usage(settings.AIKORE_DATA_DIR).free


def is_full_error(exc: BaseException | None) -> bool:
    """A write that failed for lack of space: OSError ENOSPC/EDQUOT, or SQLITE_FULL through Django
    or straight from sqlite3 (Huey's queue), also when wrapped in another error (Django's session
    store turns it into UpdateError)."""
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if isinstance(exc, (DatabaseError, sqlite3.DatabaseError)) and "disk is full" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def release_reserve() -> bool:
    """Give the reserve's space to AiKore's own writes. True if there was one to release."""
    try:
        os.unlink(reserve_path())
    except FileNotFoundError:
        return False
    except OSError as exc:
        log.warning("could not release the disk reserve %s: %s", reserve_path(), exc)
        return False
    log.warning("the data dir's disk is full: released the %d MB reserve for AiKore's own writes",
                settings.AIKORE_DISK_RESERVE_MB)
    return True


def _take_reserve(size: int) -> None:
    path = reserve_path()
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        try:
            os.posix_fallocate(fd, 0, size)
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                raise
            # No fallocate (ZFS, some network filesystems): real bytes, incompressible.
            for _offset in range(0, size, CHUNK):
                os.write(fd, os.urandom(CHUNK))
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    os.close(fd)
    os.replace(tmp, path)


def keep_reserve() -> None:
    """Release the reserve when the disk is nearly full; take it again when there is room for it
    and twice as much beside (so it is not taken and released over and over)."""
    size = reserve_bytes()
    if size <= 0:
        return
    try:
        free = free_bytes()
        present = reserve_path().exists()
        if present and free < NEARLY_FULL_BYTES:
            release_reserve()
        elif not present and free > 3 * size:
            _take_reserve(size)
    except OSError as exc:
        log.warning("disk reserve: %s", exc)


def retry_if_full(write: Callable[[], T]) -> T:
    """Run a write; if it fails for lack of space and a reserve was there to release, run it
    once more."""
    try:
        return write()
    except Exception as exc:
        if not is_full_error(exc) or not release_reserve():
            raise
    return write()
