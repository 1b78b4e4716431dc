"""Chaos, with real processes only: AiKore's own processes die (SIGKILL of daphne, the worker, the
watcher, nginx's master, supervisord, and supervisord together with entry.sh, which leaves a stale
process tree for the next start), supervisord stops answering, instances are started and stopped
100 times in a row, an app ignores SIGTERM, the stack is stopped, the disk fills up. After each,
the stack heals by itself, with no duplicate, no orphan and no status that contradicts the
process table. Throwaway stacks take their instance ports from AIKORE_CHAOS_PORT_RANGE."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import threading
import time
import xmlrpc.client
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from django.conf import settings
from huey.contrib.djhuey import HUEY
from supervisor.xmlrpc import SupervisorTransport

from aikore_site import procs
from aikore_site.tests.stacks import ADMIN_USER, ThrowawayStack, stack_client, throwaway_stack
from instances import lifecycle
from instances.models import Instance, InstanceStatus
from instances.tests.helpers import custom_blueprint, wait_for, wait_status

pytestmark = [pytest.mark.stack, pytest.mark.slow]
logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request drowns the failures

TEST_BLUEPRINTS = Path(__file__).resolve().parent / "blueprints"
CHAOS_PORTS = os.environ.get("AIKORE_CHAOS_PORT_RANGE", "30001-30499")
FAST = {"AIKORE_STOP_TIMEOUT": "3", "AIKORE_RESTART_BACKOFF": "1", "AIKORE_READY_TIMEOUT": "60"}


def port_slice(index: int, size: int = 100) -> str:
    low, high = (int(p) for p in CHAOS_PORTS.split("-"))
    start = low + index * size
    assert start + size - 1 <= high, f"AIKORE_CHAOS_PORT_RANGE={CHAOS_PORTS} is too small"
    return f"{start}-{start + size - 1}"


# --- a throwaway stack seen from outside: its API through nginx, its supervisord, its processes ----


class Outside:
    def __init__(self, stack: ThrowawayStack) -> None:
        self.stack = stack
        self.stack_id = procs.stack_id_for(stack.data_dir)
        self.client = stack_client(stack.base_url, timeout=30)
        page = self.client.get("/login/")
        assert page.status_code == 200
        response = self.client.post("/login/", data={
            "csrfmiddlewaretoken": self.client.cookies[settings.CSRF_COOKIE_NAME], "username": ADMIN_USER,
            "password": stack.admin_password}, headers={"Referer": stack.base_url + "/login/"})
        assert response.status_code == 302, response.text[-500:]

    def api(self, method: str, path: str, body: object = None) -> httpx.Response:
        headers = {"X-CSRFToken": self.client.cookies[settings.CSRF_COOKIE_NAME], "Referer": self.stack.base_url + "/"}
        return self.client.request(method, "/api" + path, json=body, headers=headers)

    def create(self, name: str, blueprint: str) -> int:
        response = self.api("POST", "/instances", {"name": name, "blueprint": blueprint})
        assert response.status_code == 201, response.text
        return response.json()["id"]

    def act(self, pk: int, action: str) -> None:
        response = self.api("POST", f"/instances/{pk}/{action}")
        assert response.status_code == 202, response.text

    def instance(self, pk: int) -> dict:
        response = self.api("GET", f"/instances/{pk}")
        assert response.status_code == 200, response.text
        return response.json()

    def wait(self, pk: int, *statuses: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            try:
                data = self.instance(pk)
            except (httpx.HTTPError, AssertionError):
                data = {}  # the web process is being restarted
            if data.get("status") in statuses:
                return data
            if time.monotonic() > deadline:
                holders = [(c.pid, c.status, c.laddr, c.raddr) for c in psutil.net_connections("tcp")
                           if data.get("port") and c.laddr and c.laddr.port == data["port"]]
                raise AssertionError(f"instance {pk}: {data.get('status')!r} {data.get('error_message')!r}, wanted "
                                     f"{statuses}; its port held by {holders}\n{self.stack.log()[-3000:]}")
            time.sleep(0.1)

    def log(self, pk: int) -> str:
        response = self.api("GET", f"/instances/{pk}/logs?offset=-20000&limit=20000")
        assert response.status_code == 200, response.text
        return response.json()["data"]

    def health(self) -> dict:
        """/api/health as the signed-in admin sees it (reasons, generations); anonymous callers
        get the booleans and codes only."""
        try:
            return self.client.get("/api/health", timeout=10).json()
        except (httpx.HTTPError, ValueError):
            return {}

    def wait_healthy(self, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            health = self.health()
            if health.get("status") == "ok":
                return health
            if time.monotonic() > deadline:
                raise AssertionError(f"not healthy: {health}\n{self.stack.log()[-3000:]}")
            time.sleep(0.1)

    def rpc(self, timeout: float = 10) -> object:
        transport = SupervisorTransport(None, None, f"unix://{self.stack.data_dir}/run/supervisor.sock")
        transport.timeout = timeout
        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport).supervisor

    def program_pid(self, name: str) -> int:
        return self.rpc().getProcessInfo(name)["pid"]

    def supervisord_pid(self) -> int:
        return int((self.stack.data_dir / "run" / "supervisord.pid").read_text())

    def marked(self, pk: int | None = None) -> list[psutil.Process]:
        return [m.proc for m in procs.scan(self.stack_id, instance=pk) if pk is not None or m.instance is not None]

    def escape_from_terminal(self, pk: int) -> psutil.Process:
        """Open the instance's terminal and start a process there that leaves the tmux server's
        tree (setsid -f); returns it."""
        from websockets.sync.client import connect

        from terminals.tests.helpers import Term

        escape = f"1000.{os.getpid()}{pk}"  # a command line no other test's process has
        cookie = f"{settings.SESSION_COOKIE_NAME}={self.client.cookies[settings.SESSION_COOKIE_NAME]}"
        ws_url = self.stack.base_url.replace("http://", "ws://") + f"/ws/instances/{pk}/terminal/?cols=80&rows=24"
        with Term(connect(ws_url, additional_headers={"Cookie": cookie}, origin=self.stack.base_url,
                          open_timeout=15, max_size=None)) as term:
            term.wait_message("attached")
            term.run(f"setsid -f sleep {escape} >/dev/null 2>&1", "escaped")

        def escapees() -> list[psutil.Process]:
            return [p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] == ["sleep", escape]]

        wait_for(escapees, 10, "the setsid'd sleep")
        return escapees()[0]


def kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def alive(pids: list[psutil.Process]) -> list[psutil.Process]:
    return [p for p in pids if procs.alive(p)]


@contextlib.contextmanager
def chaos_stack(workdir: Path, name: str, index: int, port: int | None = None,
                env: dict[str, str] | None = None) -> Iterator[ThrowawayStack]:
    blueprints = workdir / name / "custom_blueprints"
    blueprints.mkdir(parents=True, exist_ok=True)
    for script in TEST_BLUEPRINTS.glob("*.sh"):
        shutil.copy(script, blueprints / script.name)
    with throwaway_stack(workdir, name, {**FAST, **(env or {})}, admin_password="chaos-admin-password",
                         instance_port_range=port_slice(index), port=port, timeout=90) as stack:
        yield stack


# --- AiKore's own processes die -------------------------------------------------------------------


def test_stack_heals_after_sigkill_of_each_of_its_processes(tmp_path) -> None:
    # As in the container (an unprivileged user): no cgroups, the environment markers alone.
    with chaos_stack(tmp_path, "chaos", 0, env={"AIKORE_CGROUPS": "0"}) as stack:
        out = Outside(stack)
        out.wait_healthy()
        # Instances whose children escape every way (setsid, double fork, daemon): 5 processes each.
        ids = [out.create(f"Escaper {i}", "daemonizer") for i in range(3)]
        slow = [out.create(f"Slow stop {i}", "slowstop") for i in range(2)]
        for pk in ids + slow:
            out.act(pk, "start")
        for pk in ids + slow:
            out.wait(pk, "running")
        wait_for(lambda: all(len(out.marked(pk)) == 5 for pk in ids), 20, "each escaper's 5 processes")
        pids = {pk: out.instance(pk)["pid"] for pk in ids}

        # daphne and the worker: supervisord restarts them; the instances are left alone.
        for program in ("daphne", "worker"):
            kill(out.program_pid(program))
            time.sleep(0.5)
            out.wait_healthy()
            assert {pk: out.instance(pk)["pid"] for pk in ids} == pids

        # An instance crashes while the watcher is down: when it is back, that is still a crash
        # (restarted with backoff), not a stop.
        out.rpc().stopProcess("watcher")
        crashed = ids[0]
        kill(pids[crashed])
        wait_for(lambda: out.rpc().getProcessInfo(f"instance-{crashed}:instance-{crashed}-webui")["statename"]
                 == "EXITED", 10, "supervisord to see the crash")
        out.rpc().startProcess("watcher")
        wait_for(lambda: out.instance(crashed)["pid"] not in (pids[crashed], None), 30, "the crash restart")
        back = out.wait(crashed, "running")
        assert back["restart_count"] == 1 and back["pid"] != pids[crashed], back
        assert re.search(r"Exited with code -?\d+; restarting in 1 s \(attempt 1/", out.log(crashed)), out.log(crashed)
        pids[crashed] = back["pid"]
        kill(out.program_pid("watcher"))  # and a plain SIGKILL of the watcher heals too
        time.sleep(0.5)
        out.wait_healthy()
        wait_for(lambda: all(len(out.marked(pk)) == 5 for pk in ids), 20, "no duplicate, no orphan of the crash")

        # nginx's master: its orphaned workers hold the port with the old config until the new
        # master ends them; then health says it serves the current config, and a route added
        # after the takeover works (the reload reaches the new master).
        master = psutil.Process(out.program_pid("nginx"))
        workers = master.children()
        master.kill()
        time.sleep(0.5)
        health = out.wait_healthy()
        assert health["nginx_generation"]["serving"] == health["nginx_generation"]["expected"]
        assert alive(workers) == []
        late = out.create("After nginx", "daemonizer")
        out.act(late, "start")
        slug = out.wait(late, "running")["slug"]
        wait_for(lambda: out.client.get(f"/instance/{slug}/").status_code == 200, 15, "the new route through nginx")
        ids.append(late)
        pids[late] = out.instance(late)["pid"]

        # supervisord stops answering: a stop is refused with a clear 503, not accepted and lost.
        sup = psutil.Process(out.supervisord_pid())
        sup.suspend()
        try:
            refused = out.api("POST", f"/instances/{ids[1]}/stop")
        finally:
            sup.resume()
        assert refused.status_code == 503, refused.text
        assert "supervisord" in refused.json()["detail"]
        assert out.instance(ids[1])["status"] == "running" and psutil.pid_exists(pids[ids[1]])

        # supervisord itself: entry.sh ends everything it left (instances included: a process no
        # supervisord started cannot be supervised) and starts it again; every instance that was
        # meant to run is back, under the new supervisord, once.
        before = out.marked() + [psutil.Process(out.program_pid(p)) for p in ("daphne", "worker", "nginx")]
        sup.kill()
        wait_for(lambda: alive(before) == [] and out.health().get("status") == "ok", 60, "the stack back")
        for pk in ids + slow:
            data = out.wait(pk, "running")
            assert data["pid"] != pids.get(pk)
            assert out.rpc().getProcessInfo(f"instance-{pk}:instance-{pk}-webui")["pid"] == data["pid"]
        wait_for(lambda: all(len(out.marked(pk)) == 5 for pk in ids), 20, "each escaper once")

        # Terminals too: their tmux servers stop with the instances, with whatever a shell left
        # running outside the server's tree (setsid -f), and their groups are unloaded.
        escaped = [out.escape_from_terminal(pk) for pk in ids[:2]]
        assert len(list((stack.data_dir / "supervisor" / "instances").glob("terminal-*.conf"))) == 2

        # Stopping the stack (SIGTERM, as docker stop and Ctrl-C do): every instance gets its
        # SIGTERM at once, nothing is left behind, the desired state is kept for the next start.
        everything = out.marked()
        os.kill(stack.proc.pid, signal.SIGTERM)
        stack.proc.wait(30)
        assert alive(everything) == [] and out.marked() == []
        assert alive(escaped) == []
        assert list((stack.data_dir / "supervisor" / "instances").glob("*.conf")) == []
        terms = []
        for pk in slow:
            log = (stack.data_dir / "instances" / f"slow-stop-{slow.index(pk)}" / "output.log").read_text()
            terms.append(float(re.findall(r"TERM at (\d+\.\d+)", log)[-1]))
            assert "stopped: AiKore is shutting down (it starts again with AiKore)" in log
        # In parallel: supervisord alone stops one group at a time, each taking its 1 s here.
        assert max(terms) - min(terms) < 0.9, terms


def test_stale_tree_of_a_killed_supervisord_and_entry_sh_is_replaced_on_the_next_start(tmp_path) -> None:
    """`make run` died with its supervisord (OOM killer, a closed terminal): daphne, the worker,
    nginx and ten serving instances live on, holding the sockets and ports. The next start ends
    them and is healthy again, with the ten instances running under supervision."""
    with chaos_stack(tmp_path, "stale", 1) as first:
        out = Outside(first)
        ids = [out.create(f"Server {i}", "envdump") for i in range(10)]
        for pk in ids:
            out.act(pk, "start")
        old_pids = {pk: out.wait(pk, "running")["pid"] for pk in ids}
        stale = out.marked() + procs.nginx_processes(first.data_dir / "nginx")
        stale += [psutil.Process(out.program_pid(p)) for p in ("daphne", "worker")]
        supervisord = psutil.Process(out.supervisord_pid())
        first.proc.kill()
        supervisord.kill()
        first.proc.wait(10)
        # Our client's sockets keep their local ports (from the ephemeral range, which the chaos
        # port range overlaps) until closed: one could be an instance's port of the next start.
        out.client.close()
        time.sleep(1)
        assert len(alive(stale)) >= 13  # 10 instances, daphne, worker, nginx (at least)
    started = time.monotonic()
    with chaos_stack(tmp_path, "stale", 1, port=first.port) as second:
        out = Outside(second)
        for pk in ids:
            data = out.wait(pk, "running")
            assert data["pid"] != old_pids[pk]
        healed = time.monotonic() - started
        assert alive(stale) == []
        assert len(out.marked()) == 10  # each instance's one process, under the new supervisord
        log = (second.data_dir / "instances" / "server-0" / "output.log").read_text()
        assert "ended the processes a previous AiKore run left running; it starts again under supervision" in log
        assert healed < 60, healed  # bench/chaos.py measures it; the target is 20 s


# --- instances ------------------------------------------------------------------------------------


ESCAPER = """# aikore.name: Escaper (chaos)
# aikore.ready: none
sleep 7777.25 &
setsid sleep 7777.25 &
( sleep 7777.25 & )
( setsid sleep 7777.25 & )
exec sleep 7777.25
"""


def tagged_sleepers() -> list[psutil.Process]:
    """Processes of the escaper blueprint, found by their command line (not by AiKore's marker,
    the thing under test)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if proc.info["cmdline"] == ["sleep", "7777.25"] and procs.alive(proc):
            found.append(proc)
    return found


