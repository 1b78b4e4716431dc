"""The work behind Instance.start()/stop()/restart(), run by Huey jobs (instances/tasks.py) and by
the supervisord event listener. Kept apart from the model so the model stays a description of
state and this module the one place that changes processes.

Concurrency rules:
- a per-instance file lock serialises the short "change processes" sections of start and stop;
- the readiness wait runs outside the lock and gives up as soon as the instance's generation moves
  on (a stop or a new start), so a stop never waits for a slow app to become ready;
- status writes that depend on a process are conditional on its pid, so a late writer cannot
  resurrect a process the event listener already saw die.

Install phase: a blueprint reports its install steps through aikore_step (blueprints/functions.sh),
which writes the instance's install.json atomically. The readiness wait below polls that file with
the port; while the blueprint says it is installing, the instance is `installing` (step and
progress published like any status change) and no readiness timeout runs; the timeout starts when
the blueprint says it launches. An exit during the install fails the instance with the step's name.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import os
import signal
import socket
import threading
import time
import xmlrpc.client
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
from django.conf import settings
from django.db import connections
from django.db.models import Q
from django.utils import timezone

from aikore_site import procs
from aikore_site.files import atomic_write, file_lock, shared_dir
from instances import desktop, sharedmodels, supervisor
from instances.models import ACTIVE_STATUSES, Instance, InstanceStatus
from instances.ports import NoFreePort, allocate_port, port_is_bindable
from instances.signals import instance_event

log = logging.getLogger(__name__)

READY_POLL_SECONDS = 0.02
WINDOW_POLL_SECONDS = 0.2
# Progress-only changes of the install step are published at most this often.
PROGRESS_PUBLISH_SECONDS = 0.25
STOP_POLL_SECONDS = 0.03
# After the SIGKILL: how long to wait for a process stuck in the kernel before reporting it.
GIVE_UP_SECONDS = 10.0
# AiKore's own programs (daphne, worker, nginx) left by a killed supervisord: SIGTERM, then SIGKILL.
SERVICE_STOP_SECONDS = 3.0
# At the stack's shutdown: how long terminal processes may outlive their SIGTERM/SIGHUP (they got
# them when the shutdown began, so this runs only past the instances' own stop).
TERMINAL_STOP_SECONDS = 1.0
# How long a desktop's X server may take to accept connections before the start fails.
X_START_SECONDS = 15.0
X_POLL_SECONDS = 0.1


@contextlib.contextmanager
def instance_lock(pk: int) -> Iterator[None]:
    with file_lock(Path(settings.RUN_DIR) / f"instance-{pk}.lock"):
        yield


def _get(pk: int) -> Instance | None:
    return Instance.objects.filter(pk=pk).first()


def _alive(pid: int | None, create_time: float | None = None) -> bool:
    if not pid:
        return False
    try:
        proc = psutil.Process(pid)
        if create_time is not None and abs(proc.create_time() - create_time) > 0.01:
            return False
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _create_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def write_env_file(instance: Instance, action: str = "start", install_only: bool = False) -> None:
    env = instance.environment(action=action, install_only=install_only)
    # "run": what this run is, for resuming it if AiKore stops or crashes meanwhile (resumed_run).
    run = {"action": action, "install_only": install_only, "generation": instance.generation}
    # Read by the launcher, which runs as the apps' user when they have their own (the folder's
    # group is AiKore's; nothing secret is in it).
    atomic_write(instance.directory / "env.json", json.dumps({"env": env, "run": run}, indent=1), 0o640)


def send_event(instance: Instance, kind: str, **details: object) -> None:
    """instances.signals.instance_event; a receiver's error never reaches the lifecycle."""
    try:
        instance_event.send(sender=Instance, instance=instance, kind=kind, **details)
    except Exception:
        log.exception("instance_event %s receiver failed", kind)


# --- start ------------------------------------------------------------------------------------


def launch(pk: int, generation: int | None = None, action: str = "start", install_only: bool = False) -> None:
    """Start the instance if it should run and is not running; then wait for readiness.
    action="update" has the blueprint fetch its code first; install_only runs the install and
    exits instead of launching the app (update/rebuild of a stopped instance)."""
    with instance_lock(pk):
        instance = _get(pk)
        if instance is None or not instance.want_running or shutting_down():
            return
        if generation is not None and instance.generation != generation:
            return  # a user action superseded this (delayed) start
        info = supervisor.process_info(pk)
        if info and info["statename"] in supervisor.ALIVE_STATES - {supervisor.STOPPING}:
            # Already running: a harmless no-op, never a second process.
            if instance.pid != info["pid"]:
                instance.observe(pid=info["pid"], pid_create_time=_create_time(info["pid"]))
            if instance.status == InstanceStatus.RUNNING:
                return
            pid = info["pid"]
        else:
            _end_leftovers(instance)  # what a crashed run left behind (it may hold the port)
            try:
                pid = _spawn(instance, action, install_only)
            except (supervisor.SupervisorError, xmlrpc.client.Fault):
                raise  # supervisord away: the job fails as such, the reconcile sorts it out
            except Exception as exc:
                # Anything else (an unreadable blueprint or folder, a full disk...) must not leave
                # the instance "starting" forever: it failed, and says why.
                log.exception("starting instance %s failed", pk)
                _fail(instance, f"Could not start: {exc.__class__.__name__}: {exc}")
                return
            if pid is None:
                return
        generation = instance.generation
    _watch_ready(pk, pid, generation)


def _spawn(instance: Instance, action: str = "start", install_only: bool = False) -> int | None:
    """Prepare files and start the supervisord group. Returns the pid, or None on failure."""
    # This run's install reports start afresh: an old install.json must not speak for it.
    instance.install_status_path.unlink(missing_ok=True)
    instance.set_status(InstanceStatus.STARTING, error_message="", exit_code=None, install_step="",
                        install_progress=None)
    try:
        allocate_port(instance)
    except NoFreePort as exc:
        _fail(instance, str(exc))
        return None
    if not port_is_bindable(instance.port):
        _fail(instance, f"Port {instance.port} is in use by another program; pick another port.")
        return None
    if settings.AIKORE_PUBLIC_PORT_RANGE:
        try:
            allocate_port(instance, field="public_port", port_range=settings.AIKORE_PUBLIC_PORT_RANGE)
        except NoFreePort as exc:
            # The sub-path still works; only the per-port fallback is missing.
            instance.append_log(f"no public port: {exc}")
    bp = instance.blueprint()
    if not instance.script_path.exists():
        if bp is None:
            _fail(instance, f"launch.sh is missing and blueprint {instance.base_blueprint!r} is gone.")
            return None
        instance.prepare_directory(bp)
    with_desktop = bool(instance.desktop_kind()) and not install_only
    if with_desktop and not _allocate_desktop(instance):
        return None
    if not instance.desktop_kind() and (instance.vnc_display is not None or instance.kiosk_port is not None):
        # Persistent mode was turned off: its display and kiosk port go back.
        Instance.objects.filter(pk=instance.pk).update(vnc_display=None, vnc_port=None, kiosk_port=None)
        instance.refresh_from_db(fields=["vnc_display", "vnc_port", "kiosk_port"])
    _update_proxy()  # nginx learns the route while the app boots
    shared_dir(instance.output_dir)
    sharedmodels.ensure_layout()
    write_env_file(instance, action, install_only)
    try:
        if with_desktop:
            desktop.write_spec(instance)
        supervisor.ensure_group(instance)
        if with_desktop and not _start_desktop(instance):
            return None
        info = supervisor.start_webui(instance.pk)
    except (supervisor.SupervisorError, OSError) as exc:
        _fail(instance, f"Could not start: {exc}")
        return None
    pid = info.get("pid") or None
    if not pid:
        # Exited before we could even look (e.g. bash not found): handled here, as the listener's
        # event names a pid this instance never recorded.
        if info.get("statename") in (supervisor.EXITED, supervisor.FATAL):
            instance.started_at = timezone.now()  # it ran for no time: a crash restart counts
            record_exit(instance, info.get("exitstatus"), info["statename"] == supervisor.FATAL, schedule_restart)
        return None
    Instance.objects.filter(pk=instance.pk).update(
        pid=pid, pid_create_time=_create_time(pid), started_at=timezone.now()
    )
    instance.refresh_from_db()
    instance.publish()
    return pid


