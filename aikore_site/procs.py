"""AiKore's processes in the process table, recognised by a marker in their environment.

Every process of a stack carries ``AIKORE_STACK_ID=<id>`` (exported by docker/entry.sh before
supervisord starts, so supervisord, daphne, the worker, the watcher, nginx's master and workers and
every instance inherit it), and every process of an instance also ``AIKORE_INSTANCE=<id>:<pk>``
(set in its supervisord program). An environment is inherited through fork, setsid, double forks
and daemonising, and /proc/<pid>/environ keeps the one a process was started with, so the markers
find what a process tree or a process group misses: children that left the session, orphans of a
killed supervisord, nginx workers whose master died. The id is derived from the data dir (a random
token kept in it plus its real path), so two stacks on one machine never touch each other's
processes, even in containers sharing the host's PID namespace.

A process that replaces its whole environment (``env -i``), or writes its process title over it
(nginx does; so can setproctitle), loses the marker; the process tree snapshot taken before a stop
still covers its descendants, and nginx is recognised by its working directory instead
(nginx_processes). Where the kernel lets AiKore create cgroups (cgroup v2, writable: root on a
host; not an unprivileged container), each instance also runs in a cgroup of its own, which no
descendant can leave: its processes are listed and killed from there too.

When AiKore was started as root, its processes run as AiKore's user and the instances as the apps'
user (aikore_site/privileges.py): AiKore's user may neither read those processes' environments nor
signal them. A *helper* then does both for it (``use_helper``: supervisord, which runs as root, through
the methods of instances/supervisord_plugin.py); scan() asks it, and signal_all() hands it whatever
could not be signalled directly. Root (the start-up steps, the tests) and a single user need none.

Standard library and psutil only: standalone launchers (proxy/run_nginx.py) import it before
Django is set up.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import psutil

STACK_VAR = "AIKORE_STACK_ID"
INSTANCE_VAR = "AIKORE_INSTANCE"
# An instance terminal's processes (its tmux server and every shell's descendants): a marker of
# their own, not the instance's, since a terminal outlives the app's stops (terminals/service.py).
TERMINAL_VAR = "AIKORE_TERMINAL"
CGROUP_VAR = "AIKORE_CGROUP"  # the instance's cgroup directory; the launcher moves itself there
SAFE_CGROUP_PATH = re.compile(r"/[A-Za-z0-9_./@:-]*")
TOKEN_FILE = "stack_token"
POLL_SECONDS = 0.02


def stack_id_for(data_dir: Path) -> str:
    """The marker value of the stack that uses this data dir (16 hex digits)."""
    data_dir = Path(os.path.realpath(data_dir))
    path = data_dir / TOKEN_FILE
    try:
        token = path.read_text().strip()
    except FileNotFoundError:
        token = ""
    if not token:
        data_dir.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            token = path.read_text().strip()
        else:
            token = secrets.token_hex(16)
            with os.fdopen(fd, "w") as fh:
                fh.write(token + "\n")
    return hashlib.sha256(f"{token}:{data_dir}".encode()).hexdigest()[:16]


def instance_marker(stack_id: str, pk: int) -> str:
    return f"{stack_id}:{pk}"


@dataclass
class Marked:
    proc: psutil.Process
    instance: int | None  # the instance's id for an instance's process, None for AiKore's own


def _environ(pid: int) -> bytes | None:
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            return b"\0" + fh.read()
    except OSError:  # gone, a kernel thread, or another user's process
        return None


def _match(env: bytes, stack_id: str, var: str = INSTANCE_VAR) -> tuple[bool, int | None]:
    """(is this stack's, instance id or None) from a raw environment; `var` names the marker
    that carries the instance id (INSTANCE_VAR, or TERMINAL_VAR for terminals)."""
    key = f"\0{var}={stack_id}:".encode()
    start = env.find(key)
    if start >= 0:
        end = env.find(b"\0", start + len(key))
        value = env[start + len(key):end if end >= 0 else None]
        if value.isdigit():
            return True, int(value)
    return f"\0{STACK_VAR}={stack_id}\0".encode() in env + b"\0", None


def _excluded() -> set[int]:
    """This process and its ancestors: a cleanup started from inside a stack never ends itself."""
    pids = {os.getpid()}
    with contextlib.suppress(psutil.Error):
        pids.update(p.pid for p in psutil.Process().parents())
    return pids


class Helper(Protocol):
    """Does what this process's user may not: read other users' process environments, signal them."""

    def scan(self, stack_id: str, instance: int | None, var: str) -> list[tuple[int, float, int | None]]:
        """[(pid, create time, instance id or None)] as scan() finds them."""

    def signal(self, targets: list[tuple[int, float]], sig: int) -> None:
        """Send sig to each (pid, create time) that is still that process."""


_helper: Helper | None = None


def use_helper(helper: Helper | None) -> None:
    """Route scans, and the signals this process may not send itself, through helper (None: none)."""
    global _helper
    _helper = helper


def scan(stack_id: str, instance: int | None = None, var: str = INSTANCE_VAR) -> list[Marked]:
    """Live processes carrying this stack's marker (only instance `instance`'s when given).
    Reads /proc directly (about 5 µs a process); a psutil.Process is made only for matches, and the
    marker is read again after it exists, so a PID recycled in between is never returned.
    var=TERMINAL_VAR: Marked.instance is the instance whose terminal the process belongs to. With a
    helper, the helper reads them (and this process and its ancestors are left out here too)."""
    if _helper is not None:
        return _scan_through(_helper, stack_id, instance, var)
    found: list[Marked] = []
    excluded = _excluded()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in excluded:
            continue
        env = _environ(int(entry))
        if env is None:
            continue
        ours, pk = _match(env, stack_id, var)
        if not ours or (instance is not None and pk != instance):
            continue
        try:
            proc = psutil.Process(int(entry))
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
        except psutil.Error:
            continue
        again = _environ(proc.pid)
        if again is None or _match(again, stack_id, var) != (ours, pk):
            continue
        found.append(Marked(proc, pk))
    return found


def _scan_through(helper: Helper, stack_id: str, instance: int | None, var: str) -> list[Marked]:
    excluded = _excluded()
    found = []
    for pid, create_time, pk in helper.scan(stack_id, instance, var):
        if pid in excluded:
            continue
        try:
            proc = psutil.Process(pid)
            if abs(proc.create_time() - create_time) > 0.01 or proc.status() == psutil.STATUS_ZOMBIE:
                continue
        except psutil.Error:
            continue
        found.append(Marked(proc, pk))
    return found


def nginx_processes(nginx_dir: Path) -> list[psutil.Process]:
    """The nginx processes (master and workers, orphaned or not) of the stack whose nginx runs in
    `nginx_dir`. nginx writes its process title over its environment, so the marker is gone;
    supervisord starts it with that directory as its working directory, which workers inherit."""
    target = os.path.realpath(nginx_dir)
    found = []
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] != "nginx":
            continue
        try:
            if os.path.realpath(proc.cwd()) == target and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (psutil.Error, OSError):
            continue
    return found


def cgroup_root() -> Path | None:
    """The cgroup v2 directory this process runs in, if it may create cgroups below it (and move
    processes there): where instance cgroups go. None when there is no writable cgroup v2
    hierarchy (an unprivileged container, cgroup v1 only)."""
    try:
        own = next(line[3:] for line in Path("/proc/self/cgroup").read_text().splitlines() if line.startswith("0::"))
        mounts = Path("/proc/self/mountinfo").read_text().splitlines()
    except (OSError, StopIteration):
        return None
    for line in mounts:
        fields = line.split()
        if "-" not in fields:
            continue
        fstype = fields[fields.index("-") + 1]
        if fstype != "cgroup2" or fields[3] != "/":
            continue
        path = Path(fields[4]) / own.strip().lstrip("/")
        if (SAFE_CGROUP_PATH.fullmatch(str(path)) and os.access(path, os.W_OK)
                and os.access(path / "cgroup.procs", os.W_OK)):
            return path
    return None


def instance_cgroup(root: Path, stack_id: str, pk: int) -> Path:
    return root / f"aikore-{stack_id}" / f"instance-{pk}"


def cgroup_pids(path: Path) -> list[int]:
    """PIDs in a cgroup and the cgroups below it, as the kernel lists them now."""
    found: list[int] = []
    for directory, _dirs, _files in os.walk(path):
        try:
            found.extend(int(pid) for pid in Path(directory, "cgroup.procs").read_text().split())
        except (OSError, ValueError):
            continue
    return found


def cgroup_members(path: Path) -> list[psutil.Process]:
    """Live processes in a cgroup and the cgroups below it."""
    found = []
    for pid in cgroup_pids(path):
        with contextlib.suppress(psutil.Error):
            proc = psutil.Process(pid)
            if proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
    return found


def cgroup_kill(path: Path) -> None:
    """SIGKILL everything in the cgroup at once (cgroup.kill, Linux 5.14+; else one by one)."""
    try:
        Path(path, "cgroup.kill").write_text("1")
    except OSError:
        signal_all(cgroup_members(path), signal.SIGKILL)


def remove_cgroup(path: Path) -> None:
    """Remove a cgroup and those below it; one that still has processes stays."""
    for directory, _dirs, _files in sorted(os.walk(path), key=lambda entry: -len(entry[0])):
        with contextlib.suppress(OSError):
            os.rmdir(directory)


def alive(proc: psutil.Process) -> bool:
    """Running and not a zombie (a zombie is dead; its parent just has not collected it yet).
    psutil checks the create time, so a recycled PID reads as gone."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def signal_all(procs: Iterable[psutil.Process], sig: int) -> None:
    """Send sig to each process (a recycled PID is left alone: psutil checks the create time); those
    this process may not signal go to the helper, when there is one."""
    denied: list[tuple[int, float]] = []
    for proc in procs:
        try:
            proc.send_signal(sig)
        except psutil.AccessDenied:
            with contextlib.suppress(psutil.Error):
                denied.append((proc.pid, proc.create_time()))
        except psutil.Error:
            continue
    if denied and _helper is not None:
        _helper.signal(denied, sig)


def wait_gone(procs: Iterable[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait until every process is dead (zombies count as dead); return the survivors. Works for
    processes that are not our children (psutil.wait_procs would wait for their zombies)."""
    pending = [p for p in procs if alive(p)]
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
        pending = [p for p in pending if alive(p)]
    return pending


def terminate(procs: Iterable[psutil.Process], grace: float) -> list[psutil.Process]:
    """SIGTERM, then SIGKILL whatever outlives `grace` seconds. Returns the ones that needed the
    SIGKILL."""
    procs = [p for p in procs if alive(p)]
    signal_all(procs, signal.SIGTERM)
    forced = wait_gone(procs, grace)
    signal_all(forced, signal.SIGKILL)
    wait_gone(forced, 5)
    return forced


def terminal_processes(stack_id: str, instance: int | None = None) -> list[psutil.Process]:
    """Live processes of this stack's instance terminals (of instance `instance`'s when given),
    wherever they went: `setsid`, `nohup`, double forks (TERMINAL_VAR)."""
    return [m.proc for m in scan(stack_id, instance, TERMINAL_VAR) if m.instance is not None]