@pytest.mark.django_db(transaction=True)
def test_hundred_fast_start_stop_cycles_leave_no_orphan(live) -> None:
    bp = custom_blueprint("escaper", ESCAPER)
    instances = [Instance.objects.create_instance(name=f"Cycler {i}", blueprint=bp) for i in range(4)]
    errors: list[BaseException] = []
    spawned = []

    def cycle(instance: Instance, times: int) -> None:
        from django.db import close_old_connections

        try:
            for n in range(times):
                instance.start()
                if n % 4:
                    # Stop as soon as the process exists: its children are still being started.
                    try:
                        wait_for(lambda i=instance: Instance.objects.filter(pk=i.pk, pid__isnull=False).exists(),
                                 30, "the spawn")
                    except AssertionError:
                        instance.refresh_from_db()
                        raise AssertionError(f"no spawn: {instance.status} {instance.error_message!r} "
                                             f"want={instance.want_running}\n{instance.log_tail(1500)}") from None
                    spawned.append(n)
                instance.stop()
                wait_status(instance, InstanceStatus.STOPPED, timeout=60)
        except BaseException as exc:
            errors.append(exc)
        finally:
            close_old_connections()

    threads = [threading.Thread(target=cycle, args=(i, 25)) for i in instances]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and len(spawned) == 4 * sum(1 for n in range(25) if n % 4)
    for instance in instances:
        wait_for(lambda i=instance: HUEY.pending_count() == 0 and not Instance.objects.get(pk=i.pk).want_running
                 and Instance.objects.get(pk=i.pk).status == InstanceStatus.STOPPED, 30, "the last stops")
    time.sleep(0.5)
    leaked = tagged_sleepers()  # an orphan sleeps for two hours: none may be left
    assert leaked == [], [(p.pid, p.ppid()) for p in leaked]
    for instance in instances:
        assert lifecycle.instance_processes(instance.pk) == []


