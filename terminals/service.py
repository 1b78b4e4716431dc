"""The terminals of instances: one tmux server per instance, run by supervisord, holding one
session ("main") whose shell starts in the instance's directory with its environment.

The server runs as supervisord program terminal-<id>-tmux (instances/supervisor.py renders its
group), so the shell and whatever it runs outlive browser connections and restarts of the web
process. Browsers attach through the websocket consumer (terminals/consumers.py), which runs
`tmux attach` in a pty per connection; everything that changes the server or its session is here.

Files, all under $AIKORE_DATA_DIR/terminals/ (mode 0700; 2770, shared with AiKore's group, when
the apps run as a user of their own: the server is theirs, and so is its socket, which it opens to
AiKore's user, the only client): instance-<id>.sock (the server's socket), instance-<id>.json (the
spec the server was started from: its variables, directory, Python env).

Every tmux command we run passes -N: tmux would otherwise start a server of its own, unsupervised
and with the web process's environment, when it finds none.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import xmlrpc.client
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
from django.conf import settings

from aikore_site import procs
from aikore_site.files import atomic_write, ensure_dir, file_lock
from instances import supervisor
from instances.models import Instance
from terminals.shellenv import python_env_at

log = logging.getLogger(__name__)

SESSION = "main"
HERE = Path(__file__).resolve().parent
TMUX_CONF = HERE / "tmux.conf"
BASHRC = HERE / "bashrc"
READY_TIMEOUT = 10.0
# What the attaching tmux client (a child of the web process) runs with: nothing of AiKore's.
CLIENT_TERM = "xterm-256color"


class TerminalError(RuntimeError):
    """The terminal could not be started or reached; the message says why (shown to the user)."""


def tmux_binary() -> str:
    found = shutil.which("tmux") or next((p for p in ("/usr/bin/tmux", "/usr/local/bin/tmux") if os.path.exists(p)), None)
    if not found:
        raise TerminalError("tmux is not installed (Debian package tmux; scripts/system-deps.sh installs it).")
    return found


def tmux_dir() -> Path:
    return ensure_dir(Path(settings.TERMINALS_DIR), settings.SHARED_DIR_MODE or 0o700, settings.AIKORE_FILE_OWNER)


def socket_path(instance_id: int, check: bool = True) -> Path:
    path = tmux_dir() / f"instance-{instance_id}.sock"
    if check and len(os.fsencode(path)) > 107:  # sun_path
        raise TerminalError(f"The terminal socket path {path} is too long; use a shorter AIKORE_DATA_DIR.")
    return path


def spec_path(instance_id: int) -> Path:
    return tmux_dir() / f"instance-{instance_id}.json"


def server_log_path(instance_id: int) -> Path:
    return Path(settings.LOGS_DIR) / f"terminal-{instance_id}.log"


@contextlib.contextmanager
def terminal_lock(instance_id: int) -> Iterator[None]:
    """Serialises changes of one instance's tmux server (start, new shell, removal) between the
    web process's threads and any other process."""
    with file_lock(Path(settings.RUN_DIR) / f"terminal-{instance_id}.lock"):
        yield


def spec_for(instance: Instance) -> dict:
    """Everything the tmux server of this instance starts from. Compared with the spec of the
    running server to tell a user that a shell predates a change of the instance's settings."""
    return {
        "env": instance.environment(),
        "directory": str(instance.directory),
        "python_env": python_env_at(str(instance.env_dir)),
        "socket": str(socket_path(instance.pk)),
        "config": str(TMUX_CONF),
        "tmux": tmux_binary(),
        # The server runs as the apps' user when they have one: it lets AiKore's user in.
        "client_user": settings.AIKORE_USER if settings.AIKORE_APP_USER else "",
    }


def _launcher_command(instance_id: int) -> list[str]:
    return [sys.executable, "-m", "terminals.launcher", str(spec_path(instance_id))]


def _tmux(instance_id: int, *args: str, timeout: float = 10.0) -> subprocess.CompletedProcess:
    return subprocess.run(
        [tmux_binary(), "-N", "-S", str(socket_path(instance_id)), *args],
        capture_output=True, timeout=timeout, env=client_environment(), stdin=subprocess.DEVNULL,
    )


def client_environment() -> dict[str, str]:
    """The environment of tmux clients we run (commands and browser attachments): a terminal
    type and UTF-8, nothing of the web process's (its secrets stay out of the shell: clients pass
    no variables to sessions, see -E in new-session/attach)."""
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/"),
            "TERM": CLIENT_TERM, "LANG": "C.UTF-8"}


