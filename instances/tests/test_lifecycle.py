"""Instances as real processes under the live supervisord: start, readiness, stop, crashes,
reconcile after SIGKILL of AiKore's own processes."""

from __future__ import annotations

import os
import re
import signal
import socket
import threading
import time
import urllib.request
from itertools import pairwise
from pathlib import Path

import psutil
import pytest
from django.core.management import call_command

from instances import supervisor
from instances.models import Instance, InstanceStatus
from instances.tests.helpers import custom_blueprint, wait_for, wait_status

pytestmark = [pytest.mark.stack, pytest.mark.django_db(transaction=True)]

SLEEPER = """# aikore.name: Sleeper
# aikore.ready: none
echo "sleeper on $WEBUI_PORT"
exec sleep 1000
"""


def http_get(port: int, path: str = "/") -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
        return resp.read().decode()


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def test_demo_webui_create_start_stop_delete(live):
    instance = Instance.objects.create_instance(name="Demo One", blueprint="demo-webui")
    assert instance.script_path.read_text().startswith(("#", "\n")) or instance.script_path.exists()
    instance.start()
    wait_status(instance, InstanceStatus.RUNNING, timeout=30)
    assert instance.port and instance.pid
    assert psutil.pid_exists(instance.pid)
    assert "AiKore Demo WebUI" in http_get(instance.port)
    wait_for(lambda: "GET / 200" in instance.log_path.read_text(), 5, "request line in the log")

    # Starting a running instance is a harmless no-op: same process.
    pid = instance.pid
    instance.start()
    time.sleep(0.5)  # let the (no-op) job run
    instance = wait_status(instance, InstanceStatus.RUNNING)
    assert instance.pid == pid
    info = supervisor.process_info(instance.pk)
    assert info["pid"] == pid

    instance.stop()
    wait_status(instance, InstanceStatus.STOPPED)
    assert instance.pid is None
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert not port_open(instance.port)
    # Stopping a stopped instance is a no-op too.
    instance.stop()
    wait_status(instance, InstanceStatus.STOPPED)

    directory = instance.directory
    instance.delete_everything()
    assert not directory.exists()
    assert supervisor.process_info(instance.pk) is None
    assert not supervisor.conf_path(instance.pk).exists()


