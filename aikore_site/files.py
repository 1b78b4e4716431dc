"""Files shared by AiKore's processes: written atomically, locked across processes. One helper each,
used by instances (scripts, env, supervisord groups, log index) and proxy (nginx config)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def atomic_write(path: Path, data: str | bytes, mode: int = 0o644) -> None:
    """Write a file so readers see the old or the new content, never half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode("utf-8") if isinstance(data, str) else data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock held for the block, across threads (each opens its own descriptor) and
    processes. Released by the kernel if the holder dies."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# What in the data dir is AiKore's alone, whatever umask made it (older versions left 0644/0755):
# secrets and databases 0600, and the folders that hold its state 0700. Instances' own folders
# (instances/, outputs/, models/) are left as they are.
PRIVATE_FILE_GLOBS = ("aikore.db*", "huey.db*", "secret_key", "admin_password", "run/*")
PRIVATE_DIRS = ("run", "logs", "supervisor", "nginx")


def make_private(data_dir: Path) -> list[Path]:
    """chmod the data dir to 0700 and AiKore's secrets, databases and sockets in it to 0600;
    returns what was changed."""
    changed: list[Path] = []

    def tighten(path: Path, mode: int) -> None:
        try:
            if (path.lstat().st_mode & 0o777) != mode and not path.is_symlink():
                os.chmod(path, mode)
                changed.append(path)
        except FileNotFoundError:
            pass

    tighten(data_dir, 0o700)
    for name in PRIVATE_DIRS:
        tighten(data_dir / name, 0o700)
    for pattern in PRIVATE_FILE_GLOBS:
        for path in data_dir.glob(pattern):
            if not path.is_dir():
                tighten(path, 0o600)
    return changed
