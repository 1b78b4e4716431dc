"""The one module that talks to supervisord (XML-RPC over its unix socket) and renders the
supervisord program groups of instances.

Each instance is a group ``instance-<id>`` whose programs are rendered from the database into
``$AIKORE_DATA_DIR/supervisor/instances/instance-<id>.conf`` (included by docker/supervisord.conf).
supervisord gives us process-group kill, stop timeouts, merged stdout+stderr in write order and log
rotation; crash restarts with backoff are ours (autorestart=false + the event listener), because
supervisord respawns a process that crashed after RUNNING immediately, with no backoff.
"""

from __future__ import annotations

import contextlib
import http.client
import shlex
import socket
import sys
import xmlrpc.client
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings
from supervisor.xmlrpc import Faults, SupervisorTransport

from aikore_site import procs
from aikore_site.files import atomic_write, file_lock

if TYPE_CHECKING:
    from instances.models import Instance

# supervisord process states (supervisor.states.ProcessStates)
STOPPED, STARTING, RUNNING, BACKOFF, STOPPING, EXITED, FATAL, UNKNOWN = (
    "STOPPED", "STARTING", "RUNNING", "BACKOFF", "STOPPING", "EXITED", "FATAL", "UNKNOWN",
)
ALIVE_STATES = {STARTING, RUNNING, BACKOFF, STOPPING}

LAUNCHER = Path(__file__).resolve().parent / "launcher.py"
STOP_BACKSTOP_SECONDS = 5


class SupervisorError(RuntimeError):
    """supervisord is unreachable or refused a call; the message says which."""


class _UnixConnection(http.client.HTTPConnection):
    """HTTP over supervisord's unix socket, with a timeout: supervisor's own connection has none,
    so a supervisord that hangs (stopped, swapping) would hang every caller for good."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def _server(timeout: float) -> Any:
    path = str(settings.SUPERVISOR_SOCKET)
    transport = SupervisorTransport(None, None, f"unix://{path}")
    transport._get_connection = lambda: _UnixConnection(path, timeout)
    return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport, allow_none=True)


def rpc(timeout: float = 30.0) -> Any:
    """A fresh proxy per call: ServerProxy is not thread-safe and costs microseconds to build."""
    return _server(timeout).supervisor


def dropped_output(timeout: float = 5.0) -> dict[str, int]:
    """{log file: bytes of output lost so far} for logs supervisord cannot write right now (a full
    disk; instances/supervisord_plugin.py)."""
    try:
        return _server(timeout).aikore.droppedOutput()
    except OSError as exc:
        raise SupervisorError(f"supervisord is not reachable at {settings.SUPERVISOR_SOCKET}: {exc}") from exc


class ProcessHelper:
    """aikore_site.procs's helper when the apps run as a user of their own (aikore_site/privileges.py):
    supervisord, which runs as root, reads the environments of the apps' processes and signals them
    for AiKore's user (instances/supervisord_plugin.py). Installed by InstancesConfig.ready()."""

    def scan(self, stack_id: str, instance: int | None, var: str) -> list[tuple[int, float, int | None]]:
        try:
            rows = _server(10).aikore.scanProcesses(stack_id, -1 if instance is None else int(instance), var)
        except (OSError, xmlrpc.client.Fault) as exc:
            raise SupervisorError(f"supervisord could not list the instances' processes: {exc}") from exc
        return [(int(pid), float(created), None if pk < 0 else int(pk)) for pid, created, pk in rows]

    def signal(self, targets: list[tuple[int, float]], sig: int) -> None:
        try:
            _server(10).aikore.signalProcesses([[pid, created] for pid, created in targets], int(sig))
        except (OSError, xmlrpc.client.Fault) as exc:
            raise SupervisorError(f"supervisord could not signal the instances' processes: {exc}") from exc


def _user_line() -> list[str]:
    """supervisord starts the program as the apps' user, when they have one of their own."""
    return [f"user={_conf_value(settings.AIKORE_APP_USER)}"] if settings.AIKORE_APP_USER else []