ENV_WIPER = """# aikore.name: Environment wiper (chaos)
# aikore.ready: none
( env -i setsid sleep 7777.5 & )
exec sleep 7777.5
"""


@pytest.mark.django_db(transaction=True)
def test_a_child_without_the_marker_is_ended_through_the_instance_cgroup(live) -> None:
    """A double-forked child that wiped its environment (env -i) carries no marker and is in no
    process tree: only the instance's cgroup still knows it is the instance's."""
    if settings.AIKORE_CGROUP_ROOT is None:
        pytest.skip("no writable cgroup v2 hierarchy here (not root, or cgroup v1 only): markers only")
    instance = Instance.objects.create_instance(name="Wiper", blueprint=custom_blueprint("wiper", ENV_WIPER))
    instance.start()
    wait_status(instance, InstanceStatus.RUNNING)

    def wiped() -> list[psutil.Process]:
        return [p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] == ["sleep", "7777.5"]
                and procs.alive(p)]

    wait_for(lambda: len(wiped()) == 2, 10, "both sleepers")
    cgroup = Path(settings.AIKORE_CGROUP_ROOT) / f"aikore-{settings.AIKORE_STACK_ID}" / f"instance-{instance.pk}"
    assert {p.pid for p in wiped()} <= {int(pid) for pid in (cgroup / "cgroup.procs").read_text().split()}
    instance.stop()
    wait_status(instance, InstanceStatus.STOPPED)
    assert wiped() == [] and not cgroup.exists()