def _allocate_desktop(instance: Instance) -> bool:
    """A display and VNC port for the instance's desktop (and, for a web app, the loopback port
    nginx serves it to the kiosk browser on). False: failed, and the instance says why."""
    missing = desktop.missing_programs(instance.desktop_kind(), _ready_kind(instance))
    if missing:
        _fail(instance, f"No desktop: {missing}")
        return False
    try:
        desktop.allocate_display(instance)
        allocate_port(instance, field="vnc_port")
        if instance.desktop_kind() == "browser":
            if (instance.kiosk_port and not port_is_bindable(instance.kiosk_port)
                    and not desktop.nginx_listens(instance.kiosk_port)):
                # Someone else holds it now: a new one (the kiosk's stored data stays with the old
                # origin). Our own nginx holding it (a crash restart or a quick restart keeps the
                # instance's route) is no reason: the port is the kiosk's origin, kept on purpose.
                Instance.objects.filter(pk=instance.pk).update(kiosk_port=None)
                instance.refresh_from_db(fields=["kiosk_port"])
            allocate_port(instance, field="kiosk_port")
    except (desktop.NoFreeDisplay, NoFreePort) as exc:
        _fail(instance, f"No desktop: {exc}")
        return False
    if not port_is_bindable(instance.vnc_port):
        _fail(instance, f"Port {instance.vnc_port} (the desktop's VNC port) is in use by another program.")
        return False
    return True


def _start_desktop(instance: Instance) -> bool:
    """Start Xvnc and wait until it accepts connections, then the window manager. The kiosk
    browser waits for the app to be ready (_wait_ready). False: failed, and the instance says why."""
    display = instance.vnc_display
    supervisor.start_desktop_program(instance.pk, "xvnc")
    deadline = time.monotonic() + X_START_SECONDS
    while not (desktop.x_ready(display) and desktop.port_listening(instance.vnc_port)):
        info = supervisor.desktop_info(instance.pk, "xvnc") or {}
        if info.get("statename") in (supervisor.EXITED, supervisor.FATAL, supervisor.BACKOFF) \
                or time.monotonic() > deadline:
            tail = _file_tail(desktop.log_path(instance.pk, "xvnc"))
            with contextlib.suppress(supervisor.SupervisorError, xmlrpc.client.Fault):
                supervisor.stop_group(instance.pk, wait=False)
            _end_leftovers(instance, force=True)
            desktop.release_display(instance)
            _fail(instance, f"The desktop's X server (Xvnc on :{display}) did not start. {tail}".strip())
            return False
        time.sleep(X_POLL_SECONDS)  # each turn asks supervisord: not at READY_POLL_SECONDS' pace
    supervisor.start_desktop_program(instance.pk, "wm")
    instance.append_log(f"desktop: display :{display}, VNC on 127.0.0.1:{instance.vnc_port}"
                        + (", kiosk browser once the app is ready" if instance.desktop_kind() == "browser" else ""))
    return True


def _start_kiosk(instance: Instance, pid: int, generation: int) -> None:
    """The app is ready: open it in the desktop's kiosk browser (never before). Under the
    instance's lock, and only while this run still stands: a stop in between must not be followed
    by a browser started after the group was stopped."""
    with instance_lock(instance.pk):
        if not Instance.objects.filter(pk=instance.pk, pid=pid, generation=generation, want_running=True,
                                       status=InstanceStatus.RUNNING).exists():
            return
        if "kiosk" not in supervisor.desktop_programs(instance):
            return
        try:
            supervisor.start_desktop_program(instance.pk, "kiosk")
        except (supervisor.SupervisorError, xmlrpc.client.Fault) as exc:
            instance.append_log(f"desktop: the kiosk browser did not start: {exc}")


def desktop_program_failed(pk: int, program: str) -> None:
    """supervisord gave up on a desktop program (FATAL: it kept exiting at once). The app may run
    on; the instance's log says what is wrong with its desktop instead of a silent black screen."""
    instance = Instance.objects.filter(pk=pk).first()
    if instance is None or not instance.want_running:
        return
    what = {"xvnc": "X server (Xvnc)", "wm": "window manager (openbox)", "kiosk": "kiosk browser"}.get(program, program)
    tail = _file_tail(desktop.log_path(pk, program))
    instance.append_log(f"desktop: its {what} kept failing and was given up; restart the instance to try "
                        f"again. Its last output: {tail or '(none)'}")


def _ready_kind(instance: Instance) -> str:
    bp = instance.blueprint()
    return bp.ready if bp else "tcp"


def _file_tail(path: Path, max_bytes: int = 600) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - max_bytes))
            return fh.read().decode("utf-8", errors="replace").strip()
    except OSError:
        return ""


def _update_proxy() -> None:
    """Enqueue the nginx regeneration job (it renders from the database, so it sees this change;
    one that finds nothing changed costs a render), and bring websockify's desktop tokens up to
    date (a small file, written here at once)."""
    from proxy.tasks import regenerate_nginx

    try:
        desktop.write_tokens()
    except OSError as exc:
        log.warning("could not write the desktop tokens: %s", exc)
    regenerate_nginx()


def proxy_settings_changed() -> None:
    """A proxy-only setting (allowed origins) changed: nginx picks it up, the app keeps running."""
    _update_proxy()


def _fail(instance: Instance, reason: str, exit_code: int | None = None) -> None:
    log.warning("instance %s failed: %s", instance.slug, reason)
    instance.append_log(f"failed: {reason}")
    Instance.objects.filter(pk=instance.pk).update(want_running=False)
    instance.set_status(InstanceStatus.FAILED, error_message=reason, exit_code=exit_code, pid=None)
    send_event(instance, "failed", exit_code=exit_code, reason=reason, log_tail=instance.log_tail(2000))
    _update_proxy()