def call(method: str, *args: Any, timeout: float = 30.0) -> Any:
    try:
        return getattr(rpc(timeout), method)(*args)
    except xmlrpc.client.Fault:
        raise
    except OSError as exc:
        raise SupervisorError(f"supervisord is not reachable at {settings.SUPERVISOR_SOCKET}: {exc}") from exc


def is_available(timeout: float = 5.0) -> bool:
    """supervisord answers and is not shutting down."""
    try:
        return rpc(timeout).getState()["statename"] == "RUNNING"
    except (OSError, xmlrpc.client.Fault):
        return False


@contextlib.contextmanager
def config_lock() -> Iterator[None]:
    """Serialise reloadConfig/add/remove across worker threads and processes: two concurrent
    reloads would each see the other's group as 'changed'."""
    with file_lock(Path(settings.RUN_DIR) / "supervisor-config.lock"):
        yield


def _conf_value(value: str) -> str:
    """supervisord expands %(name)s in values and reads one line each."""
    if "\n" in value or "\r" in value:
        raise ValueError("newline in a supervisord config value")
    return value.replace("%", "%%")


def group_name(instance_id: int) -> str:
    return f"instance-{instance_id}"


def instance_cgroup(instance_id: int) -> Path | None:
    """The instance's cgroup directory, when instances get one (settings.AIKORE_CGROUP_ROOT)."""
    root = settings.AIKORE_CGROUP_ROOT
    return procs.instance_cgroup(root, settings.AIKORE_STACK_ID, instance_id) if root else None


def webui_process(instance_id: int) -> str:
    return f"{group_name(instance_id)}:{group_name(instance_id)}-webui"


def conf_path(instance_id: int) -> Path:
    return Path(settings.SUPERVISOR_INSTANCE_CONF_DIR) / f"{group_name(instance_id)}.conf"


def desktop_process(instance_id: int, program: str) -> str:
    """A program of the instance's desktop (instances/desktop.py): xvnc, wm or kiosk."""
    return f"{group_name(instance_id)}:{group_name(instance_id)}-{program}"


def desktop_programs(instance: Instance) -> tuple[str, ...]:
    """The desktop programs its group runs: none without a desktop (or before its display is
    allocated); no kiosk browser for a desktop program, which shows its own windows."""
    kind = instance.desktop_kind()
    if not kind or instance.vnc_display is None or instance.vnc_port is None:
        return ()
    return ("xvnc", "wm", "kiosk") if kind == "browser" and instance.kiosk_port else ("xvnc", "wm")


DESKTOP_PROGRAMS = ("xvnc", "wm", "kiosk")


def _program_lines(name: str, command: list[str], directory: str, environment: dict[str, str], log_path: Path,
                   log_bytes: int, log_backups: int, restart: bool) -> list[str]:
    return [
        f"[program:{name}]",
        f"command={_conf_value(shlex.join(command))}",
        f"directory={_conf_value(directory)}",
        "autostart=false",
        # The WebUI's crashes are AiKore's to handle (backoff, status); a desktop program that dies
        # (the kiosk closed with Ctrl+W, Xvnc gone) is simply started again by supervisord.
        f"autorestart={'true' if restart else 'false'}",
        f"startsecs={1 if restart else 0}",
        f"startretries={10 if restart else 0}",
        "stopsignal=TERM",
        # AiKore escalates to SIGKILL itself at AIKORE_STOP_TIMEOUT (and logs it in the instance's
        # log, lifecycle.end_processes); supervisord's own SIGKILL is the backstop if that job died.
        f"stopwaitsecs={int(settings.AIKORE_STOP_TIMEOUT) + STOP_BACKSTOP_SECONDS}",
        "stopasgroup=true",
        "killasgroup=true",
        *_user_line(),
        # AiKore runs with umask 077; the app gets the user's own (files it writes to outputs/).
        f"umask={_conf_value(settings.AIKORE_INSTANCE_UMASK)}",
        "redirect_stderr=true",
        f"stdout_logfile={_conf_value(str(log_path))}",
        f"stdout_logfile_maxbytes={int(log_bytes)}",
        f"stdout_logfile_backups={int(log_backups)}",
        "stdout_capture_maxbytes=0",
        # The marker that finds every process this instance ever starts, and its cgroup where
        # there can be one (aikore_site/procs.py).
        "environment=" + ",".join(f'{key}="{_conf_value(value)}"' for key, value in environment.items()),
        "",
    ]