@pytest.mark.django_db(transaction=True)
def test_sigterm_ignoring_app_is_killed_logged_and_never_called_stopped_while_alive(live) -> None:
    instance = Instance.objects.create_instance(name="Stubborn", blueprint="stubborn")
    instance.start()
    wait_status(instance, InstanceStatus.RUNNING)
    wait_for(lambda: len(lifecycle.instance_processes(instance.pk)) >= 2, 10, "its setsid child")
    victims = lifecycle.instance_processes(instance.pk)
    instance.stop()
    time.sleep(0.5)
    # The worker dies in the middle of the stop: the next one finishes it.
    worker = psutil.Process(int(live.supervisorctl("pid", "worker").strip()))
    worker.kill()
    lies = []
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        instance.refresh_from_db()
        living = alive(victims)
        if instance.status == InstanceStatus.STOPPED:
            if living:
                lies.append([p.pid for p in living])
            break
        time.sleep(0.02)
    assert instance.status == InstanceStatus.STOPPED and lies == []
    assert alive(victims) == []
    log = instance.log_path.read_text()
    assert re.search(r"forced SIGKILL after 3 s: pid \d+ \(python[0-9.]*\)", log), log[-2000:]
    assert "bash" in log.split("forced SIGKILL", 1)[1]  # the setsid child is named too