def check_ready(kind: str, path: str, port: int, display: int | None = None) -> bool:
    if kind == "none":
        return True
    if kind == "window":
        # A desktop program is ready once the window manager manages a window of it.
        return display is not None and desktop.has_client_window(display)
    try:
        if kind == "http":
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            try:
                conn.request("GET", path or "/", headers={"User-Agent": "AiKore-readiness"})
                return conn.getresponse().status < 500
            finally:
                conn.close()
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except (OSError, http.client.HTTPException):
        return False


class _InstallWatch:
    """Follows install.json for one readiness wait: turns the blueprint's reports into the
    instance's `installing` status, step and progress, and says whether it is installing now."""

    def __init__(self, instance: Instance) -> None:
        self.instance = instance
        self.path = instance.install_status_path
        self.stamp: tuple[int, int] | None = None
        self.state: dict | None = None
        self.published: tuple[str, float | None] | None = None
        self.published_at = 0.0

    @property
    def installing(self) -> bool:
        return bool(self.state and self.state["phase"] == "installing")

    def poll(self, pk: int, pid: int, generation: int) -> bool:
        """Read the file if it changed (one stat otherwise); returns True when the blueprint
        has just said the install is over (the readiness timeout starts now)."""
        try:
            st = os.stat(self.path)
            stamp = (st.st_mtime_ns, st.st_ino)
        except FileNotFoundError:
            stamp = None
        if stamp == self.stamp and not (self.installing and self._due()):
            return False
        self.stamp = stamp
        state = self.instance.install_state() if stamp else None
        if state is None:
            return False
        was_installing = self.installing
        self.state = state
        live = Instance.objects.filter(pk=pk, pid=pid, generation=generation)
        if state["phase"] == "installing":
            key = (state["step"], state["progress"])
            if key == self.published or (self.published and key[0] == self.published[0] and not self._due()):
                return False
            updated = live.filter(status__in=[InstanceStatus.STARTING, InstanceStatus.INSTALLING]).update(
                status=InstanceStatus.INSTALLING, install_step=state["step"], install_progress=state["progress"],
                status_changed_at=timezone.now(), updated_at=timezone.now())
            self.published, self.published_at = key, time.monotonic()
            if updated:
                self.instance.refresh_from_db()
                self.instance.publish()
            return False
        # launching (or done, for an install-only run): the install is over.
        self.instance.refresh_from_db()
        if was_installing or self.instance.status == InstanceStatus.INSTALLING:
            updated = live.filter(status=InstanceStatus.INSTALLING).update(
                status=InstanceStatus.STARTING, install_step="", install_progress=None,
                status_changed_at=timezone.now(), updated_at=timezone.now())
            if updated:
                self.instance.refresh_from_db()
                self.instance.append_log("install phase over: waiting for the app to answer")
                self.instance.publish()
                send_event(self.instance, "install_finished")
        return True

    def _due(self) -> bool:
        return time.monotonic() - self.published_at >= PROGRESS_PUBLISH_SECONDS


def _wait_ready(pk: int, pid: int, generation: int) -> None:
    instance = _get(pk)
    if instance is None:
        return
    bp = instance.metadata()
    kind, path = (bp.ready, bp.ready_path) if bp else ("tcp", "")
    if bp and kind == "http" and bp.proxy_mode == "keep":
        # An app that mounts itself under the prefix answers there (and redirects the rest).
        path = instance.url_path.rstrip("/") + path
    timeout = (bp.ready_timeout if bp and bp.ready_timeout else None) or settings.AIKORE_READY_TIMEOUT
    # A blueprint that installs and has no readiness check is ready once it says it launches.
    needs_launch_report = kind == "none" and bool(bp and bp.installs) and instance.parent_id is None
    watch = _InstallWatch(instance)
    deadline: float | None = time.monotonic() + timeout
    create_time = _create_time(pid)
    last_db_check = 0.0
    launched = False
    while True:
        if watch.poll(pk, pid, generation):
            launched = True
            deadline = time.monotonic() + timeout  # the readiness timeout starts after the install
        installing = watch.installing
        if installing:
            deadline = None
        elif deadline is None:
            deadline = time.monotonic() + timeout
        if (not installing and (launched or not needs_launch_report)
                and check_ready(kind, path, instance.port, instance.vnc_display)
                and not (watch.state and watch.state["phase"] == "done")):
            updated = Instance.objects.filter(
                pk=pk, pid=pid, generation=generation, status__in=[InstanceStatus.STARTING, InstanceStatus.INSTALLING]
            ).update(status=InstanceStatus.RUNNING, status_changed_at=timezone.now(), updated_at=timezone.now(),
                     install_step="", install_progress=None)
            if updated:
                instance.refresh_from_db()
                instance.publish()
                _start_kiosk(instance, pid, generation)
            return
        if not _alive(pid, create_time):
            return  # it died: the event listener records why and decides about a restart
        now = time.monotonic()
        if now - last_db_check > 0.5:
            last_db_check = now
            if not Instance.objects.filter(pk=pk, generation=generation, want_running=True).exists():
                return  # stopped or restarted meanwhile
        if deadline is not None and now > deadline:
            with instance_lock(pk):
                instance.refresh_from_db()
                if instance.generation != generation:
                    return
                _stop_processes(instance)
                send_event(instance, "stuck_starting", timeout=timeout, log_tail=instance.log_tail(2000))
                _fail(instance, f"Not ready after {timeout} s ({kind} check on port {instance.port}).")
            return
        # A window check asks the X server (a subprocess): a slower pace for it.
        time.sleep(WINDOW_POLL_SECONDS if kind == "window" else READY_POLL_SECONDS)


def _watch_ready(pk: int, pid: int, generation: int) -> None:
    """_wait_ready in a thread of its own, not the job's: an install can take hours, and each one
    holding a job-queue worker would leave none for nginx regenerations, stops, other starts and
    notifications. (Jobs of the same instance ran beside a wait before too, in other workers: its
    writes are conditional on the pid and generation it waits for.) A worker restart ends it; the
    reconcile at its start resumes it (await_ready)."""

    def watch() -> None:
        try:
            _wait_ready(pk, pid, generation)
        except Exception:
            log.exception("readiness wait of instance %s failed", pk)
        finally:
            connections.close_all()  # this thread's own

    threading.Thread(target=watch, name=f"aikore-ready-{pk}", daemon=True).start()


def await_ready(pk: int) -> None:
    """Resume a readiness wait (and the watch of the install) after the worker restarted."""
    instance = _get(pk)
    if instance and instance.pid and instance.status in (InstanceStatus.STARTING, InstanceStatus.INSTALLING):
        _watch_ready(pk, instance.pid, instance.generation)


# --- the processes of an instance -------------------------------------------------------------