def render_group_config(instance: Instance) -> str:
    """Only ids, slugs, validated paths and numbers reach this file; user-typed values (name,
    launch args) travel in the instance's env.json (and desktop.json), read by the launchers."""
    from instances import desktop

    group = group_name(instance.pk)
    directory = str(instance.directory)
    environment = {procs.STACK_VAR: settings.AIKORE_STACK_ID,
                   procs.INSTANCE_VAR: procs.instance_marker(settings.AIKORE_STACK_ID, instance.pk)}
    cgroup = instance_cgroup(instance.pk)
    if cgroup is not None:
        environment[procs.CGROUP_VAR] = str(cgroup)
    # -I -S: the launcher needs only the standard library; skipping site and PYTHON* variables
    # halves the interpreter's start-up, which every instance start pays.
    webui = [sys.executable, "-I", "-S", str(LAUNCHER), directory]
    extra = desktop_programs(instance)
    programs = [f"{group}-{name}" for name in extra] + [f"{group}-webui"]
    lines = [
        f"; rendered by AiKore for instance {instance.pk} ({instance.slug}); do not edit",
        f"[group:{group}]",
        f"programs={','.join(programs)}",
        "",
    ]
    for name in extra:
        command = [sys.executable, "-I", "-S", str(desktop.LAUNCHER), directory, name]
        lines += _program_lines(f"{group}-{name}", command, directory, environment,
                                desktop.log_path(instance.pk, name), 1024 * 1024, 1, restart=True)
    lines += _program_lines(f"{group}-webui", webui, directory, environment, instance.log_path,
                            settings.AIKORE_LOG_MAX_BYTES, settings.AIKORE_LOG_BACKUPS, restart=False)
    return "\n".join(lines)


def ensure_group(instance: Instance) -> None:
    """Make supervisord's view of the instance's group match the rendered config."""
    _ensure_group(group_name(instance.pk), conf_path(instance.pk), render_group_config(instance))


def _ensure_group(group: str, path: Path, text: str) -> None:
    """Write a group's config if it changed and make supervisord load it (a changed group is
    replaced, which stops its programs)."""
    with config_lock():
        current = path.read_text() if path.exists() else None
        if current != text:
            atomic_write(path, text)
        added, changed, _removed = call("reloadConfig")[0]
        if group in changed:
            _remove_group_locked(group)
            call("addProcessGroup", group)
        elif group in added:
            call("addProcessGroup", group)


def _remove_group_locked(group: str) -> None:
    try:
        call("stopProcessGroup", group, True)
    except xmlrpc.client.Fault as exc:
        if exc.faultCode != Faults.BAD_NAME:
            raise
    try:
        call("removeProcessGroup", group)
    except xmlrpc.client.Fault as exc:
        if exc.faultCode not in (Faults.BAD_NAME,):
            raise


def remove_group(instance_id: int) -> None:
    """Stop and forget the group and delete its config file."""
    _remove_group(group_name(instance_id), conf_path(instance_id))


def _remove_group(group: str, path: Path) -> None:
    with config_lock():
        path.unlink(missing_ok=True)
        _remove_group_locked(group)
        call("reloadConfig")


