"""Loaded inside supervisord (docker/supervisord.conf, [rpcinterface:aikore]): what happens to
program output when the data dir's disk fills up.

supervisord reads each instance's output from a pipe and writes it to the instance's log file. On
a full disk its write fails, it prints a traceback and the output is gone without a trace (and a
buffered file object keeps retrying old bytes while dropping new ones). Here each log file is
written unbuffered; what cannot be written is counted, and the first write that succeeds again
starts with a line saying how many bytes were lost. Output is also not written while the disk has
less free space than AiKore's reserve (aikore_site/disk.py): the last megabytes stay for AiKore's
own state changes, and when the disk is nearly full the reserve file is deleted to give them room.
``aikore.droppedOutput()`` (XML-RPC) tells /api/health which logs are losing output right now.

It also wakes supervisord's loop when something happens: supervisord sleeps in poll() for up to a
second, and since Python retries a poll that a signal interrupted, it notices a child's exit (and
passes the event to the watcher) up to a second or two late. A self-pipe becomes readable on every
signal (signal.set_wakeup_fd: SIGCHLD) and every process state change, so the loop turns at once.

When AiKore was started as root (aikore_site/privileges.py), supervisord is root while AiKore's
processes run as AiKore's user and the instances as the apps' user. Then:
- supervisord opens the instances' log files, which lie in folders the apps may write: every log
  file is opened without following a symbolic link and only when it is a plain file with one link
  (an app could otherwise have root write its output over any file, e.g. by replacing its
  ``output.log`` with a link at a rotation);
- AiKore's user can't read the apps' processes' environments (the markers that find every process
  of an instance) nor signal them: ``aikore.scanProcesses`` and ``aikore.signalProcesses`` do it for
  it, only ever for processes of the two users (aikore_site/procs.py uses them through
  instances/supervisor.py).

An rpcinterface factory is supervisord's extension point for code that runs in its process; the
write path it replaces is ``supervisor.loggers.FileHandler.emit`` (supervisor 4.x), the open it
replaces the ``open`` of ``supervisor.loggers``. Standard library, psutil and supervisor only: no
Django in supervisord.
"""

from __future__ import annotations

import builtins
import contextlib
import io
import os
import pwd
import signal
import stat
import time
from typing import Any

import psutil
from supervisor import events, loggers
from supervisor.medusa import asyncore_25 as asyncore

from aikore_site import procs

_dropped: dict[str, int] = {}  # log file -> bytes lost since the last write that succeeded
_original_emit = loggers.FileHandler.emit
_reserve = {"file": "", "bytes": 0}
NEARLY_FULL_BYTES = 1024 * 1024  # the same threshold as aikore_site.disk


def _free_bytes(path: str) -> int | None:
    try:
        stat = os.statvfs(os.path.dirname(path))
    except OSError:
        return None
    return stat.f_bavail * stat.f_frsize


_OPEN_FLAGS = {"a": os.O_WRONLY | os.O_APPEND | os.O_CREAT, "w": os.O_WRONLY | os.O_CREAT}
# AiKore's user's (uid, gid) when supervisord runs as root and AiKore does not: log files are AiKore's.
_log_owner: dict[str, tuple[int, int] | None] = {"owner": None}


def safe_open(file: Any, mode: str = "r", buffering: int = -1, *args: Any, **kwargs: Any) -> Any:
    """supervisord's open() for log files: the path's last component is never followed when it is a
    symbolic link, and only a plain file with a single link is written (no FIFO that would block
    supervisord, no hard link to another file). Anything else (a descriptor, /dev/stdout, reading)
    goes to the built-in open."""
    if (not isinstance(file, str | bytes | os.PathLike) or mode.rstrip("b+") not in _OPEN_FLAGS or "+" in mode
            or os.fsdecode(file).startswith(("/dev/", "/proc/"))):
        return builtins.open(file, mode, buffering, *args, **kwargs)
    fd = os.open(file, _OPEN_FLAGS[mode.rstrip("b+")] | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o666)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
            raise OSError(f"refusing to write a log to {os.fsdecode(file)!r}: not a plain file with a single link")
        os.set_blocking(fd, True)
        owner = _log_owner["owner"]
        if owner is not None and (st.st_uid, st.st_gid) != owner:
            os.fchown(fd, *owner)  # AiKore reads the logs (and made the rest of the data dir)
        if mode.startswith("w"):
            os.ftruncate(fd, 0)
        return builtins.open(fd, mode, buffering, *args, **kwargs)
    except BaseException:
        os.close(fd)
        raise