def _process_tree(pid: int | None) -> list[psutil.Process]:
    if not pid:
        return []
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def _cgroup_members(pk: int) -> list[psutil.Process]:
    path = supervisor.instance_cgroup(pk)
    return procs.cgroup_members(path) if path is not None and path.exists() else []


def _remove_instance_cgroup(pk: int) -> None:
    """The instance's cgroup directory, once it has no process (a start creates it again)."""
    path = supervisor.instance_cgroup(pk)
    if path is not None:
        procs.remove_cgroup(path)


def _remove_stack_cgroup() -> None:
    if settings.AIKORE_CGROUP_ROOT is not None:
        procs.remove_cgroup(Path(settings.AIKORE_CGROUP_ROOT) / f"aikore-{settings.AIKORE_STACK_ID}")


def _cgroup_instances() -> list[int]:
    """Instances that have a cgroup directory (processes or not) in this stack's cgroup."""
    root = settings.AIKORE_CGROUP_ROOT
    if root is None:
        return []
    stack_dir = Path(root) / f"aikore-{settings.AIKORE_STACK_ID}"
    names = [p.name for p in stack_dir.glob("instance-*")] if stack_dir.is_dir() else []
    return [int(name.split("-", 1)[1]) for name in names if name.split("-", 1)[1].isdigit()]


def instance_processes(pk: int) -> list[psutil.Process]:
    """Every live process of the instance wherever it went (its own session, a double fork, a
    daemon): found by the marker in its environment and, where instances get one, in its cgroup
    (aikore_site/procs.py)."""
    found = {_key(m.proc): m.proc for m in procs.scan(settings.AIKORE_STACK_ID, instance=pk)}
    for proc in _cgroup_members(pk):
        found.setdefault(_key(proc), proc)
    return list(found.values())


def shutting_down() -> bool:
    return Path(settings.SHUTDOWN_FLAG).exists()


def _key(proc: psutil.Process) -> tuple[int, float]:
    try:
        return proc.pid, proc.create_time()
    except psutil.Error:
        return proc.pid, 0.0


def _pgid(proc: psutil.Process) -> int | None:
    try:
        return os.getpgid(proc.pid)
    except OSError:
        return None


def _describe(proc: psutil.Process) -> str:
    try:
        return f"pid {proc.pid} ({proc.name()})"
    except psutil.Error:
        pass
    try:
        return f"pid {proc.pid} ({Path(f'/proc/{proc.pid}/comm').read_text().strip()})"
    except OSError:
        return f"pid {proc.pid}"


def end_processes(mains: dict[int, psutil.Process | None], timeout: float,
                  group_signalled: set[int] | frozenset[int] = frozenset(),
                  roots: dict[int, list[int]] | None = None,
                  ) -> tuple[dict[int, list[str]], list[psutil.Process]]:
    """End every process of these instances, all at once: SIGTERM now, SIGKILL to whatever is
    alive `timeout` seconds later, and keep looking (process tree snapshot + marker scans) until
    two scans in a row find nothing, so children started during the stop are ended too.

    mains: {instance id: its main process, or None}. For the ids in group_signalled supervisord
    has already sent SIGTERM to the main process's group (stopasgroup): those members get no
    second one (some apps take a second SIGTERM as "quit now, skip the cleanup").
    Returns ({instance id: the processes that needed SIGKILL}, processes that outlived even that
    by GIVE_UP_SECONDS, e.g. stuck in uninterruptible sleep).
    roots: {instance id: pids of its other programs (the desktop's)}, whose trees are snapshotted
    too: chromium's helpers write their process titles over their environment, losing the marker."""
    known: dict[tuple[int, float], tuple[int, psutil.Process]] = {}
    for pk, main in mains.items():
        pids = ([main.pid] if main is not None else []) + list((roots or {}).get(pk, []))
        for pid in pids:
            for proc in _process_tree(pid):
                known[_key(proc)] = (pk, proc)
    groups = {pk: main.pid for pk, main in mains.items() if main is not None and pk in group_signalled}
    termed: set[tuple[int, float]] = set()
    killed: set[tuple[int, float]] = set()
    forced: dict[int, list[str]] = {pk: [] for pk in mains}
    deadline = time.monotonic() + timeout
    quiet_scans = 0
    cgroups = {pk: path for pk in mains if (path := supervisor.instance_cgroup(pk)) is not None and path.exists()}
    while True:
        for marked in procs.scan(settings.AIKORE_STACK_ID):
            if marked.instance in mains:
                known.setdefault(_key(marked.proc), (marked.instance, marked.proc))
        for pk, path in cgroups.items():
            for proc in procs.cgroup_members(path):
                known.setdefault(_key(proc), (pk, proc))
        known = {key: entry for key, entry in known.items() if procs.alive(entry[1])}
        if not known:
            quiet_scans += 1
            if quiet_scans >= 2:
                for path in cgroups.values():
                    procs.remove_cgroup(path)
                return forced, []
            time.sleep(procs.POLL_SECONDS)
            continue
        quiet_scans = 0
        now = time.monotonic()
        if now > deadline + GIVE_UP_SECONDS:
            return forced, [proc for _pk, proc in known.values()]
        if now >= deadline:
            for key, (pk, proc) in known.items():
                if key not in killed:
                    killed.add(key)
                    forced[pk].append(_describe(proc))  # named before they die
            for pk, path in cgroups.items():
                if any(entry[0] == pk for entry in known.values()):
                    procs.cgroup_kill(path)  # at once, even what was forked a moment ago
            procs.signal_all((proc for _pk, proc in known.values()), signal.SIGKILL)
        else:
            fresh = []
            for key, (pk, proc) in known.items():
                if key not in termed:
                    termed.add(key)
                    if pk not in groups or _pgid(proc) != groups[pk]:
                        fresh.append(proc)
            procs.signal_all(fresh, signal.SIGTERM)  # (the apps' user's through supervisord)
        time.sleep(STOP_POLL_SECONDS)


def _log_forced(instance: Instance, forced: list[str], timeout: float) -> None:
    if forced:
        instance.append_log(f"forced SIGKILL after {timeout:g} s: {', '.join(forced)} ignored SIGTERM")


def _main_process(instance: Instance, info: dict | None) -> psutil.Process | None:
    """supervisord's process of the instance, else the recorded one if it is still that process."""
    pid = info["pid"] if info and info.get("pid") and info["statename"] in supervisor.ALIVE_STATES else None
    if pid is None and instance.pid and instance.pid_create_time and _alive(instance.pid, instance.pid_create_time):
        pid = instance.pid
    try:
        return psutil.Process(pid) if pid else None
    except psutil.Error:
        return None