def remove_groups(instance_ids: set[int] | list[int], terminal_ids: set[int] | list[int] = ()) -> None:
    """remove_group (and remove_terminal_group) for many at once (one reloadConfig): the stack's
    shutdown unloads them all, so the next supervisord starts with none loaded."""
    with config_lock():
        groups = [(group_name(pk), conf_path(pk)) for pk in instance_ids]
        groups += [(terminal_group_name(pk), terminal_conf_path(pk)) for pk in terminal_ids]
        for group, path in groups:
            path.unlink(missing_ok=True)
            with contextlib.suppress(xmlrpc.client.Fault):
                _remove_group_locked(group)
        for pattern in ("instance-*.conf", "terminal-*.conf"):
            for path in Path(settings.SUPERVISOR_INSTANCE_CONF_DIR).glob(pattern):
                path.unlink(missing_ok=True)  # groups never loaded (a start that failed midway)
        call("reloadConfig")


def start_webui(instance_id: int) -> dict:
    _start(webui_process(instance_id), "the instance")
    return process_info(instance_id) or {}


def _start(process: str, what: str) -> None:
    try:
        call("startProcess", process, True)
    except xmlrpc.client.Fault as exc:
        if exc.faultCode != Faults.ALREADY_STARTED:
            raise SupervisorError(f"supervisord could not start {what}: {exc.faultString}") from exc


def start_desktop_program(instance_id: int, program: str) -> None:
    """Start one desktop program (without waiting for startsecs: the caller watches the result)."""
    try:
        call("startProcess", desktop_process(instance_id, program), False)
    except xmlrpc.client.Fault as exc:
        if exc.faultCode != Faults.ALREADY_STARTED:
            raise SupervisorError(f"supervisord could not start the desktop's {program}: {exc.faultString}") from exc


def desktop_info(instance_id: int, program: str) -> dict | None:
    try:
        return call("getProcessInfo", desktop_process(instance_id, program))
    except xmlrpc.client.Fault as exc:
        if exc.faultCode == Faults.BAD_NAME:
            return None
        raise


def group_pids(instance_id: int) -> list[int]:
    """The pids of every live program of the instance's group (WebUI and desktop)."""
    group = group_name(instance_id)
    try:
        infos = call("getAllProcessInfo")
    except SupervisorError:
        return []
    return [info["pid"] for info in infos
            if info["group"] == group and info["pid"] and info["statename"] in ALIVE_STATES]


def stop_group(instance_id: int, wait: bool = True) -> None:
    """SIGTERM to the process group, SIGKILL after stopwaitsecs (supervisord does both).
    wait=True blocks until supervisord's main loop notices, which can take up to a second."""
    _stop("stopProcessGroup", group_name(instance_id), wait, "the instance")


def _stop(method: str, name: str, wait: bool, what: str) -> None:
    try:
        call(method, name, wait)
    except xmlrpc.client.Fault as exc:
        if exc.faultCode not in (Faults.BAD_NAME, Faults.NOT_RUNNING):
            raise SupervisorError(f"supervisord could not stop {what}: {exc.faultString}") from exc


def process_info(instance_id: int) -> dict | None:
    return _process_info(webui_process(instance_id))


def _process_info(process: str) -> dict | None:
    """supervisord's info on a process; None when it has no such process loaded."""
    try:
        return call("getProcessInfo", process)
    except xmlrpc.client.Fault as exc:
        if exc.faultCode == Faults.BAD_NAME:
            return None
        raise


def instance_infos() -> dict[int, dict]:
    """supervisord's view of every instance group it has loaded: {instance id: process info}."""
    infos = {}
    for info in call("getAllProcessInfo"):
        pk = instance_id_from_process(info["name"])
        if pk is not None and info["name"].endswith("-webui"):
            infos[pk] = info
    return infos


def shutdown(first: tuple[str, ...] = ()) -> None:
    """Ask supervisord to stop its programs and exit (it answers before it does). The programs in
    `first` are asked to stop before, all at once: supervisord's own shutdown stops one after
    another, waiting for each."""
    for name in first:
        with contextlib.suppress(xmlrpc.client.Fault):
            call("stopProcess", name, False)
    call("shutdown")


