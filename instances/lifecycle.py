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
from collections.abc import Iterator
from pathlib import Path

import psutil
from django.conf import settings
from django.db.models import F
from django.utils import timezone

from aikore_site.files import atomic_write, file_lock
from instances import sharedmodels, supervisor
from instances.models import ACTIVE_STATUSES, Instance, InstanceStatus
from instances.ports import NoFreePort, allocate_port, port_is_bindable
from instances.signals import instance_event

log = logging.getLogger(__name__)

READY_POLL_SECONDS = 0.02
# Progress-only changes of the install step are published at most this often.
PROGRESS_PUBLISH_SECONDS = 0.25


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
    atomic_write(instance.directory / "env.json", json.dumps({"env": env}, indent=1), 0o600)


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
        if instance is None or not instance.want_running:
            return
        if generation is not None and instance.generation != generation:
            return  # a user action superseded this (delayed) start
        info = supervisor.process_info(pk)
        if info and info["statename"] in supervisor.ALIVE_STATES:
            # Already running: a harmless no-op, never a second process.
            if instance.pid != info["pid"]:
                instance.observe(pid=info["pid"], pid_create_time=_create_time(info["pid"]))
            if instance.status == InstanceStatus.RUNNING:
                return
            pid = info["pid"]
        else:
            pid = _spawn(instance, action, install_only)
            if pid is None:
                return
        generation = instance.generation
    _wait_ready(pk, pid, generation)


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
    _update_proxy()  # nginx learns the route while the app boots
    bp = instance.blueprint()
    if not instance.script_path.exists():
        if bp is None:
            _fail(instance, f"launch.sh is missing and blueprint {instance.base_blueprint!r} is gone.")
            return None
        instance.prepare_directory(bp)
    instance.output_dir.mkdir(parents=True, exist_ok=True)
    sharedmodels.ensure_layout()
    write_env_file(instance, action, install_only)
    try:
        supervisor.ensure_group(instance)
        info = supervisor.start_webui(instance.pk)
    except (supervisor.SupervisorError, OSError) as exc:
        _fail(instance, f"Could not start: {exc}")
        return None
    pid = info.get("pid") or None
    if not pid:
        # Exited before we could even look (e.g. bash not found): the listener reports why.
        return None
    Instance.objects.filter(pk=instance.pk).update(
        pid=pid, pid_create_time=_create_time(pid), started_at=timezone.now()
    )
    instance.refresh_from_db()
    instance.publish()
    return pid


def _update_proxy() -> None:
    """Enqueue the nginx regeneration job (it renders from the database, so it sees this change;
    one that finds nothing changed costs a render)."""
    from proxy.tasks import regenerate_nginx

    regenerate_nginx()


def proxy_settings_changed() -> None:
    """A proxy-only setting (allowed origins) changed: nginx picks it up, the app keeps running."""
    _update_proxy()


def _fail(instance: Instance, reason: str, exit_code: int | None = None) -> None:
    log.warning("instance %s failed: %s", instance.slug, reason)
    instance.append_log(f"failed: {reason}")
    Instance.objects.filter(pk=instance.pk).update(want_running=False)
    instance.set_status(InstanceStatus.FAILED, error_message=reason, exit_code=exit_code, pid=None)
    instance_event.send(sender=Instance, instance=instance, kind="failed", exit_code=exit_code, reason=reason, log_tail=instance.log_tail(2000))
    _update_proxy()