def _await_supervisord_stop(pk: int, timeout: float = 5.0) -> None:
    """supervisord notices an exit when the pipes close, else on its next one-second tick (every
    program of the group: the WebUI and its desktop's)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            info = supervisor.process_info(pk)
        except supervisor.SupervisorError:
            return
        if (not info or info["statename"] not in supervisor.ALIVE_STATES) and not supervisor.group_pids(pk):
            return
        time.sleep(0.01)


def _stop_processes(instance: Instance) -> list[psutil.Process]:
    """SIGTERM to every process of the instance at once (supervisord signals the group; AiKore
    the children that left it), SIGKILL after AIKORE_STOP_TIMEOUT, written to the instance's log.
    Works without supervisord too. Returns the processes that not even SIGKILL ended."""
    try:
        info = supervisor.process_info(instance.pk)
    except supervisor.SupervisorError:
        info = None
    main = _main_process(instance, info)
    others = supervisor.group_pids(instance.pk)  # the desktop's programs, if any
    signalled: set[int] = set()
    if (info and info["statename"] in supervisor.ALIVE_STATES) or others:
        try:
            supervisor.stop_group(instance.pk, wait=False)
            signalled.add(instance.pk)
        except supervisor.SupervisorError:
            pass
    timeout = settings.AIKORE_STOP_TIMEOUT
    forced, survivors = end_processes({instance.pk: main}, timeout, signalled, roots={instance.pk: others})
    _log_forced(instance, forced[instance.pk], timeout)
    if signalled:
        _await_supervisord_stop(instance.pk)
    return survivors


def _end_leftovers(instance: Instance, force: bool = False) -> None:
    """End processes of the instance that outlived its main process (a crash leaves its children
    behind, and they may hold its port; its desktop goes with it, and comes back with the next
    start). Caller holds the instance lock. force: even while the WebUI runs (a start that failed
    after starting some of the desktop)."""
    try:
        info = supervisor.process_info(instance.pk)
    except supervisor.SupervisorError:
        info = None
    if not force and info and info["statename"] in (supervisor.RUNNING, supervisor.STARTING):
        return  # a run is up: these are its processes, not leftovers
    others = supervisor.group_pids(instance.pk)
    if others:
        # The desktop's programs restart themselves under supervisord: stop them there first.
        with contextlib.suppress(supervisor.SupervisorError, xmlrpc.client.Fault):
            supervisor.stop_group(instance.pk, wait=False)
    leftovers = instance_processes(instance.pk)
    if not leftovers and not others:
        return
    timeout = settings.AIKORE_STOP_TIMEOUT
    forced, _survivors = end_processes({instance.pk: None}, timeout, roots={instance.pk: others})
    if others:
        _await_supervisord_stop(instance.pk)
    instance.append_log(f"ended {len(leftovers)} process(es) left behind by the previous run: "
                        f"{', '.join(_describe(p) for p in leftovers)}")
    _log_forced(instance, forced[instance.pk], timeout)
    if info and info["statename"] == supervisor.STOPPING:
        _await_supervisord_stop(instance.pk)


def end_leftovers(pk: int) -> None:
    with instance_lock(pk):
        instance = _get(pk)
        if instance is not None:
            _end_leftovers(instance)


def _forget_group(pk: int) -> None:
    """Unload a stopped instance's supervisord group and delete its config: stopped instances cost
    supervisord nothing (its shutdown visits every loaded group, one per second)."""
    with contextlib.suppress(supervisor.SupervisorError, xmlrpc.client.Fault):
        supervisor.remove_group(pk)


# --- stop -------------------------------------------------------------------------------------


def halt(instance: Instance, final: bool = False, generation: int | None = None) -> None:
    """Stop the instance's processes (SIGTERM to all of them, SIGKILL after the timeout, until no
    process with its marker is left). final=True is a delete. The status says `stopped` only once
    no process of the instance is alive. With `generation`, a stop that a newer start (or stop)
    superseded while it waited does nothing: jobs may run out of order, and a late stop must not
    undo the start that followed it."""
    with instance_lock(instance.pk):
        instance.refresh_from_db()
        wanted = Instance.objects.filter(pk=instance.pk)
        if generation is not None:
            wanted = wanted.filter(generation=generation)  # atomically: Instance.start() takes no lock
        if not wanted.update(want_running=False):
            return
        try:
            info = supervisor.process_info(instance.pk)
        except supervisor.SupervisorError:
            info = None  # supervisord is gone: AiKore still finds and ends the processes itself
        running = (bool(info and info["statename"] in supervisor.ALIVE_STATES)
                   or _alive(instance.pid, instance.pid_create_time) or bool(instance_processes(instance.pk)))
        if running:
            instance.set_status(InstanceStatus.STOPPING)
            instance.append_log("stopping")
            survivors = _stop_processes(instance)
            if survivors:
                reason = (f"{len(survivors)} process(es) outlived SIGKILL: "
                          f"{', '.join(_describe(p) for p in survivors)}; the stop is retried at the next reconcile.")
                instance.append_log(reason)
                instance.set_status(InstanceStatus.STOPPING, error_message=reason)
                return
        _forget_group(instance.pk)
        _remove_instance_cgroup(instance.pk)
        if final:
            # Its desktop's display and port go back now (the row goes next).
            Instance.objects.filter(pk=instance.pk).update(vnc_display=None, vnc_port=None)
            _update_proxy()
            return
        if running or instance.status in (*ACTIVE_STATUSES, InstanceStatus.STOPPING):
            instance.set_status(InstanceStatus.STOPPED, pid=None, pid_create_time=None, stopped_at=timezone.now(),
                                install_step="", install_progress=None)
        _update_proxy()


def halt_by_id(pk: int, generation: int | None = None) -> None:
    instance = _get(pk)
    if instance is not None:
        halt(instance, generation=generation)


def restart(pk: int) -> None:
    instance = _get(pk)
    if instance is None:
        return
    generation = instance.generation
    halt(instance)
    Instance.objects.filter(pk=pk, generation=generation).update(want_running=True, restart_count=0)
    launch(pk, generation)


# --- crashes (called by the supervisord event listener) ---------------------------------------


def backoff_delay(attempt: int) -> float:
    """PM2-style exponential backoff: base * 2^(attempt-1), capped."""
    return min(settings.AIKORE_RESTART_BACKOFF * (2 ** max(0, attempt - 1)), settings.AIKORE_RESTART_BACKOFF_MAX)


def schedule_restart(pk: int, generation: int, delay: float) -> None:
    """Enqueue the crash restart after `delay` seconds. The watcher keeps the delay itself with a
    timer (Huey's scheduler only ticks once a second, which would blur a 1 s backoff into 2 s)."""
    from instances import tasks

    timer = threading.Timer(delay, lambda: tasks.crash_restart(pk, generation))
    timer.daemon = True
    timer.start()


def schedule_restart_queued(pk: int, generation: int, delay: float) -> None:
    """The same through Huey's schedule, for callers that may exit before the delay is over
    (manage.py instances boot/reconcile)."""
    from instances import tasks

    if delay <= 0:
        tasks.crash_restart(pk, generation)
    else:
        tasks.crash_restart.schedule(args=(pk, generation), delay=delay)


def handle_exit(pk: int, pid: int | None, exit_code: int | None, fatal: bool = False) -> None:
    """The instance's main process ended without us stopping it."""
    try:
        _handle_exit(pk, pid, exit_code, fatal)
    finally:
        _update_proxy()  # a no-op while a crash restart keeps the route


def _handle_exit(pk: int, pid: int | None, exit_code: int | None, fatal: bool = False) -> None:
    with instance_lock(pk):
        instance = _get(pk)
        if instance is None:
            return
        if not pid or pid != instance.pid:
            # An older process's exit, or one already handled (by the start job, which saw the
            # process gone before it could record it, or by a reconcile while this listener was down).
            return
        record_exit(instance, exit_code, fatal, schedule_restart)


def record_exit(instance: Instance, exit_code: int | None, fatal: bool,
                schedule: Callable[[int, int, float], None]) -> None:
    """Decide what an exit of the instance's tracked process means: a stop (not wanted), a finish
    (code 0), a crash to restart with backoff, or a failure (restart budget spent). Caller holds
    the instance lock. Children the process left behind are ended by a job."""
    from instances import tasks

    pk = instance.pk
    if instance_processes(pk):
        tasks.end_leftovers_task(pk)
    if shutting_down():
        # Not a crash: AiKore is stopping everything; the desired state is kept for the next start.
        instance.set_status(InstanceStatus.STOPPED, pid=None, pid_create_time=None, exit_code=exit_code,
                            stopped_at=timezone.now())
        return
    if not instance.want_running:
        if instance.status != InstanceStatus.STOPPED and instance.status != InstanceStatus.FAILED:
            instance.set_status(InstanceStatus.STOPPED, pid=None, pid_create_time=None, exit_code=exit_code,
                                stopped_at=timezone.now())
        return
    tail = instance.log_tail(2000)
    state = instance.install_state()
    if state and state["phase"] == "installing" and (exit_code != 0 or fatal) and not instance.is_satellite:
        # The install failed (or the script ended mid-install): retrying the same install
        # with backoff would fail the same way. The user sees the step and the output.
        step = state["step"] or "install"
        reason = f"Install step {step!r} failed (exit code {exit_code}). Last output:\n{tail[-1500:]}"
        instance.append_log(f"install failed at step {step!r} (exit code {exit_code})")
        Instance.objects.filter(pk=pk).update(want_running=False)
        instance.set_status(InstanceStatus.FAILED, pid=None, pid_create_time=None, exit_code=exit_code,
                            error_message=reason, stopped_at=timezone.now(), install_step=step)
        send_event(instance, "install_failed", step=step, reason=reason, log_tail=tail)
        return
    if exit_code == 0 and not fatal and state and state["phase"] == "done":
        # An install-only run (update or rebuild of a stopped instance) did its job and stays
        # stopped: not an app that finished by itself. install_finished unless the readiness
        # watch said it already (it turns `installing` into `starting` when it does).
        unsaid = Instance.objects.filter(pk=pk, status=InstanceStatus.INSTALLING).update(
            status=InstanceStatus.STARTING)
        instance.append_log("install-only run done; the instance stays stopped")
        Instance.objects.filter(pk=pk).update(want_running=False)
        instance.set_status(InstanceStatus.STOPPED, pid=None, pid_create_time=None, exit_code=0,
                            stopped_at=timezone.now(), error_message="", install_step="", install_progress=None)
        if unsaid:
            send_event(instance, "install_finished")
        return
    if exit_code == 0 and not fatal:
        instance.append_log("exited with code 0 (finished)")
        Instance.objects.filter(pk=pk).update(want_running=False)
        instance.set_status(InstanceStatus.STOPPED, pid=None, pid_create_time=None, exit_code=0,
                            stopped_at=timezone.now(), error_message="")
        send_event(instance, "finished", exit_code=0)
        return
    ran_for = (timezone.now() - instance.started_at).total_seconds() if instance.started_at else 0.0
    count = 0 if ran_for >= settings.AIKORE_STABLE_SECONDS else instance.restart_count
    if count >= settings.AIKORE_RESTART_LIMIT:
        reason = f"Crashed {count + 1} times in a row; last exit code {exit_code}. Last output:\n{tail[-1500:]}"
        instance.append_log(f"exit code {exit_code}; restart budget ({settings.AIKORE_RESTART_LIMIT}) spent")
        Instance.objects.filter(pk=pk).update(want_running=False, restart_count=count)
        instance.set_status(InstanceStatus.FAILED, pid=None, pid_create_time=None, exit_code=exit_code,
                            error_message=reason, stopped_at=timezone.now())
        send_event(instance, "failed", exit_code=exit_code, reason=reason, log_tail=tail)
        return
    attempt = count + 1
    delay = backoff_delay(attempt)
    message = (f"Exited with code {exit_code}; restarting in {delay:g} s "
               f"(attempt {attempt}/{settings.AIKORE_RESTART_LIMIT}).")
    instance.append_log(message)
    instance.set_status(InstanceStatus.STARTING, pid=None, pid_create_time=None, exit_code=exit_code,
                        error_message=message, restart_count=attempt)
    send_event(instance, "crashed", exit_code=exit_code, attempt=attempt, limit=settings.AIKORE_RESTART_LIMIT,
               delay=delay)
    schedule(pk, instance.generation, delay)


def process_started(pk: int, pid: int) -> None:
    instance = _get(pk)
    if instance and instance.pid != pid:
        instance.observe(pid=pid, pid_create_time=_create_time(pid))


# --- reconcile --------------------------------------------------------------------------------


def reconcile() -> list[str]:
    """Make status/pid true again after any crash of AiKore's own processes, and bring the
    desired state back: running processes are adopted (never restarted); an exit nobody handled
    (the watcher was down) is handled now, as the crash it was; an instance meant to run that has
    no process is started; leftover processes are ended. Safe to run from several processes at
    once (each instance is handled under its lock)."""
    from instances import tasks

    changes: list[str] = []
    for pk in Instance.objects.values_list("pk", flat=True):
        # Under the instance's lock, with fresh state: a start job racing this reconcile (right
        # after boot) must not see its just-spawned process called dead and undone.
        with instance_lock(pk):
            instance = _get(pk)
            if instance is None:
                continue
            try:
                info = supervisor.process_info(pk)
            except supervisor.SupervisorError as exc:
                log.warning("reconcile stopped: %s", exc)  # never guess "dead" without supervisord
                return changes
            _reconcile_one(instance, info, changes)
    # Processes of instances deleted while their processes lived on (a delete during an outage).
    known = set(Instance.objects.values_list("pk", flat=True))
    strays = {m.instance for m in procs.scan(settings.AIKORE_STACK_ID) if m.instance is not None} - known
    for pk in strays:
        tasks.end_leftovers_task(pk)
        changes.append(f"instance {pk} (deleted): ending its processes")
    return changes


def _reconcile_one(instance: Instance, info: dict | None, changes: list[str]) -> None:
    from instances import tasks

    state = info["statename"] if info else None
    if state in (supervisor.RUNNING, supervisor.STARTING) and info["pid"]:
        pid = info["pid"]
        if instance.status == InstanceStatus.STOPPING and not instance.want_running:
            tasks.stop_instance(instance.pk)  # the stop job died midway: finish it
            changes.append(f"{instance.slug}: stop resumed")
            return
        fields: dict = {}
        if instance.pid != pid or not _alive(pid, instance.pid_create_time):
            fields.update(pid=pid, pid_create_time=_create_time(pid))
        if not instance.want_running:
            Instance.objects.filter(pk=instance.pk).update(want_running=True)
        if instance.status not in ACTIVE_STATUSES:
            instance.set_status(InstanceStatus.STARTING, **fields)
            changes.append(f"{instance.slug}: adopted running pid {pid}")
        elif fields:
            instance.observe(**fields)
            changes.append(f"{instance.slug}: pid corrected to {pid}")
        if instance.status in (InstanceStatus.STARTING, InstanceStatus.INSTALLING):
            tasks.await_ready_task(instance.pk)
        return
    if state == supervisor.STOPPING:
        # supervisord is stopping it and the job that asked died: finish the stop (or the start).
        if instance.want_running and (kind := resumed_run(instance)) is not None:
            tasks.start_instance(instance.pk, *kind)
        else:
            tasks.stop_instance(instance.pk)
        changes.append(f"{instance.slug}: interrupted stop resumed")
        return
    leftovers = instance_processes(instance.pk)
    if leftovers:
        tasks.end_leftovers_task(instance.pk)
        changes.append(f"{instance.slug}: ending {len(leftovers)} process(es) no supervisord runs")
    if instance.want_running:
        if state in (supervisor.EXITED, supervisor.FATAL) and instance.pid and instance.status in ACTIVE_STATUSES:
            # Its exit happened while no listener was there to see it: the crash it was.
            exit_code = info.get("exitstatus")
            record_exit(instance, exit_code, state == supervisor.FATAL, schedule_restart_queued)
            changes.append(f"{instance.slug}: exit {exit_code} seen late, handled as a crash")
        elif instance.status == InstanceStatus.STARTING and not instance.pid and instance.restart_count > 0:
            # A crash restart whose timer died with the process that held it: keep its due time.
            due = instance.status_changed_at.timestamp() + backoff_delay(instance.restart_count)
            schedule_restart_queued(instance.pk, instance.generation, max(0.0, due - time.time()))
            changes.append(f"{instance.slug}: pending restart resumed")
        elif (kind := resumed_run(instance)) is None:
            # An install-only run that was over (its exit was not recorded): it stays stopped.
            Instance.objects.filter(pk=instance.pk).update(want_running=False)
            instance.set_status(InstanceStatus.STOPPED, pid=None, pid_create_time=None, stopped_at=timezone.now(),
                                install_step="", install_progress=None)
            changes.append(f"{instance.slug}: its install-only run was done")
        else:
            if instance.status == InstanceStatus.INSTALLING:
                instance.append_log(f"The install was interrupted at step {instance.install_step or '?'!r}; "
                                    "running it again.")
            if instance.status not in (InstanceStatus.STARTING, InstanceStatus.INSTALLING) or instance.pid:
                instance.set_status(InstanceStatus.STARTING, pid=None, pid_create_time=None)
            tasks.start_instance(instance.pk, *kind)
            changes.append(f"{instance.slug}: meant to run, starting it"
                           + (f" ({'install-only ' if kind[1] else ''}{kind[0]} resumed)" if kind != ("start", False) else ""))
        return
    if instance.status in (*ACTIVE_STATUSES, InstanceStatus.STOPPING):
        if leftovers:
            tasks.stop_instance(instance.pk)  # `stopped` only once they are gone
            changes.append(f"{instance.slug}: stop resumed")
            return
        note = ""
        if instance.status == InstanceStatus.INSTALLING:
            # Its install was cut short (nothing recorded it as done): the next start redoes it.
            note = f"The install was interrupted at step {instance.install_step or '?'!r}; it runs again at the next start."
            instance.append_log(note)
        instance.set_status(InstanceStatus.STOPPED, pid=None, pid_create_time=None, stopped_at=timezone.now(),
                            error_message=note, install_step="", install_progress=None)
        changes.append(f"{instance.slug}: not running, marked stopped")
    if info is not None and not leftovers:
        _forget_group(instance.pk)


def resumed_run(instance: Instance) -> tuple[str, bool] | None:
    """What to run again for an instance meant to run whose run AiKore's stop or crash cut short:
    (action, install_only) for launch(), from the env.json that run started with. An update
    fetches the code again and an install-only run (update or rebuild of a stopped instance)
    installs and stays stopped, rather than a plain start that would skip the update or launch an
    app promised to stay stopped. Once the run's install was over: a plain start, or None for an
    install-only run that was done. A user's start or stop since that run (a newer generation)
    wins: a plain start."""
    try:
        run = json.loads((instance.directory / "env.json").read_text())["run"]
        action = "update" if run["action"] == "update" else "start"
        install_only, generation = bool(run["install_only"]), run["generation"]
    except (OSError, ValueError, KeyError, TypeError):
        return "start", False
    if generation != instance.generation:
        return "start", False
    state = instance.install_state()
    if state and state["phase"] == "done" and install_only:
        return None
    if state and state["phase"] in ("launching", "done"):
        return "start", False
    return action, install_only


def autostart_all() -> list[str]:
    """Start the autostart instances that are not meant to run already (reconcile starts those)."""
    started = []
    for instance in Instance.objects.filter(autostart=True, want_running=False):
        info = supervisor.process_info(instance.pk)
        if not (info and info["statename"] in supervisor.ALIVE_STATES):
            instance.start()
            started.append(instance.slug)
    return started


def boot() -> list[str]:
    """At every AiKore start: reconcile (which starts every instance meant to run), then start the
    autostart instances."""
    changes = reconcile()
    started = autostart_all()
    if started:
        changes.append(f"autostart: {', '.join(started)}")
    return changes


# --- the whole stack: shutdown and a start after a crash --------------------------------------


def shutdown_stack() -> list[str]:
    """Stop every instance at once, within AIKORE_STOP_TIMEOUT (+ the SIGKILL), however many exist;
    unload their supervisord groups; then ask supervisord to stop AiKore's own programs and exit.
    (supervisord's own shutdown stops groups one after another and visits every loaded group on a
    one-second tick.) The desired state is kept: what ran starts again with AiKore."""
    notes: list[str] = []
    atomic_write(Path(settings.SHUTDOWN_FLAG), str(os.getpid()))
    terminals = _stop_terminals()  # at the same moment as the instances, not after them
    timeout = settings.AIKORE_STOP_TIMEOUT
    mains: dict[int, psutil.Process | None] = {}
    signalled: set[int] = set()
    loaded: set[int] = set()
    for _round in range(2):  # a start job may have spawned one while the first round ran
        try:
            infos = supervisor.instance_infos()
        except supervisor.SupervisorError:
            infos = {}
        loaded.update(infos)
        batch: dict[int, psutil.Process | None] = {}
        for pk, info in infos.items():
            if info["statename"] in supervisor.ALIVE_STATES and pk not in mains:
                with contextlib.suppress(supervisor.SupervisorError):
                    supervisor.stop_group(pk, wait=False)
                    signalled.add(pk)
                try:
                    batch[pk] = psutil.Process(info["pid"]) if info["pid"] else None
                except psutil.Error:
                    batch[pk] = None
        for marked in procs.scan(settings.AIKORE_STACK_ID):
            if marked.instance is not None and marked.instance not in mains:
                batch.setdefault(marked.instance, None)
        for pk in _cgroup_instances():
            if pk not in mains and _cgroup_members(pk):
                batch.setdefault(pk, None)
        if not batch:
            break
        forced, survivors = end_processes(batch, timeout, signalled)
        mains.update(batch)
        for pk, killed in forced.items():
            instance = _get(pk)
            if instance is not None:
                _log_forced(instance, killed, timeout)
        if survivors:
            notes.append(f"{len(survivors)} instance process(es) outlived SIGKILL")
    for instance in Instance.objects.filter(Q(pk__in=mains) | Q(status__in=(*ACTIVE_STATUSES, InstanceStatus.STOPPING))):
        again = " (it starts again with AiKore)" if instance.want_running else ""
        instance.append_log(f"stopped: AiKore is shutting down{again}")
        instance.set_status(InstanceStatus.STOPPED, pid=None, pid_create_time=None, stopped_at=timezone.now())
        notes.append(f"{instance.slug}: stopped")
    if procs.terminate(procs.terminal_processes(settings.AIKORE_STACK_ID), TERMINAL_STOP_SECONDS):
        notes.append("terminal processes needed SIGKILL")
    with contextlib.suppress(supervisor.SupervisorError, xmlrpc.client.Fault):
        supervisor.remove_groups(loaded, terminals)
    _remove_stack_cgroup()
    with contextlib.suppress(supervisor.SupervisorError, xmlrpc.client.Fault):
        # Everything but the watcher (which may be running this) at once; then supervisord.
        supervisor.shutdown(first=("boot", "nginx", "daphne", "worker"))
    return notes


def _stop_terminals() -> set[int]:
    """SIGTERM to every instance terminal's tmux server (through supervisord, without waiting) and
    SIGHUP + SIGTERM to whatever their shells started, wherever it went (the terminal marker).
    Returns the terminals whose groups supervisord has loaded: the shutdown unloads them with the
    instances' (supervisord's own shutdown visits every loaded group on a one-second tick)."""
    try:
        infos = supervisor.terminal_infos()
    except (supervisor.SupervisorError, xmlrpc.client.Fault):
        infos = {}
    for pk, info in infos.items():
        if info["statename"] in supervisor.ALIVE_STATES:
            with contextlib.suppress(supervisor.SupervisorError):
                supervisor.stop_terminal(pk, wait=False)
    marked = procs.terminal_processes(settings.AIKORE_STACK_ID)
    procs.signal_all(marked, signal.SIGHUP)  # interactive shells ignore SIGTERM
    procs.signal_all(marked, signal.SIGTERM)
    return set(infos)


def _pidfile_process(path: Path, name: str) -> psutil.Process | None:
    """The process a pid file names, if it is still the one that wrote it: alive, started before
    the file was written (a recycled PID starts later), and with `name` in its command line."""
    try:
        pid = int(path.read_text().split()[0])
        written = path.stat().st_mtime
        proc = psutil.Process(pid)
        if proc.create_time() > written + 1 or not any(name in part for part in proc.cmdline()):
            return None
        return proc if proc.pid not in (os.getpid(), os.getppid()) else None
    except (OSError, ValueError, IndexError, psutil.Error):
        return None


def _is_supervisord(proc: psutil.Process) -> bool:
    try:
        return any("supervisord" in part for part in proc.cmdline()[:3])
    except psutil.Error:
        return False


def end_stale_stack() -> list[str]:
    """Before a start: end every process a previous run of this stack left behind (its
    supervisord or its entry.sh was killed), found by the stack's marker, nginx's working directory
    and the pid files of supervisord and nginx. Instances are not adopted: a process no supervisord started has no
    supervision (no exit events, no log: its output pipe died with the old supervisord), so it is
    ended here and the boot starts what is meant to run again under the new supervisord."""
    notes: list[str] = []
    marked = procs.scan(settings.AIKORE_STACK_ID)
    services = {_key(m.proc): m.proc for m in marked if m.instance is None}
    for proc in procs.nginx_processes(Path(settings.NGINX_DIR)):
        services.setdefault(_key(proc), proc)
    for path, name in ((Path(settings.RUN_DIR) / "supervisord.pid", "supervisord"),
                       (Path(settings.NGINX_DIR) / "nginx.pid", "nginx")):
        proc = _pidfile_process(path, name)
        if proc is not None:
            with contextlib.suppress(psutil.Error):
                for member in [proc, *proc.children(recursive=True)]:
                    services.setdefault(_key(member), member)
    instances: dict[int, psutil.Process | None] = {m.instance: None for m in marked if m.instance is not None}
    instances.update({pk: None for pk in _cgroup_instances() if _cgroup_members(pk)})
    if not services and not instances:
        _remove_stack_cgroup()  # empty ones a killed stack left
        return notes
    notes.append(f"ending {len(services)} AiKore process(es) and the processes of {len(instances)} instance(s) "
                 "left by a previous run")
    # supervisord first and at once (SIGKILL), so it restarts nothing that is being ended.
    supervisords = [p for p in services.values() if _is_supervisord(p)]
    procs.signal_all(supervisords, signal.SIGKILL)
    procs.wait_gone(supervisords, 5)
    rest = [p for p in services.values() if p not in supervisords]
    procs.signal_all(rest, signal.SIGTERM)
    timeout = settings.AIKORE_STOP_TIMEOUT
    forced, _survivors = end_processes(instances, timeout)
    stubborn = procs.wait_gone(rest, SERVICE_STOP_SECONDS)
    procs.signal_all(stubborn, signal.SIGKILL)
    procs.wait_gone(stubborn, 5)
    _remove_stack_cgroup()  # emptied above (a cgroup with a process left stays)
    for instance in Instance.objects.filter(pk__in=instances):
        again = "; it starts again under supervision" if instance.want_running else ""
        instance.append_log(f"ended the processes a previous AiKore run left running{again}")
        _log_forced(instance, forced.get(instance.pk, []), timeout)
        instance.set_status(InstanceStatus.STOPPED, pid=None, pid_create_time=None, stopped_at=timezone.now())
    return notes


def prepare_start() -> list[str]:
    """The stack is about to start (docker/entry.sh, under its lock): end a previous run's
    leftovers and clear the shutdown flag."""
    notes = end_stale_stack()
    Path(settings.SHUTDOWN_FLAG).unlink(missing_ok=True)
    desktop.write_tokens()  # no desktop runs yet: websockify must not reach a port of the last run
    return notes