@pytest.mark.django_db(transaction=True)
def test_notes_never_fail_a_state_change(live) -> None:
    """A log that cannot be written (here: its path is a directory) costs the note, not the stop."""
    bp = custom_blueprint("sleeper", "# aikore.ready: none\nexec sleep 1000\n")
    instance = Instance.objects.create_instance(name="Unloggable", blueprint=bp)
    instance.start()
    wait_status(instance, InstanceStatus.RUNNING)
    pid = instance.pid
    instance.append_log("a note")  # while the log is a file
    instance.log_path.unlink()
    instance.log_path.mkdir()
    instance.append_log("this note is lost, and that is all")
    instance.stop()
    wait_status(instance, InstanceStatus.STOPPED)
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    instance.log_path.rmdir()


# --- a full disk ----------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("the full-disk test mounts a small tmpfs, which needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=112m", "tmpfs", str(mount)],
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(path: Path, leave: int = 0) -> None:
    """Write until the filesystem has less than `leave` bytes free (0: until it is full)."""
    with open(path, "wb", buffering=0) as fh:
        for size in (1024 * 1024, 4096, 1):
            chunk = b"\0" * size
            with contextlib.suppress(OSError):
                while shutil.disk_usage(path.parent).free >= leave + size:
                    fh.write(chunk)