def test_stop_leaves_no_grandchild(live):
    instance = Instance.objects.create_instance(name="Spawner", blueprint="spawner")
    instance.start()
    wait_status(instance, InstanceStatus.RUNNING)
    pids_file = instance.directory / "children.pids"
    wait_for(pids_file.exists, 10, "children.pids")
    children = [int(p) for p in pids_file.read_text().split()]
    tree = [psutil.Process(instance.pid), *psutil.Process(instance.pid).children(recursive=True)]
    assert len(children) >= 3 and all(psutil.pid_exists(p) for p in children)
    # One grandchild escaped the process group with setsid: killasgroup alone would miss it.
    assert any(os.getsid(p) != os.getsid(instance.pid) for p in children)
    instance.stop()
    wait_status(instance, InstanceStatus.STOPPED)
    survivors = [p for p in tree if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert survivors == []


def test_twenty_concurrent_starts_get_distinct_ports(live):
    bp = custom_blueprint("sleeper", SLEEPER)
    instances = [Instance.objects.create_instance(name=f"Race {i}", blueprint=bp) for i in range(20)]
    threads = [threading.Thread(target=i.start) for i in instances]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for instance in instances:
        wait_status(instance, InstanceStatus.RUNNING, timeout=60)
    ports = [i.port for i in instances]
    assert len(set(ports)) == 20, ports
    for instance in instances:
        # ready=none: "running" can precede supervisord copying the first line into the log.
        wait_for(lambda i=instance: f"sleeper on {i.port}" in i.log_path.read_text(), 10,
                 f"{instance.name}'s first log line")


def test_crash_loop_backs_off_then_fails(live, settings):
    bp = custom_blueprint("crasher", '# aikore.ready: none\necho "crash at $(date +%s.%N)"\nexit 3\n')
    instance = Instance.objects.create_instance(name="Crasher", blueprint=bp)
    instance.start()
    wait_status(instance, InstanceStatus.FAILED, timeout=40)
    assert instance.exit_code == 3
    assert "Crashed 4 times" in instance.error_message
    assert "crash at" in instance.error_message  # the log tail is kept with the reason
    log = instance.log_path.read_text()
    times = [float(t) for t in re.findall(r"crash at (\d+\.\d+)", log)]
    assert len(times) == 4  # first run + 3 restarts (AIKORE_RESTART_LIMIT=3 in tests)
    gaps = [b - a for a, b in pairwise(times)]
    # Backoff 1 s, 2 s, 4 s (AIKORE_RESTART_BACKOFF=1). On top of each: supervisord noticing the
    # exit (its loop may take up to a second) and a spawn, slower on a loaded machine.
    for gap, backoff in zip(gaps, (1, 2, 4), strict=True):
        assert backoff - 0.1 <= gap < backoff + 2.5, gaps
    assert gaps[2] > gaps[0] and gaps[2] > gaps[1], gaps
    assert "restarting in 1 s" in log and "restarting in 2 s" in log and "restarting in 4 s" in log


def test_environment_reaches_blueprint_exactly(live):
    instance = Instance.objects.create_instance(
        name="Env Check", blueprint="envdump", gpu_ids="1,0", launch_args="--foo 'bar baz' $HOME;x"
    )
    instance.start()
    wait_status(instance, InstanceStatus.RUNNING)
    dump = instance.directory / "env.dump"
    wait_for(dump.exists, 5, "env.dump")
    env = dict(item.split("=", 1) for item in dump.read_text().split("\0") if "=" in item)
    assert env["WEBUI_PORT"] == str(instance.port)
    assert env["SUBFOLDER"] == "/instance/env-check/"
    assert env["CUDA_VISIBLE_DEVICES"] == "1,0"
    assert env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    assert env["INSTANCE_NAME"] == "Env Check" and env["INSTANCE_SLUG"] == "env-check"
    assert env["AIKORE_LAUNCH_ARGS"] == "--foo 'bar baz' $HOME;x"
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["BLUEPRINT_ID"] == "envdump"
    assert Path(env["INSTANCE_OUTPUT_DIR"]).is_dir()
    assert "AIKORE_SECRET_KEY" not in env and "DJANGO_SETTINGS_MODULE" not in env
    instance.stop()
    wait_status(instance, InstanceStatus.STOPPED)

    instance.update_settings({"gpu_ids": ""})
    dump.unlink()
    instance.start()
    wait_status(instance, InstanceStatus.RUNNING)
    wait_for(dump.exists, 5, "env.dump")
    env = dict(item.split("=", 1) for item in dump.read_text().split("\0") if "=" in item)
    assert "CUDA_VISIBLE_DEVICES" not in env


def _restart_and_wait(stack, program: str) -> int:
    old = psutil.Process(int(stack.supervisorctl("pid", program).strip()))
    old.send_signal(signal.SIGKILL)
    old.wait(5)

    def back() -> bool:
        out = stack.supervisorctl("pid", program).strip()
        return out.isdigit() and int(out) not in (0, old.pid)

    wait_for(back, 20, f"{program} restarted by supervisord")
    return int(stack.supervisorctl("pid", program).strip())


def test_sigkill_of_web_and_worker_leaves_instances_running(live):
    bp = custom_blueprint("sleeper", SLEEPER)
    instance = Instance.objects.create_instance(name="Survivor", blueprint=bp)
    instance.start()
    wait_status(instance, InstanceStatus.RUNNING)
    pid = instance.pid

    _restart_and_wait(live, "daphne")
    assert psutil.pid_exists(pid)

    # Make the database lie, as after a crash mid-job, then kill the worker: its startup reconcile
    # must restore the truth without touching the process.
    Instance.objects.filter(pk=instance.pk).update(status=InstanceStatus.STOPPED, pid=None, want_running=False)
    _restart_and_wait(live, "worker")
    wait_status(instance, InstanceStatus.RUNNING, timeout=20)
    assert instance.pid == pid and psutil.pid_exists(pid)
    assert instance.want_running

    # And the other way round: a dead process recorded as running is corrected: an instance meant
    # to run is started again (its desired state), one that was not is marked stopped.
    other = Instance.objects.create_instance(name="Ghost", blueprint=bp)
    Instance.objects.filter(pk=other.pk).update(status=InstanceStatus.RUNNING, pid=999999, want_running=True)
    unwanted = Instance.objects.create_instance(name="Unwanted ghost", blueprint=bp)
    Instance.objects.filter(pk=unwanted.pk).update(status=InstanceStatus.RUNNING, pid=999998, want_running=False)
    call_command("instances", "reconcile")
    other.refresh_from_db()
    assert other.status in (InstanceStatus.STARTING, InstanceStatus.RUNNING) and other.pid != 999999
    wait_status(other, InstanceStatus.RUNNING)
    assert other.pid != 999999 and psutil.pid_exists(other.pid)
    unwanted.refresh_from_db()
    assert unwanted.status == InstanceStatus.STOPPED and unwanted.pid is None


def test_autostart_instances_start_at_boot(live):
    bp = custom_blueprint("sleeper", SLEEPER)
    auto = Instance.objects.create_instance(name="Auto", blueprint=bp, autostart=True)
    manual = Instance.objects.create_instance(name="Manual", blueprint=bp)
    call_command("instances", "boot")
    wait_status(auto, InstanceStatus.RUNNING)
    manual.refresh_from_db()
    assert manual.status == InstanceStatus.STOPPED


def test_reconcile_racing_starts_never_undoes_them(live):
    """The worker's startup reconcile can run while start jobs spawn processes (a user clicking
    Start right after AiKore boots): it must adopt them, never mark them stopped."""
    from instances import lifecycle

    bp = custom_blueprint("sleeper", SLEEPER)
    instances = [Instance.objects.create_instance(name=f"Boot race {i}", blueprint=bp) for i in range(12)]
    done = threading.Event()
    undone: list[str] = []

    def reconcile_loop() -> None:
        from django.db import close_old_connections

        try:
            while not done.is_set():
                undone.extend(c for c in lifecycle.reconcile() if "marked stopped" in c)
        finally:
            close_old_connections()

    thread = threading.Thread(target=reconcile_loop)
    thread.start()
    try:
        for instance in instances:
            instance.start()
        for instance in instances:
            wait_status(instance, InstanceStatus.RUNNING, timeout=60)
    finally:
        done.set()
        thread.join()
    assert undone == []
    for instance in instances:
        instance.refresh_from_db()
        assert instance.want_running and instance.status == InstanceStatus.RUNNING and psutil.pid_exists(instance.pid)


LONG_INSTALL = """#!/usr/bin/env bash
# aikore.name: Long install (test)
# aikore.kind: test
# aikore.ready: none
# aikore.python: 3.11
set -euo pipefail
source "$AIKORE_HOME/blueprints/functions.sh"

install() {
    aikore_step "downloading a lot"
    while [[ ! -e "$INSTANCE_CONF_DIR/go" ]]; do sleep 0.2; done
}
aikore_install install
aikore_exec sleep 600
"""


@pytest.mark.slow
def test_installs_as_many_as_the_job_workers_leave_the_job_queue_free(live):
    """An install (or any readiness wait) does not hold a job-queue worker: with as many installs
    under way as there are workers, a start, its nginx regeneration and a stop still happen at once."""
    from django.conf import settings

    from proxy import nginx

    bp = custom_blueprint("long-install", LONG_INSTALL)
    installing = [Instance.objects.create_instance(name=f"Long Install {n}", blueprint=bp)
                  for n in range(settings.HUEY["consumer"]["workers"])]
    for instance in installing:
        instance.start()
    for instance in installing:
        wait_status(instance, InstanceStatus.INSTALLING, timeout=60)
    quick = Instance.objects.create_instance(name="Quick Start", blueprint=custom_blueprint(
        "quick-start", "# aikore.ready: none\nexec sleep 600\n"))
    started = time.monotonic()
    quick.start()
    wait_status(quick, InstanceStatus.RUNNING, timeout=15)
    wait_for(lambda: f"/instance/{quick.slug}/" in nginx.config_path().read_text(), 10, "nginx regenerated")
    installing[0].stop()
    wait_status(installing[0], InstanceStatus.STOPPED, timeout=15)
    assert time.monotonic() - started < 15
    assert all(Instance.objects.get(pk=i.pk).status == InstanceStatus.INSTALLING for i in installing[1:])


def test_a_start_that_breaks_unexpectedly_fails_the_instance_instead_of_leaving_it_starting(live, settings):
    # The worker can't read the instance's blueprint (its file made unreadable): the start job
    # raises inside _spawn. Before, the instance stayed "starting" for good.
    if os.geteuid() == 0 and not settings.AIKORE_APP_USER and not os.environ.get("AIKORE_USER"):
        pytest.skip("the worker runs as root here: file modes don't stop it")
    name = custom_blueprint("unreadable", "#!/bin/bash\n# aikore.ready: none\nexec sleep 600\n")
    instance = Instance.objects.create_instance(name="Unreadable", blueprint=name)
    path = Path(settings.CUSTOM_BLUEPRINTS_DIR) / f"{name}.sh"
    path.chmod(0)
    try:
        instance.start()
        wait_status(instance, InstanceStatus.FAILED, InstanceStatus.RUNNING, timeout=30)
    finally:
        path.chmod(0o644)
    assert instance.status == InstanceStatus.FAILED
    assert "Could not start: PermissionError" in instance.error_message, instance.error_message
