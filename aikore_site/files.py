"""Files shared by AiKore's processes: written atomically, locked across processes. One helper each,
used by instances (scripts, env, supervisord groups, log index) and proxy (nginx config).

When the apps run as a user of their own (aikore_site/privileges.py), the folders they write are
shared with AiKore's group (shared_dir), and AiKore reads and appends to files in those folders only
through open_no_symlink(): an app could otherwise replace its log or launch script with a link to
AiKore's secret key and have AiKore show it. Files a root process makes for AiKore (the start-up steps,
the tests) are given to AiKore's user (owned_by: settings.AIKORE_FILE_OWNER)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO


def atomic_write(path: Path, data: str | bytes, mode: int = 0o644) -> None:
    """Write a file so readers see the old or the new content, never half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        if os.geteuid() == 0:
            # A root process (the start-up steps, a CLI command as root, the tests) writes for
            # AiKore's user: websockify, nginx and the launchers must read what it wrote.
            owner = _root_file_owner()
            if owner is not None:
                os.fchown(fd, *owner)
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


def _file_owner() -> tuple[int, int] | None:
    from django.conf import settings

    return getattr(settings, "AIKORE_FILE_OWNER", None)


def _root_file_owner() -> tuple[int, int] | None:
    """AIKORE_FILE_OWNER where Django's settings are loaded (None where they are not)."""
    from django.conf import settings

    return _file_owner() if settings.configured else None


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock held for the block, across threads (each opens its own descriptor) and
    processes. Released by the kernel if the holder dies. (flock needs no write access: a lock
    file some other process made is still usable.)"""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        owner = _file_owner()
        if owner is not None:
            with contextlib.suppress(OSError):
                os.fchown(fd, *owner)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def ensure_dir(path: Path, mode: int | None = None, owner: tuple[int, int] | None = None) -> Path:
    """mkdir -p path; then, on the folder itself (never through a link), chmod it to `mode` and
    chown it to `owner` (uid, gid) when given and this process may."""
    path.mkdir(parents=True, exist_ok=True)
    if mode is None and owner is None:
        return path
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return path  # a link (an app's doing, or the user's): left alone
    try:
        st = os.fstat(fd)
        if owner is not None and (st.st_uid, st.st_gid) != owner:
            with contextlib.suppress(PermissionError):
                os.fchown(fd, *owner)
        if mode is not None and stat.S_IMODE(st.st_mode) != mode:
            with contextlib.suppress(PermissionError):  # another user's folder (the apps')
                os.fchmod(fd, mode)
    finally:
        os.close(fd)
    return path


def shared_dir(path: Path) -> Path:
    """A folder instances write (their own folder, outputs, model folders): shared with AiKore's
    group when the apps run as a user of their own (settings.SHARED_DIR_MODE), AiKore's otherwise."""
    from django.conf import settings

    return ensure_dir(path, settings.SHARED_DIR_MODE, settings.AIKORE_FILE_OWNER)


def empty_dir(path: Path) -> None:
    """Delete what is in `path` (not the folder), never following a link: a link inside is removed
    itself, and shutil.rmtree does not follow links below."""
    try:
        entries = list(os.scandir(path))
    except FileNotFoundError:
        return
    for entry in entries:
        with contextlib.suppress(FileNotFoundError):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)


def open_no_symlink(path: Path, mode: str = "rb") -> IO:
    """open() a plain file for reading ("rb") or appending ("ab", created when missing) without
    following a symbolic link at its last component, refusing anything but a plain file with a single
    link (OSError), and without blocking on a FIFO. For files in folders an app may write."""
    flags = {"rb": os.O_RDONLY, "ab": os.O_WRONLY | os.O_APPEND | os.O_CREAT}[mode]
    fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o600)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
            raise OSError(f"{path} is not a plain file with a single link")
        os.set_blocking(fd, True)
        return os.fdopen(fd, mode)
    except BaseException:
        os.close(fd)
        raise


# What in the data dir is AiKore's alone, whatever umask made it (older versions left 0644/0755):
# secrets and databases 0600, and the folders that hold its state 0700. Instances' own folders
# (instances/, outputs/, models/) are left as they are.
PRIVATE_FILE_GLOBS = ("aikore.db*", "huey.db*", "secret_key", "admin_password", "run/*")
PRIVATE_DIRS = ("run", "logs", "supervisor", "nginx")


def make_private(data_dir: Path, shared: bool = False) -> list[Path]:
    """chmod the data dir to 0700 (0750 when `shared` with an apps' user, which must reach its
    folders) and AiKore's secrets, databases and sockets in it to 0600; returns what was changed."""
    changed: list[Path] = []

    def tighten(path: Path, mode: int) -> None:
        try:
            if (path.lstat().st_mode & 0o777) != mode and not path.is_symlink():
                os.chmod(path, mode)
                changed.append(path)
        except FileNotFoundError:
            pass

    tighten(data_dir, 0o750 if shared else 0o700)
    for name in PRIVATE_DIRS:
        tighten(data_dir / name, 0o700)
    for pattern in PRIVATE_FILE_GLOBS:
        for path in data_dir.glob(pattern):
            if not path.is_dir():
                tighten(path, 0o600)
    return changed