def _release_reserve() -> None:
    if _reserve["file"]:
        try:
            os.unlink(_reserve["file"])
        except OSError:
            pass


class _ShortWrite(OSError):
    def __init__(self, cause: OSError, written: int) -> None:
        super().__init__(cause.errno, cause.strerror)
        self.written = written


def _write_all(stream: io.FileIO, data: bytes) -> None:
    written = 0
    try:
        while written < len(data):
            count = stream.write(data[written:])
            if not count:
                raise OSError(0, "write returned nothing")
            written += count
    except OSError as exc:
        raise _ShortWrite(exc, written) from exc


def _raw_stream(handler: loggers.FileHandler) -> io.FileIO | None:
    """The handler's file, unbuffered (so a failed write loses exactly what it says), or None
    for a stream that is not a plain binary file (stdout, a test stream)."""
    stream = handler.stream
    if isinstance(stream, io.FileIO):
        return stream
    if not isinstance(stream, io.BufferedWriter) or not os.path.isfile(handler.baseFilename):
        return None
    try:
        stream.flush()
    except OSError:
        pass  # bytes a failed write left in the buffer: the reopen below drops them, uncounted
    raw = safe_open(handler.baseFilename, "ab", buffering=0)  # the handler owns and closes it
    try:
        stream.close()
    except OSError:
        pass
    handler.stream = raw
    return raw


def _message(handler: loggers.FileHandler, record: Any) -> bytes:
    """The bytes supervisord's own emit would write (supervisor.loggers.Handler.emit)."""
    if handler.fmt == "%(message)s" and isinstance(record.msg, bytes) and (
            not record.kw or record.kw == {"exc_info": None}):
        return record.msg
    return (handler.fmt % record.asdict()).encode("utf-8")


def _note(count: int) -> bytes:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    return f"\n[aikore {stamp}] {count} bytes of output dropped: the disk was full\n".encode()


def accounted_emit(self: loggers.FileHandler, record: Any) -> None:
    try:
        stream = _raw_stream(self)
    except OSError:
        stream = None
    if stream is None:
        return _original_emit(self, record)
    data = _message(self, record)
    path = self.baseFilename
    free = _free_bytes(path)
    if free is not None and free < NEARLY_FULL_BYTES:
        _release_reserve()
    # Once the reserve has been given up, its space is AiKore's: no output goes there.
    floor = NEARLY_FULL_BYTES if os.path.exists(_reserve["file"] or "/nonexistent") else _reserve["bytes"]
    if free is not None and free - len(data) < floor:
        _dropped[path] = _dropped.get(path, 0) + len(data)
        return None
    pending = _dropped.get(path, 0)
    if pending:
        try:
            _write_all(stream, _note(pending))
        except _ShortWrite:
            _dropped[path] = pending + len(data)
            _release_reserve()
            return None
        _dropped.pop(path, None)
    try:
        _write_all(stream, data)
    except _ShortWrite as exc:
        _dropped[path] = _dropped.get(path, 0) + len(data) - exc.written
        _release_reserve()
    return None


def flush_notes(event: object = None) -> None:
    """Write the pending "bytes dropped" note of every log that has room again, also for programs
    that print nothing more (supervisord calls this every 5 s: TICK_5)."""
    for path, count in list(_dropped.items()):
        note = _note(count)
        free = _free_bytes(path)
        if free is None or free - len(note) < _reserve["bytes"] + NEARLY_FULL_BYTES:
            continue
        try:
            with safe_open(path, "ab", buffering=0) as fh:
                _write_all(fh, note)
        except (OSError, _ShortWrite):
            continue
        if _dropped.get(path) == count:
            _dropped.pop(path, None)