CHATTY = """# aikore.name: Chatty (chaos)
# aikore.ready: none
i=0
while :; do i=$((i + 1)); echo "line $i"; sleep 0.02; done
"""


def dashboard_banner(stack: ThrowawayStack, cookies: httpx.Cookies) -> str:
    """The text of the dashboard's health banner, as chromium shows it to a logged-in user."""
    from aikore_site.tests.test_dashboard_browser import CHROMIUM, CHROMIUM_ARGS

    if not Path(CHROMIUM).exists():
        return "(chromium is not installed: banner not checked)"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context()
            context.add_cookies([{"name": name, "value": value, "url": stack.base_url}
                                 for name, value in cookies.items()])
            page = context.new_page()
            page.goto(stack.base_url + "/")
            page.wait_for_selector("#health-banner:not([hidden])", timeout=20_000)
            return page.inner_text("#health-banner")
        finally:
            browser.close()


@pytest.mark.browser
def test_full_disk_loses_nothing_it_can_keep(small_disk) -> None:
    env = {"AIKORE_DISK_WARN_MB": "40", "AIKORE_DISK_RESERVE_MB": "8"}
    with chaos_stack(small_disk, "data", 2, env=env) as stack:
        (stack.data_dir / "custom_blueprints" / "chatty.sh").write_text(CHATTY)
        out = Outside(stack)
        chatty = out.create("Chatty", "chatty")
        quiet = out.create("Quiet", "slowstop")
        for pk in (chatty, quiet):
            out.act(pk, "start")
            out.wait(pk, "running")
        assert (stack.data_dir / "run" / "disk-reserve").stat().st_size == 8 * 1024 * 1024

        # The disk fills up (half a megabyte left): AiKore gives up its reserve for its own writes.
        filler = small_disk / "filler"
        fill(filler, leave=512 * 1024)
        wait_for(lambda: not (stack.data_dir / "run" / "disk-reserve").exists(), 15, "the reserve released")
        wait_for(lambda: out.health().get("status") == "degraded", 15, "health to notice")
        health = out.health()
        assert health["disk"]["low"] and any("low disk space" in r for r in health["reasons"]), health
        # A stop goes through (status, job queue and notes all need a write), reads and a new
        # login too, and the dashboard warns.
        out.act(quiet, "stop")
        out.wait(quiet, "stopped", timeout=30)
        assert out.marked(quiet) == []
        assert out.api("GET", "/instances").status_code == 200
        assert Outside(stack).api("GET", "/instances").status_code == 200
        banner = dashboard_banner(stack, out.client.cookies)
        assert "Low disk space" in banner or "not installed" in banner, banner

        # Not a byte left, reserve gone: logging in and reading still work (the session lives in
        # memory until it can be written).
        fill(small_disk / "filler-2")
        again = Outside(stack)
        assert again.api("GET", "/instances").status_code == 200
        assert httpx.get(stack.base_url + "/", cookies=dict(again.client.cookies), timeout=10).status_code == 200
        assert out.health()["status"] == "degraded"

        filler.unlink()
        (small_disk / "filler-2").unlink()
        log = stack.data_dir / "instances" / "chatty" / "output.log"
        wait_for(lambda: "bytes of output dropped: the disk was full" in log.read_text(), 20, "the dropped-output note")
        text = log.read_text()
        dropped = sum(int(n) for n in re.findall(r"(\d+) bytes of output dropped", text))
        numbers = [int(n) for n in re.findall(r"^line (\d+)$", text, re.M)]
        missing = len(set(range(numbers[0], numbers[-1] + 1)) - set(numbers))
        assert missing > 0 and dropped >= missing, (dropped, missing)  # each line lost is counted
        wait_for(lambda: (stack.data_dir / "run" / "disk-reserve").exists(), 20, "the reserve taken again")
        wait_for(lambda: out.health().get("status") == "ok", 20, "health ok again")
        out.act(chatty, "stop")
        out.wait(chatty, "stopped")
    for name in ("aikore.db", "huey.db"):
        with contextlib.closing(sqlite3.connect(stack.data_dir / name)) as db:
            assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