def instance_id_from_process(name: str) -> int | None:
    """'instance-12-webui' or 'instance-12:instance-12-webui' -> 12."""
    name = name.split(":")[-1]
    parts = name.split("-")
    if len(parts) >= 2 and parts[0] == "instance" and parts[1].isdigit():
        return int(parts[1])
    return None


# --- terminal groups (terminals/): one tmux server per instance ----------------------------------
# A group of its own, "terminal-<id>", beside the instance's "instance-<id>": the shell outlives
# restarts of the web process and of the WebUI, and starting or stopping one never touches the
# other. Its config lives beside the instance's (supervisor/instances/terminal-<id>.conf, picked up
# by the same [include]).


def terminal_group_name(instance_id: int) -> str:
    return f"terminal-{instance_id}"


def terminal_process(instance_id: int) -> str:
    group = terminal_group_name(instance_id)
    return f"{group}:{group}-tmux"


def terminal_conf_path(instance_id: int) -> Path:
    return Path(settings.SUPERVISOR_INSTANCE_CONF_DIR) / f"{terminal_group_name(instance_id)}.conf"


def render_terminal_config(instance_id: int, command: list[str], log_path: Path) -> str:
    """Only numbers and paths AiKore made reach this file (the command names the tmux server's
    launcher and its spec file; user-typed values travel in the spec)."""
    group = terminal_group_name(instance_id)
    marker = procs.instance_marker(settings.AIKORE_STACK_ID, instance_id)
    return "\n".join([
        f"; rendered by AiKore for the terminal of instance {instance_id}; do not edit",
        f"[group:{group}]",
        f"programs={group}-tmux",
        "",
        f"[program:{group}-tmux]",
        f"command={_conf_value(shlex.join(command))}",
        f"directory={_conf_value(str(settings.BASE_DIR))}",
        "autostart=false",
        "autorestart=false",
        "startsecs=0",
        "startretries=0",
        "stopsignal=TERM",
        "stopwaitsecs=5",
        "stopasgroup=true",
        "killasgroup=true",
        *_user_line(),
        # What the terminal makes is the user's, like the app's files: the instance's umask.
        f"umask={_conf_value(settings.AIKORE_INSTANCE_UMASK)}",
        "redirect_stderr=true",
        f"stdout_logfile={_conf_value(str(log_path))}",
        "stdout_logfile_maxbytes=1MB",
        "stdout_logfile_backups=1",
        # Finds whatever a shell left running (setsid -f, daemons) when the terminal goes.
        f'environment={procs.TERMINAL_VAR}="{_conf_value(marker)}"',
        "",
    ])


def ensure_terminal_group(instance_id: int, command: list[str], log_path: Path) -> None:
    """Make supervisord's view of the terminal group match its rendered config (a changed one is
    replaced, which stops its tmux server)."""
    _ensure_group(terminal_group_name(instance_id), terminal_conf_path(instance_id),
                  render_terminal_config(instance_id, command, log_path))


def terminal_info(instance_id: int) -> dict | None:
    return _process_info(terminal_process(instance_id))


def terminal_infos() -> dict[int, dict]:
    """supervisord's view of every terminal group it has loaded: {instance id: process info}."""
    infos = {}
    for info in call("getAllProcessInfo"):
        group, _, pk = info["group"].partition("-")
        if group == "terminal" and pk.isdigit() and info["name"].endswith("-tmux"):
            infos[int(pk)] = info
    return infos


def start_terminal(instance_id: int) -> dict:
    _start(terminal_process(instance_id), "the terminal")
    return terminal_info(instance_id) or {}


def stop_terminal(instance_id: int, wait: bool = True) -> None:
    _stop("stopProcess", terminal_process(instance_id), wait, "the terminal")


def remove_terminal_group(instance_id: int) -> None:
    """Stop the terminal's tmux server, forget its group and delete its config file."""
    _remove_group(terminal_group_name(instance_id), terminal_conf_path(instance_id))