class _Waker:
    """A pipe in supervisord's socket map (an asyncore dispatcher): a byte written to it ends the
    loop's poll() at once."""

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.read_fd, False)
        os.set_blocking(self.write_fd, False)

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return False

    def handle_read_event(self) -> None:
        try:
            while os.read(self.read_fd, 4096):
                pass
        except BlockingIOError:
            pass

    def handle_error(self) -> None:
        pass

    def wake(self, event: object = None) -> None:
        try:
            os.write(self.write_fd, b"\0")
        except BlockingIOError:
            pass  # already full: the loop wakes anyway


_waker: _Waker | None = None


def _install_waker() -> None:
    global _waker
    if _waker is None:  # once: a config reload (SIGHUP) calls the factory again
        _waker = _Waker()
        signal.set_wakeup_fd(_waker.write_fd, warn_on_full_buffer=False)
    asyncore.socket_map[_waker.read_fd] = _waker
    # Each run of supervisord's main loop clears the subscriptions: subscribe again every time.
    events.subscribe(events.ProcessStateEvent, _waker.wake)


def _uids(*names: str) -> set[int]:
    uids = set()
    for name in names:
        if name:
            try:
                uids.add(pwd.getpwnam(name).pw_uid)
            except KeyError:
                continue
    return uids - {0}


class AiKoreNamespace:
    """XML-RPC methods under ``aikore.``."""

    def __init__(self, signal_uids: set[int] | None = None) -> None:
        self.signal_uids = signal_uids or set()

    def droppedOutput(self) -> dict[str, int]:  # camelCase like supervisord's own methods
        """{log file: bytes lost since its last successful write} for logs losing output now."""
        flush_notes()
        return dict(_dropped)

    def scanProcesses(self, stack_id: str, instance: int = -1, var: str = procs.INSTANCE_VAR) -> list[list]:
        """[[pid, create time, instance id or -1], ...]: the live processes carrying this stack's
        marker (aikore_site/procs.py; `var` names which: an instance's or its terminal's), those of
        one instance when instance >= 0. Done here because AiKore's user can't read the environment
        of the apps' user's processes."""
        if var not in (procs.INSTANCE_VAR, procs.TERMINAL_VAR):
            raise ValueError(f"not a marker: {var!r}")
        found = []
        for marked in procs.scan(str(stack_id), None if int(instance) < 0 else int(instance), str(var)):
            try:
                found.append([marked.proc.pid, marked.proc.create_time(),
                              -1 if marked.instance is None else marked.instance])
            except psutil.Error:
                continue
        return found

    def signalProcesses(self, targets: list[list], signum: int) -> int:
        """Send signum to each [pid, create time] that is still that process (a recycled PID has
        another create time) and runs as the apps' user or AiKore's user, never anyone else.
        Returns how many were signalled."""
        sig = signal.Signals(int(signum))
        sent = 0
        for pid, create_time in targets:
            try:
                proc = psutil.Process(int(pid))
                if abs(proc.create_time() - float(create_time)) > 0.01 or proc.uids().real not in self.signal_uids:
                    continue
                proc.send_signal(sig)
                sent += 1
            except (psutil.Error, ValueError, TypeError):
                continue
        return sent


def make_rpcinterface(supervisord: Any, reserve_file: str = "", reserve_bytes: str = "0", app_user: str = "",
                      aikore_user: str = "", **config: Any) -> AiKoreNamespace:
    """reserve_file, reserve_bytes: AiKore's disk reserve (aikore_site/disk.py); app_user,
    aikore_user: whose processes signalProcesses may signal (from the config section's options)."""
    _reserve.update(file=reserve_file, bytes=int(reserve_bytes or 0))
    if os.geteuid() == 0 and aikore_user and aikore_user != "root":
        with contextlib.suppress(KeyError):
            record = pwd.getpwnam(aikore_user)
            _log_owner["owner"] = (record.pw_uid, record.pw_gid)
    loggers.open = safe_open  # the module's open(): FileHandler's and its rotation's
    loggers.FileHandler.emit = accounted_emit
    events.subscribe(events.Tick5Event, flush_notes)
    _install_waker()
    return AiKoreNamespace(_uids(app_user, aikore_user))