def _server_running(instance_id: int) -> bool:
    info = supervisor.terminal_info(instance_id)
    if not info or info["statename"] not in supervisor.ALIVE_STATES:
        return False
    return _tmux(instance_id, "list-sessions").returncode == 0


def _wait_server(instance_id: int) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        if socket_path(instance_id).exists() and _tmux(instance_id, "list-sessions").returncode == 0:
            return
        info = supervisor.terminal_info(instance_id)
        if not info or info["statename"] not in supervisor.ALIVE_STATES:
            log_path = server_log_path(instance_id)
            tail = log_path.read_text(errors="replace")[-500:] if log_path.exists() else ""
            raise TerminalError(f"The terminal's tmux server exited at start. {tail}".strip())
        if time.monotonic() > deadline:
            raise TerminalError(f"The terminal's tmux server did not answer within {READY_TIMEOUT:g} s.")
        time.sleep(0.01)


def _start_server(instance: Instance) -> None:
    # 0640: the launcher reads it as the apps' user when they have one (the folder's group is AiKore's).
    atomic_write(spec_path(instance.pk), json.dumps(spec_for(instance), indent=1), 0o640)
    socket_path(instance.pk).unlink(missing_ok=True)  # a stale one from a killed server
    supervisor.ensure_terminal_group(instance.pk, _launcher_command(instance.pk), server_log_path(instance.pk))
    supervisor.start_terminal(instance.pk)
    _wait_server(instance.pk)


def _stop_server(instance_id: int, sweep_all: bool = False) -> None:
    """Stop the tmux server (its shells get SIGHUP). sweep_all also ends what escaped that (nohup,
    setsid, daemons: found in the tree and by the terminal's marker in their environment): for a
    deleted instance nothing of its terminal may survive."""
    info = supervisor.terminal_info(instance_id)
    pid = info.get("pid") if info else None
    tree: list[psutil.Process] = []
    with contextlib.suppress(psutil.Error):
        if pid:
            root = psutil.Process(pid)
            tree = [root, *root.children(recursive=True)]
    supervisor.stop_terminal(instance_id, wait=False)  # supervisord's own wait polls once a second
    _wait_gone(tree[:1], timeout=10)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        info = supervisor.terminal_info(instance_id)
        if not info or info["statename"] not in supervisor.ALIVE_STATES:
            break
        time.sleep(0.01)
    if sweep_all:
        _end_processes(tree + marked_processes(instance_id))


def marked_processes(instance_id: int) -> list[psutil.Process]:
    """Every live process of the instance's terminal, wherever it went (aikore_site/procs.py)."""
    return procs.terminal_processes(settings.AIKORE_STACK_ID, instance_id)