def check_ready(kind: str, path: str, port: int) -> bool:
    if kind == "none":
        return True
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
        if (not installing and (launched or not needs_launch_report) and check_ready(kind, path, instance.port)
                and not (watch.state and watch.state["phase"] == "done")):
            updated = Instance.objects.filter(
                pk=pk, pid=pid, generation=generation, status__in=[InstanceStatus.STARTING, InstanceStatus.INSTALLING]
            ).update(status=InstanceStatus.RUNNING, status_changed_at=timezone.now(), updated_at=timezone.now(),
                     install_step="", install_progress=None)
            if updated:
                instance.refresh_from_db()
                instance.publish()
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
                instance_event.send(sender=Instance, instance=instance, kind="stuck_starting", timeout=timeout, log_tail=instance.log_tail(2000))
                _fail(instance, f"Not ready after {timeout} s ({kind} check on port {instance.port}).")
            return
        time.sleep(READY_POLL_SECONDS)


def await_ready(pk: int) -> None:
    """Resume a readiness wait (and the watch of the install) after the worker restarted."""
    instance = _get(pk)
    if instance and instance.pid and instance.status in (InstanceStatus.STARTING, InstanceStatus.INSTALLING):
        _wait_ready(pk, instance.pid, instance.generation)


# --- stop -------------------------------------------------------------------------------------


def _process_tree(pid: int | None) -> list[psutil.Process]:
    if not pid:
        return []
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def sweep(processes: list[psutil.Process], grace: float = 2.0) -> int:
    """Terminate whatever survived supervisord's group kill (children that called setsid left the
    process group). psutil.Process checks create_time, so a recycled PID is never signalled."""
    alive = [p for p in processes if p.is_running()]
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(signal.SIGTERM)
    _gone, alive = psutil.wait_procs(alive, timeout=grace)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=grace)
    return len(alive)


def _stop_processes(instance: Instance) -> None:
    info = supervisor.process_info(instance.pk)
    pid = info["pid"] if info and info.get("pid") else instance.pid
    tree = _process_tree(pid)
    # Ask without waiting (supervisord's own wait polls once a second), then watch the process
    # ourselves: supervisord still escalates to SIGKILL after stopwaitsecs.
    supervisor.stop_group(instance.pk, wait=False)
    if tree:
        psutil.wait_procs(tree[:1], timeout=settings.AIKORE_STOP_TIMEOUT + 5)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        info = supervisor.process_info(instance.pk)
        if not info or info["statename"] not in supervisor.ALIVE_STATES:
            break
        time.sleep(0.01)
    sweep(tree)


def halt(instance: Instance, final: bool = False) -> None:
    """Stop the instance's processes (SIGTERM to the group, SIGKILL after the timeout, then a
    sweep of escaped descendants). final=True also removes the supervisord group (delete)."""
    with instance_lock(instance.pk):
        instance.refresh_from_db()
        Instance.objects.filter(pk=instance.pk).update(want_running=False)
        info = supervisor.process_info(instance.pk) if supervisor.is_available() else None
        running = bool(info and info["statename"] in supervisor.ALIVE_STATES) or _alive(
            instance.pid, instance.pid_create_time
        )
        if running:
            instance.set_status(InstanceStatus.STOPPING)
            instance.append_log("stopping")
            _stop_processes(instance)
        if final:
            with contextlib.suppress(supervisor.SupervisorError):
                supervisor.remove_group(instance.pk)
            _update_proxy()
            return
        if running or instance.status in (*ACTIVE_STATUSES, InstanceStatus.STOPPING):
            instance.set_status(InstanceStatus.STOPPED, pid=None, pid_create_time=None, stopped_at=timezone.now(),
                                install_step="", install_progress=None)
        _update_proxy()


def halt_by_id(pk: int) -> None:
    instance = _get(pk)
    if instance is not None:
        halt(instance)


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
        if pid and instance.pid and pid != instance.pid:
            return  # an older process's exit; the current one is fine
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
        if exit_code == 0 and not fatal:
            instance.append_log("exited with code 0 (finished)")
            Instance.objects.filter(pk=pk).update(want_running=False)
            instance.set_status(InstanceStatus.STOPPED, pid=None, pid_create_time=None, exit_code=0,
                                stopped_at=timezone.now(), error_message="")
            instance_event.send(sender=Instance, instance=instance, kind="finished", exit_code=0)
            return
        ran_for = (timezone.now() - instance.started_at).total_seconds() if instance.started_at else 0.0
        count = 0 if ran_for >= settings.AIKORE_STABLE_SECONDS else instance.restart_count
        if count >= settings.AIKORE_RESTART_LIMIT:
            reason = f"Crashed {count + 1} times in a row; last exit code {exit_code}. Last output:\n{tail[-1500:]}"
            instance.append_log(f"exit code {exit_code}; restart budget ({settings.AIKORE_RESTART_LIMIT}) spent")
            Instance.objects.filter(pk=pk).update(want_running=False, restart_count=count)
            instance.set_status(InstanceStatus.FAILED, pid=None, pid_create_time=None, exit_code=exit_code,
                                error_message=reason, stopped_at=timezone.now())
            instance_event.send(sender=Instance, instance=instance, kind="failed", exit_code=exit_code, reason=reason, log_tail=tail)
            return
        attempt = count + 1
        delay = backoff_delay(attempt)
        message = (f"Exited with code {exit_code}; restarting in {delay:g} s "
                   f"(attempt {attempt}/{settings.AIKORE_RESTART_LIMIT}).")
        instance.append_log(message)
        instance.set_status(InstanceStatus.STARTING, pid=None, pid_create_time=None, exit_code=exit_code,
                            error_message=message, restart_count=attempt)
        instance_event.send(sender=Instance, instance=instance, kind="crashed", exit_code=exit_code, attempt=attempt, limit=settings.AIKORE_RESTART_LIMIT, delay=delay)
        schedule_restart(pk, instance.generation, delay)


def process_started(pk: int, pid: int) -> None:
    instance = _get(pk)
    if instance and instance.pid != pid:
        instance.observe(pid=pid, pid_create_time=_create_time(pid))


# --- reconcile --------------------------------------------------------------------------------


def reconcile() -> list[str]:
    """Make status/pid true again from supervisord's state after any crash of web or worker.
    Running processes are adopted, never restarted; dead ones are marked stopped."""
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
                break
            _reconcile_one(instance, info, changes)
    return changes


def _reconcile_one(instance: Instance, info: dict | None, changes: list[str]) -> None:
    from instances import tasks

    alive = bool(info and info["statename"] in (supervisor.RUNNING, supervisor.STARTING) and info["pid"])
    if alive:
        pid = info["pid"]
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
    elif instance.status == InstanceStatus.STARTING and instance.want_running and not instance.pid:
        # Waiting for a crash restart whose timer may have died with the watcher: run it now.
        tasks.crash_restart(instance.pk, instance.generation)
        changes.append(f"{instance.slug}: pending restart resumed")
    elif instance.status in (*ACTIVE_STATUSES, InstanceStatus.STOPPING):
        note = ""
        if instance.status == InstanceStatus.INSTALLING:
            # Its install was cut short (nothing recorded it as done): the next start redoes it.
            note = f"The install was interrupted at step {instance.install_step or '?'!r}; it runs again at the next start."
            instance.append_log(note)
        instance.set_status(InstanceStatus.STOPPED, pid=None, pid_create_time=None, stopped_at=timezone.now(),
                            error_message=note, install_step="", install_progress=None)
        Instance.objects.filter(pk=instance.pk).update(want_running=False)
        changes.append(f"{instance.slug}: not running, marked stopped")


def autostart_all() -> list[str]:
    started = []
    for instance in Instance.objects.filter(autostart=True):
        info = supervisor.process_info(instance.pk)
        if not (info and info["statename"] in supervisor.ALIVE_STATES):
            instance.start()
            started.append(instance.slug)
    return started


def bump_generation(pk: int) -> None:
    Instance.objects.filter(pk=pk).update(generation=F("generation") + 1)


def tree_pids(pid: int | None) -> list[int]:
    return [p.pid for p in _process_tree(pid)]