def _end_processes(processes: list[psutil.Process], grace: float = 0.5) -> None:
    """End what survived the server (SIGHUP ends interactive shells, SIGTERM the rest, SIGKILL
    whatever ignores both). psutil checks create times, so a recycled PID is never signalled."""
    alive = [p for p in processes if _alive(p)]
    for sig in (signal.SIGHUP, signal.SIGTERM):
        procs.signal_all(alive, sig)  # (the apps' user's through supervisord)
    alive = _wait_gone(alive, timeout=grace)
    procs.signal_all(alive, signal.SIGKILL)
    _wait_gone(alive, timeout=grace)


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _wait_gone(processes: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait until the processes have ended; return those still alive at the timeout. A zombie
    counts as ended: its parent (supervisord, the tmux server) may reap it only a second later."""
    deadline = time.monotonic() + timeout
    alive = [p for p in processes if _alive(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.01)
        alive = [p for p in alive if _alive(p)]
    return alive


def _create_session(instance: Instance, cols: int, rows: int) -> None:
    spec = json.loads(spec_path(instance.pk).read_text())
    directory = spec["directory"] if os.path.isdir(spec["directory"]) else "/"
    shell = shutil.which("bash") or "/bin/bash"
    command = [shell, "--rcfile", str(BASHRC), "-i"] if os.path.exists(shell) else ["/bin/sh", "-i"]
    result = _tmux(instance.pk, "new-session", "-d", "-E", "-s", SESSION, "-x", str(cols), "-y", str(rows),
                   "-c", directory, "--", *command)
    if result.returncode != 0 and not _has_session(instance.pk):
        raise TerminalError(f"tmux could not start a shell: {result.stderr.decode(errors='replace').strip()}")


def _has_session(instance_id: int) -> bool:
    return _tmux(instance_id, "has-session", "-t", f"={SESSION}").returncode == 0


@dataclass
class ShellState:
    created: bool  # a new shell was started for this connection
    stale: bool  # the shell was started before the instance's settings last changed


@contextlib.contextmanager
def _supervisor_errors() -> Iterator[None]:
    try:
        yield
    except supervisor.SupervisorError as exc:
        raise TerminalError(str(exc)) from exc
    except xmlrpc.client.Fault as exc:
        raise TerminalError(f"supervisord refused: {exc.faultString}") from exc


def ensure_shell(instance: Instance, cols: int = 80, rows: int = 24) -> ShellState:
    """The instance's tmux server running and its shell alive, starting either when missing."""
    with terminal_lock(instance.pk), _supervisor_errors():
        running = _server_running(instance.pk)
        if not running:
            _stop_server(instance.pk)  # one that supervisord still runs but that doesn't answer
            _start_server(instance)
        if _has_session(instance.pk):
            return ShellState(created=False, stale=_started_spec(instance.pk) != spec_for(instance))
        if running and _started_spec(instance.pk) != spec_for(instance):
            # The shell is gone anyway: restart the server so the new shell gets today's settings.
            _stop_server(instance.pk)
            _start_server(instance)
        _create_session(instance, cols, rows)
        return ShellState(created=True, stale=False)


def new_shell(instance: Instance, cols: int = 80, rows: int = 24) -> None:
    """Replace the instance's shell (dead or alive) with a fresh one, from its current settings.
    The server restarts: attached clients see it go and reattach to the new shell."""
    with terminal_lock(instance.pk), _supervisor_errors():
        _stop_server(instance.pk)
        _start_server(instance)
        _create_session(instance, cols, rows)


def session_alive(instance_id: int) -> bool:
    """Is there a shell to attach to? Waits for a concurrent new_shell() to finish first."""
    with terminal_lock(instance_id):
        return socket_path(instance_id).exists() and _has_session(instance_id)


def _started_spec(instance_id: int) -> dict | None:
    try:
        return json.loads(spec_path(instance_id).read_text())
    except (OSError, ValueError):
        return None


def history(instance_id: int) -> bytes:
    """The shell's scrollback above the visible screen, with colours, lines joined as written, so
    a browser that (re)attaches gets the lines it would have had ("\\r\\n" line ends)."""
    size = _tmux(instance_id, "display-message", "-p", "-t", f"={SESSION}", "#{history_size}")
    if size.returncode != 0 or not size.stdout.strip().isdigit() or int(size.stdout) == 0:
        return b""
    result = _tmux(instance_id, "capture-pane", "-p", "-e", "-J", "-S", "-", "-E", "-1", "-t", f"={SESSION}")
    if result.returncode != 0:
        return b""
    return result.stdout.rstrip(b"\n").replace(b"\n", b"\r\n") + b"\x1b[0m\r\n"


def attach_command(instance_id: int) -> list[str]:
    """The browser's tmux client. `setsid -c` makes the pty its controlling terminal, so a resize
    (TIOCSWINSZ) reaches it as SIGWINCH and the pty's close as SIGHUP."""
    setsid = shutil.which("setsid") or "/usr/bin/setsid"
    return [setsid, "-c", tmux_binary(), "-N", "-u", "-S", str(socket_path(instance_id)),
            "attach-session", "-E", "-t", f"={SESSION}"]


def remove(instance_id: int) -> None:
    """Everything of an instance's terminal goes: its shell and what it started, the supervisord
    group, the socket and the spec. Called when the instance is deleted; never raises."""
    try:
        with terminal_lock(instance_id):
            if supervisor.terminal_conf_path(instance_id).exists() or supervisor.terminal_info(instance_id):
                _stop_server(instance_id, sweep_all=True)
                supervisor.remove_terminal_group(instance_id)
            _end_processes(marked_processes(instance_id))  # even with no server left (a restart)
    except (supervisor.SupervisorError, xmlrpc.client.Fault, OSError, TerminalError) as exc:
        log.warning("terminal of instance %s: cleanup incomplete: %s", instance_id, exc)
        with contextlib.suppress(OSError):
            supervisor.terminal_conf_path(instance_id).unlink(missing_ok=True)
    except Exception:  # a delete must never fail because of its terminal
        log.exception("terminal of instance %s: cleanup failed", instance_id)
    for path in (socket_path(instance_id, check=False), spec_path(instance_id), server_log_path(instance_id)):
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)
